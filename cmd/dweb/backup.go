package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
	"github.com/spf13/cobra"
)

func (a *app) backupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "a backup server's state (dweb serve --backup)"}
	status := &cobra.Command{
		Use:   "status",
		Short: "what the backup holds and lacks, per group (with --json: the whole status)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st core.BackupStatus
			if err := a.client().call(cmd.Context(), http.MethodGet, httpapi.BackupStatusPath, nil, &st); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(st)
			}
			return a.printBackupStatus(st)
		},
	}
	adminURI := &cobra.Command{
		Use:   "admin-uri",
		Short: "print this backup server's admin URI (keep it secret: it controls the server)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var body httpapi.AdminURIBody
			if err := a.client().call(cmd.Context(), http.MethodGet, httpapi.BackupAdminPath, nil, &body); err != nil {
				return err
			}
			return a.printResult(body, "%s\n", body.URI)
		},
	}

	var server string
	join := &cobra.Command{
		Use:   "join INVITE_URI --server ADMIN_URI",
		Short: "make a backup server join a group (over the network; no local daemon needed)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withAdmin(server, func(c *core.AdminClient) error {
				g, err := c.Join(cmd.Context(), argv[0])
				if err != nil {
					return err
				}
				return a.printResult(g, "backup server joined group %s %s\n", g.Name, g.ID)
			})
		},
	}
	list := &cobra.Command{
		Use:   "list --server ADMIN_URI",
		Short: "list a backup server's groups and what it holds of each",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withAdmin(server, func(c *core.AdminClient) error {
				gs, err := c.List(cmd.Context())
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(map[string][]core.AdminGroup{"groups": gs})
				}
				tw := a.table()
				fmt.Fprintln(tw, "NAME\tKEY\tFILES\tHELD\tMISSING\tBYTES HELD\tLAST PASS")
				for _, g := range gs {
					last := "-"
					if !g.LastPass.IsZero() {
						last = fmtTime(g.LastPass)
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", g.Name, g.ID, g.Files, g.Held, g.Missing, core.FormatSize(g.BytesHeld), last)
				}
				return tw.Flush()
			})
		},
	}
	remove := &cobra.Command{
		Use:   "remove GROUP --server ADMIN_URI",
		Short: "make a backup server leave a group (by key, or a name unique on the server)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withAdmin(server, func(c *core.AdminClient) error {
				g, err := c.Remove(cmd.Context(), argv[0])
				if err != nil {
					return err
				}
				return a.printResult(g, "backup server left group %s %s\n", g.Name, g.ID)
			})
		},
	}
	for _, c := range []*cobra.Command{join, list, remove} {
		c.Flags().StringVar(&server, "server", "", "the backup server's admin URI (dweb+admin:?...; $DWEB_BACKUP_SERVER if unset)")
	}
	cmd.AddCommand(status, adminURI, join, list, remove)
	return cmd
}

// withAdmin runs fn with a client of the backup server that adminURI (or
// $DWEB_BACKUP_SERVER) names. A missing or malformed URI is a usage error.
func (a *app) withAdmin(adminURI string, fn func(*core.AdminClient) error) error {
	if adminURI == "" {
		adminURI = os.Getenv("DWEB_BACKUP_SERVER")
	}
	if adminURI == "" {
		return &usageError{errors.New("--server ADMIN_URI is required (or set $DWEB_BACKUP_SERVER)")}
	}
	c, err := core.DialAdmin(adminURI, nil)
	if err != nil {
		var bad *core.BadInputError
		if errors.As(err, &bad) {
			return &usageError{fmt.Errorf("--server: %w", err)}
		}
		return err
	}
	defer c.Close()
	return fn(c)
}

func (a *app) printBackupStatus(st core.BackupStatus) error {
	if !st.Enabled {
		fmt.Fprintln(a.stdout, "backup mode is off (start the daemon with dweb serve --backup)")
		return nil
	}
	fmt.Fprintf(a.stdout, "backup since %s: %d passes, %d errors, %s fetched, %s resumed; full pass every %s, %d downloads at once\n",
		fmtTime(st.StartedAt), st.Passes, st.Errors, core.FormatSize(st.Fetched), core.FormatSize(st.Resumed),
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
			core.FormatSize(g.BytesHeld), core.FormatSize(g.Bytes), last, len(g.Errors))
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
		fmt.Fprintf(a.stdout, "downloading %s (%s): %s of %s\n", d.Name, d.Hash, core.FormatSize(d.Done), core.FormatSize(d.Total))
	}
	return nil
}
