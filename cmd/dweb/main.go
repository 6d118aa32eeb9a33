// Command dweb runs a dweb node as a daemon ("dweb serve") and talks to it
// from the command line through the daemon's local HTTP API on a unix socket
// (DIR/dweb.sock), the way tailscale's CLI talks to tailscaled's LocalAPI.
//
// Exit codes: 0 success; 1 any error; 2 bad usage or bad input found before
// contacting a daemon (wrong arguments, a malformed invite URI); 3 no daemon
// answers on the socket. With --json, errors are one {"error": "..."} object
// on stderr; without it, one "dweb: ..." line. docs/cli.md documents every
// command and route.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes of the dweb command.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitNoDaemon = 3
)

// socketName is the daemon's unix socket inside the data directory.
const socketName = "dweb.sock"

// usageError marks an error found in the command line or its arguments
// before anything was contacted; it exits with exitUsage.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// app holds the global flags and the streams of one invocation, so tests
// can run the whole CLI in-process.
type app struct {
	dataDir string
	json    bool
	stdout  io.Writer
	stderr  io.Writer
	// stderrTTY reports whether stderr is a terminal (progress bars).
	stderrTTY bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one dweb command line and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, stderrTTY: isTerminal(stderr)}
	root := a.rootCmd()
	root.PersistentPreRun = func(_ *cobra.Command, args []string) { unprotectKeyArgs(args) }
	root.SetArgs(protectKeyArgs(root, args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := exitError
	var ue *usageError
	var nd *noDaemonError
	switch {
	case errors.As(err, &nd):
		code = exitNoDaemon
	case errors.As(err, &ue):
		code = exitUsage
	case cmd != nil && isCobraUsageError(err):
		code = exitUsage
	}
	a.printError(err)
	return code
}

// isCobraUsageError recognises the argument and flag errors cobra returns.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag",
		"accepts ", "requires at least", "requires at most", "flag needs an argument",
		"invalid argument", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// printError writes err as one line (or one JSON object with --json) on stderr.
func (a *app) printError(err error) {
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	if a.json {
		b, _ := json.Marshal(map[string]string{"error": msg})
		fmt.Fprintln(a.stderr, string(b))
		return
	}
	fmt.Fprintln(a.stderr, "dweb: "+msg)
}

// defaultDataDir is $DWEB_DATA, else ~/.local/share/dweb.
func defaultDataDir() string {
	if d := os.Getenv("DWEB_DATA"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "dweb")
	}
	return filepath.Join(".local", "share", "dweb")
}

// socketPath is the absolute path of the daemon socket for the --data dir.
func (a *app) socketPath() string {
	dir := a.dataDir
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return filepath.Join(dir, socketName)
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "dweb",
		Short:         "dweb: peer-to-peer groups of files, verified with BLAKE3",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.PersistentFlags().StringVar(&a.dataDir, "data", defaultDataDir(), "data directory ($DWEB_DATA, else ~/.local/share/dweb)")
	root.PersistentFlags().BoolVar(&a.json, "json", false, "machine-readable output: one JSON value on stdout, errors as {\"error\":...} on stderr")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(a.serveCmd(), a.groupCmd(), a.repoCmd(), a.fileCmd(), a.nodeCmd(), a.hashCmd(), a.benchCmd(), a.backupCmd(), a.drainCmd(), a.watchCmd(), a.contactCmd())
	return root
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// args wraps a cobra positional-argument check so its error is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return &usageError{err}
		}
		return nil
	}
}
