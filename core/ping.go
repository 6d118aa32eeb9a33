package core

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/tunnel"
)

// Results of PingMembers.
const (
	PingOK          = "ok"          // the tunnel handshake completed
	PingRefused     = "refused"     // the node answered and refused the handshake: not the same group key (a removed member, or one behind by an epoch)
	PingUnreachable = "unreachable" // no path answered in time
)

// PingResult is one member node's answer to PingMembers.
type PingResult struct {
	Repo   key.RecordKey `json:"repo_key"`
	Node   key.NodeID    `json:"node_id"`
	Result string        `json:"result"` // PingOK, PingRefused or PingUnreachable
	RTTMs  float64       `json:"rtt_ms"` // until the tunnel was open or refused, in milliseconds
	// Stale: the node's tunnel descriptor is one this node read before
	// and can no longer read now (its repo moved to a key this node does
	// not hold, or the repo is no longer listed).
	Stale bool   `json:"stale"`
	Error string `json:"error,omitempty"`
}

// pingTimeout bounds each member's ping.
const pingTimeout = 10 * time.Second

// maxKnownDescriptors bounds the tunnel descriptors a group state keeps
// from earlier reads.
const maxKnownDescriptors = 4 * group.MaxRepos

// rememberMembers keeps the tunnel descriptors just read for gs, so that
// a ping can still try a member whose descriptor is no longer readable.
func (b *Backend) rememberMembers(gs *groupState, ms []group.Member) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gs.known == nil || len(gs.known)+len(ms) > maxKnownDescriptors {
		gs.known = make(map[key.NodeID]group.Member)
	}
	for _, m := range ms {
		gs.known[m.Tunnel.Node] = m
	}
}

// PingMembers opens a tunnel to every member node of group k it can read
// a descriptor of (and to those it read one of before), at once, each
// bounded by 10 s, and says which answered, which refused the handshake
// and which could not be reached: a check of the group's connectivity,
// and of a removal (a removed member's tunnels are refused). Results are
// sorted by node ID.
func (b *Backend) PingMembers(ctx context.Context, k key.RecordKey) ([]PingResult, error) {
	gs, err := b.group(k)
	if err != nil {
		return nil, err
	}
	current, err := gs.g.Providers(ctx, nil, b.NodeID())
	if err != nil && !errors.Is(err, ErrNoMembers) {
		b.log.Debug("ping: read descriptors", "group", gs.info.ID, "err", err)
	}
	b.rememberMembers(gs, current)
	targets := map[key.NodeID]PingResult{}
	var members []group.Member
	for _, m := range current {
		targets[m.Tunnel.Node] = PingResult{Repo: m.Repo, Node: m.Tunnel.Node}
		members = append(members, m)
	}
	b.mu.Lock()
	for id, m := range gs.known {
		if _, ok := targets[id]; !ok && id != b.NodeID() {
			targets[id] = PingResult{Repo: m.Repo, Node: id, Stale: true}
			members = append(members, m)
		}
	}
	b.mu.Unlock()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			defer cancel()
			start := time.Now()
			sess, err := b.openTunnel(pctx, gs, m.Tunnel)
			r := PingResult{RTTMs: float64(time.Since(start).Microseconds()) / 1000}
			switch {
			case err == nil:
				r.Result = PingOK
				sess.Close()
			case errors.Is(err, tunnel.ErrHandshake):
				r.Result, r.Error = PingRefused, err.Error()
			default:
				r.Result, r.Error = PingUnreachable, err.Error()
			}
			mu.Lock()
			t := targets[m.Tunnel.Node]
			t.Result, t.RTTMs, t.Error = r.Result, r.RTTMs, r.Error
			targets[m.Tunnel.Node] = t
			mu.Unlock()
		})
	}
	wg.Wait()
	out := make([]PingResult, 0, len(targets))
	for _, r := range targets {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node.String() < out[j].Node.String() })
	return out, nil
}
