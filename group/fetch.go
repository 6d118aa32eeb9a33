package group

import (
	"context"
	"errors"
	"fmt"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
)

// FetchFrom downloads one blob from the node a tunnel descriptor names;
// the caller (core) implements it over a transport and a tunnel.
type FetchFrom func(ctx context.Context, td datarepo.TunnelDescriptor) error

// ErrNoProvider is returned by Fetch when no member's node could supply
// the blob; the wrapped errors say why for each one tried.
var ErrNoProvider = errors.New("group: no member could provide the blob")

// Fetch downloads blob h from the group: it asks the nodes serving the
// group's repos, the repos in prefer first, skipping the node self, until
// one delivers it. Each provider is tried once.
func (g *Group) Fetch(ctx context.Context, h blobsync.Hash, prefer []key.RecordKey, self key.NodeID, fetch FetchFrom) error {
	repos, err := g.RepoKeys(ctx)
	if err != nil {
		return err
	}
	ordered := make([]key.RecordKey, 0, len(repos)+len(prefer))
	seen := make(map[key.RecordKey]bool)
	for _, k := range append(append(ordered, prefer...), repos...) {
		if !seen[k] {
			seen[k] = true
			ordered = append(ordered, k)
		}
	}
	var errs []error
	tried := make(map[key.NodeID]bool)
	for _, rk := range ordered {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := datarepo.OpenKey(ctx, g.recs, nil, g.secret, rk)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i := 0; i < datarepo.MaxTunnels; i++ {
			td, ok, err := r.Tunnel(ctx, i)
			if err != nil {
				errs = append(errs, err)
				break
			}
			if !ok {
				break
			}
			if td.Node == self || tried[td.Node] {
				continue
			}
			tried[td.Node] = true
			if err := fetch(ctx, td); err != nil {
				errs = append(errs, fmt.Errorf("node %s: %w", td.Node, err))
				continue
			}
			return nil
		}
	}
	return fmt.Errorf("%w %s: %w", ErrNoProvider, h, errors.Join(errs...))
}
