package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/spf13/cobra"
)

// reconnectWait is how long `dweb watch --reconnect` waits between two
// attempts to reach the daemon again.
const reconnectWait = time.Second

func (a *app) watchCmd() *cobra.Command {
	var kinds string
	var since uint64
	var reconnect bool
	cmd := &cobra.Command{
		Use:   "watch [GROUP] [--kinds K1,K2] [--since ID] [--reconnect]",
		Short: "print the node's events as they happen (files added, removed and changed, members, downloads, publication) until interrupted",
		Long: `watch prints the node's events as they happen, one line each, until
interrupted (Ctrl-C: exit 0): files added, removed or changed in any repo
of the node's groups, members joining, downloads' progress, whether this
node's writes reached the network, and "lagged" when events were lost
(list again to catch up). GROUP keeps one group's events; --kinds some
kinds (lagged always comes). With --json each event is one line of JSON,
{"id","time","kind","group","repo","payload"} (NDJSON).

--since ID resumes after event ID: events the daemon still keeps (the last
1024) are replayed first, after a lagged event if some are gone. It reads
GET /dweb/v1/events (Server-Sent Events). If the daemon stops, watch exits
with an error, or with --reconnect waits for it and resumes after the last
event printed.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ks []string
			if kinds != "" {
				for _, k := range strings.Split(kinds, ",") {
					if k = strings.TrimSpace(k); !core.IsEventKind(k) {
						return &usageError{fmt.Errorf("--kinds: %q is not an event kind (%s)", k, strings.Join(core.EventKinds, ", "))}
					}
					ks = append(ks, k)
				}
			}
			group := ""
			if len(args) == 1 {
				group = args[0]
			}
			return a.watch(cmd.Context(), group, ks, since, reconnect)
		},
	}
	cmd.Flags().StringVar(&kinds, "kinds", "", "only these event kinds, comma-separated: "+strings.Join(core.EventKinds, ","))
	cmd.Flags().Uint64Var(&since, "since", 0, "resume after this event `ID` (replays what the daemon still keeps)")
	cmd.Flags().BoolVar(&reconnect, "reconnect", false, "when the daemon stops, wait for it and resume after the last event")
	return cmd
}

// watch prints the events of GET /dweb/v1/events until ctx ends.
func (a *app) watch(ctx context.Context, group string, kinds []string, since uint64, reconnect bool) error {
	c := a.client()
	names := &groupNames{c: c}
	last := since
	q := httpapi.EventsQuery(group, kinds)
	for {
		resp, err := c.openEvents(ctx, q, last)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && reconnect && isTransient(err):
			if !sleepCtx(ctx, reconnectWait) {
				return nil
			}
			continue
		case err != nil:
			return err
		}
		if !a.json {
			fmt.Fprintln(a.stderr, "watching events (Ctrl-C to stop)")
		}
		es := httpapi.NewEventStream(resp.Body)
		var serr error
		for {
			ev, err := es.Next()
			if err != nil {
				serr = err
				break
			}
			last = ev.ID
			if a.json {
				if err := a.printJSON(ev); err != nil {
					resp.Body.Close()
					return err
				}
				continue
			}
			fmt.Fprintln(a.stdout, a.eventLine(ctx, names, ev))
		}
		resp.Body.Close()
		if ctx.Err() != nil {
			return nil
		}
		if !reconnect {
			return fmt.Errorf("the daemon ended the event stream (stopped?) after event %d: %v; run dweb watch --since %d to resume, or pass --reconnect", last, serr, last)
		}
		if !a.json {
			fmt.Fprintln(a.stderr, "event stream ended; reconnecting")
		}
		if !sleepCtx(ctx, reconnectWait) {
			return nil
		}
	}
}

// isTransient reports whether err may pass once the daemon is back: none
// answers, or the connection broke.
func isTransient(err error) bool {
	var nd *noDaemonError
	var re *remoteError
	return errors.As(err, &nd) || (!errors.As(err, &re) && !errors.Is(err, context.Canceled))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// openEvents opens GET /dweb/v1/events with query q, resuming after event
// last (0: from now).
func (c *client) openEvents(ctx context.Context, q string, last uint64) (*http.Response, error) {
	var hdr http.Header
	if last != 0 {
		hdr = http.Header{"Last-Event-ID": {strconv.FormatUint(last, 10)}}
	}
	return c.sendWith(ctx, http.MethodGet, httpapi.EventsPath+q, nil, hdr)
}

// groupNames maps group keys to names for the readable lines, asking the
// daemon again when it meets a key it does not know.
type groupNames struct {
	c     *client
	names map[key.RecordKey]string
	asked map[key.RecordKey]bool
}

func (g *groupNames) name(ctx context.Context, k key.RecordKey) string {
	if n, ok := g.names[k]; ok {
		return n
	}
	if g.asked == nil {
		g.asked = make(map[key.RecordKey]bool)
	}
	if !g.asked[k] {
		g.asked[k] = true
		var body httpapi.GroupsBody
		if err := g.c.call(ctx, http.MethodGet, "/api/groups", nil, &body); err == nil {
			g.names = make(map[key.RecordKey]string, len(body.Groups))
			for _, gr := range body.Groups {
				g.names[gr.ID] = gr.Name
			}
			if n, ok := g.names[k]; ok {
				return n
			}
		}
	}
	return shortKey(k)
}

// eventLine is the readable form of an event: time, kind, group, then
// what the kind says.
func (a *app) eventLine(ctx context.Context, names *groupNames, ev core.Event) string {
	head := ev.Time.Local().Format("15:04:05.000") + "  " + fmt.Sprintf("%-17s", ev.Kind)
	if !ev.Group.IsZero() {
		head += "  " + names.name(ctx, ev.Group)
	}
	switch p := ev.Payload.(type) {
	case core.FileEvent:
		s := fmt.Sprintf("%s  %s/%s  %d bytes  %s", head, p.RepoName, p.Name, p.Size, p.Hash)
		if ev.Kind == core.KindFileChanged {
			s += "  (was " + p.PrevHash.String() + ")"
		}
		return s
	case core.RepoEvent:
		s := fmt.Sprintf("%s  %s  %d files", head, p.Name, p.Files)
		if p.Resync {
			s += "  (list it again: the change could not be told file by file)"
		}
		return s
	case core.MemberEvent:
		s := fmt.Sprintf("%s  repo %s", head, shortKey(ev.Repo))
		if p.Mine {
			s += " (this node)"
		}
		return s
	case core.DownloadEvent:
		what := p.Name
		if p.Op == "refresh" {
			what = fmt.Sprintf("refresh %d/%d files", p.FilesDone, p.Files)
		}
		s := fmt.Sprintf("%s  %s  %d/%d bytes  %s", head, what, p.Done, p.Total, p.State)
		if p.Error != "" {
			s += ": " + p.Error
		}
		return s
	case core.PublicationEvent:
		return fmt.Sprintf("%s  %s seq %d %s", head, p.Record, p.Seq, p.State)
	case core.PeerEvent:
		repo := "repo not read yet"
		if !ev.Repo.IsZero() {
			repo = "repo " + shortKey(ev.Repo)
		}
		return fmt.Sprintf("%s  %s  node %.8s  %s", head, repo, p.Node.String(), p.Reason)
	case core.LaggedEvent:
		s := head + "  events were lost"
		if p.Missed > 0 {
			s = fmt.Sprintf("%s  %d events were lost", head, p.Missed)
		}
		return s + " (" + p.Reason + "); list again to catch up"
	}
	return head
}
