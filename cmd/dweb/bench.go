package main

import "github.com/spf13/cobra"

// benchCommands builds the subcommands of `dweb bench`. Each benchmark lives
// in its own file (bench_<name>.go) and registers itself here from init, so
// benchmarks of different layers never edit the same file.
var benchCommands []func(a *app) *cobra.Command

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "measure dweb on this machine against a baseline from the same run (prints JSON)",
	}
	for _, build := range benchCommands {
		cmd.AddCommand(build(a))
	}
	return cmd
}
