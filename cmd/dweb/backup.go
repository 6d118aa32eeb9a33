package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/spf13/cobra"
)

// backupStatusPath is the daemon's route for core.Backend.BackupStatus
// (docs/backup.md).
const backupStatusPath = "/dweb/v1/backup/status"

// backupStatuser is the part of *core.Backend the backup route serves.
type backupStatuser interface {
	BackupStatus() core.BackupStatus
}

// withBackupRoutes returns api with the backup routes in front of it:
// GET /dweb/v1/backup/status answers b.BackupStatus() as JSON (200, also
// when backup mode is off: "enabled": false). Every other request goes to
// api, so its 404/405 answers and error shape stay the same.
func withBackupRoutes(b backupStatuser, api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+backupStatusPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.BackupStatus())
	})
	mux.Handle("/", api)
	return mux
}

func (a *app) backupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "a backup server's state (dweb serve --backup)"}
	status := &cobra.Command{
		Use:   "status",
		Short: "what the backup holds and lacks, per group (with --json: the whole status)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st core.BackupStatus
			if err := a.client().call(cmd.Context(), http.MethodGet, backupStatusPath, nil, &st); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(st)
			}
			return a.printBackupStatus(st)
		},
	}
	cmd.AddCommand(status)
	return cmd
}

func (a *app) printBackupStatus(st core.BackupStatus) error {
	if !st.Enabled {
		fmt.Fprintln(a.stdout, "backup mode is off (start the daemon with dweb serve --backup)")
		return nil
	}
	fmt.Fprintf(a.stdout, "backup since %s: %d passes, %d errors, %s fetched, %s resumed; full pass every %s, %d downloads at once\n",
		fmtTime(st.StartedAt), st.Passes, st.Errors, fmtBytes(st.Fetched), fmtBytes(st.Resumed),
		time.Duration(st.IntervalS*float64(time.Second)), st.Concurrency)
	tw := a.table()
	fmt.Fprintln(tw, "GROUP\tKEY\tREPOS\tFILES\tHELD\tMISSING\tBYTES HELD\tLAST PASS\tERRORS")
	for _, g := range st.Groups {
		last := "-"
		if g.Running {
			last = "running"
		} else if !g.LastPass.IsZero() {
			last = fmtTime(g.LastPass)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s of %s\t%s\t%d\n", g.Name, g.Group, g.Repos, g.Files, g.Held, g.Missing,
			fmtBytes(g.BytesHeld), fmtBytes(g.Bytes), last, len(g.Errors))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, g := range st.Groups {
		for _, e := range g.Errors {
			fmt.Fprintf(a.stdout, "%s: %s\n", g.Name, e)
		}
	}
	for _, d := range st.Downloading {
		fmt.Fprintf(a.stdout, "downloading %s (%s): %s of %s\n", d.Name, d.Hash, fmtBytes(d.Done), fmtBytes(d.Total))
	}
	return nil
}

// fmtBytes prints n bytes in binary units (B, KiB, MiB, GiB, TiB).
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}
