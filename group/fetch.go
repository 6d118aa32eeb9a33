package group

import (
	"context"
	"errors"
	"fmt"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
)

// Member is one node serving a repo of the group, as its tunnel
// descriptor announces it.
type Member struct {
	Repo   key.RecordKey
	Tunnel datarepo.TunnelDescriptor
}

// Providers lists the nodes that serve the group's repos: the repos in
// prefer first, then the others in subkey order, each node once, the node
// self left out. Repos that cannot be read right now are skipped, and
// malformed slots (RepoKeys, datarepo.Repo.Tunnels) skipped and logged; if
// no repo can be read, the error says why.
func (g *Group) Providers(ctx context.Context, prefer []key.RecordKey, self key.NodeID) ([]Member, error) {
	repos, err := g.RepoKeys(ctx)
	if err != nil {
		return nil, err
	}
	ordered := make([]key.RecordKey, 0, len(repos)+len(prefer))
	seen := make(map[key.RecordKey]bool)
	for _, k := range append(append([]key.RecordKey(nil), prefer...), repos...) {
		if !seen[k] {
			seen[k] = true
			ordered = append(ordered, k)
		}
	}
	var out []Member
	var errs []error
	nodes := map[key.NodeID]bool{self: true}
	for _, rk := range ordered {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := datarepo.OpenKey(ctx, g.recs, nil, g.keys, rk)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.SetLogger(g.log)
		tds, err := r.Tunnels(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		for _, td := range tds {
			if !nodes[td.Node] {
				nodes[td.Node] = true
				out = append(out, Member{Repo: rk, Tunnel: td})
			}
		}
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, fmt.Errorf("group %s: no member readable: %w", g.Key(), errors.Join(errs...))
	}
	return out, nil
}
