package main

import (
	"strings"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// keyArgMark prefixes a key argument that starts with '-' while the flag
// parser runs, so it stays a positional argument; protectKeyArgs adds it,
// the root command's PersistentPreRun strips it.
const keyArgMark = "\x00"

// protectKeyArgs guards record keys given as positional arguments. Keys are
// URL-safe base64 (internal/key), so about one in 64 starts with '-', and
// `dweb group invite -5QJ...` would otherwise be read as shorthand flags.
// An argument is guarded when it is exactly a key's text form, starts with
// '-', comes before any "--", and is not the value of a flag that takes
// one (--repo KEY parses as it is).
func protectKeyArgs(root *cobra.Command, args []string) []string {
	takesValue := valueFlags(root)
	out := make([]string, len(args))
	copy(out, args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || i > 0 && takesValue[out[i-1]] {
			continue
		}
		if _, err := key.ParseRecordKey(a); err == nil {
			out[i] = keyArgMark + a
		}
	}
	return out
}

// unprotectKeyArgs strips the mark from positional arguments, in place.
func unprotectKeyArgs(args []string) {
	for i, a := range args {
		args[i] = strings.TrimPrefix(a, keyArgMark)
	}
}

// valueFlags lists, as written on a command line ("--name", "-n"), every
// flag of the command tree that takes a value.
func valueFlags(root *cobra.Command) map[string]bool {
	out := make(map[string]bool)
	add := func(f *pflag.Flag) {
		if f.NoOptDefVal != "" { // a bool flag: no value follows it
			return
		}
		out["--"+f.Name] = true
		if f.Shorthand != "" {
			out["-"+f.Shorthand] = true
		}
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return out
}
