package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/spf13/cobra"
)

func (a *app) drainCmd() *cobra.Command {
	var (
		group string
		to    []string
		leave bool
		wait  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "drain [--group G] [--to ADMIN_URI]... [--leave]",
		Short: "make sure no blob this node holds is held by it alone, before it leaves a group or shuts down",
		Long: `drain checks, for each group (or --group), which blobs of the group this node
holds that no other member's node holds, asks the backup servers named with
--to (their admin URIs; also $DWEB_DRAIN_TO, space-separated) to fetch them,
waits until they hold them, and reports what could not be placed. With
--leave it leaves every group whose drain was complete. Exits 1 when a
drain was not complete. See docs/backup.md, "Draining".`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(to) == 0 {
				to = strings.Fields(os.Getenv("DWEB_DRAIN_TO"))
			}
			for _, s := range to {
				if _, err := core.ParseAdminURI(s); err != nil {
					return &usageError{fmt.Errorf("--to: %w", err)}
				}
			}
			if wait < 0 {
				return &usageError{errors.New("--wait must not be negative")}
			}
			var rep core.DrainReport
			req := httpapi.DrainRequest{Group: group, To: to, Leave: leave, WaitS: wait.Seconds()}
			if err := a.client().call(cmd.Context(), http.MethodPost, httpapi.DrainPath, req, &rep); err != nil {
				return err
			}
			if a.json {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				a.printDrain(rep)
			}
			if !rep.Complete {
				return errors.New("drain not complete: some blobs are held by this node alone (see above)")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&group, "group", "", "drain only this group (key or name)")
	cmd.Flags().StringArrayVar(&to, "to", nil, "admin URI (dweb+admin:) of another backup server of the group to hand blobs to; repeatable")
	cmd.Flags().BoolVar(&leave, "leave", false, "leave each group whose drain was complete")
	cmd.Flags().DurationVar(&wait, "wait", core.DefaultDrainWait, "how long to wait for the servers to confirm holding what they were given")
	return cmd
}

func (a *app) printDrain(rep core.DrainReport) {
	tw := a.table()
	fmt.Fprintln(tw, "GROUP\tKEY\tCHECKED\tHELD ELSEWHERE\tHANDED OVER\tUNPLACED\tCOMPLETE\tLEFT")
	for _, g := range rep.Groups {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%v\t%v\n", g.Name, g.Group, g.Checked, g.HeldElsewhere, g.HandedOver, g.UnplacedN, g.Complete, g.Left)
	}
	tw.Flush()
	for _, g := range rep.Groups {
		for _, e := range g.Errors {
			fmt.Fprintf(a.stdout, "%s: error: %s\n", g.Name, e)
		}
		for _, u := range g.Unplaced {
			fmt.Fprintf(a.stdout, "%s: unplaced %q (%s, %s, repo %s): %s\n", g.Name, u.Name, u.Hash, core.FormatSize(u.Size), shortKey(u.Repo), u.Reason)
		}
		if g.UnplacedN > len(g.Unplaced) {
			fmt.Fprintf(a.stdout, "%s: ... and %d more unplaced\n", g.Name, g.UnplacedN-len(g.Unplaced))
		}
	}
}

func shortKey(k key.RecordKey) string {
	s := k.String()
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
