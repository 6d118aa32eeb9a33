package core

import (
	"context"
	"fmt"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
)

// GCResult is what CollectGarbage did.
type GCResult struct {
	Removed     int           `json:"removed"`      // blobs removed, complete or partial
	Roots       int           `json:"roots"`        // collections and files it kept from (before their expansion)
	BlobsBefore int64         `json:"blobs_before"` // complete blobs the store kept itself (blobsync.Usage)
	BytesBefore int64         `json:"bytes_before"`
	BlobsAfter  int64         `json:"blobs_after"`
	BytesAfter  int64         `json:"bytes_after"`
	Took        time.Duration `json:"took_ns"`
}

// allRoots returns the roots (groupRoots) of every group this node is in;
// an error names the group whose roots could not be read.
func (b *Backend) allRoots(ctx context.Context) ([]blobsync.Hash, error) {
	b.mu.Lock()
	groups := make([]*groupState, 0, len(b.groups))
	for _, gs := range b.groups {
		groups = append(groups, gs)
	}
	b.mu.Unlock()
	var roots []blobsync.Hash
	for _, gs := range groups {
		rs, err := b.groupRoots(ctx, gs)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", gs.info.Name, err)
		}
		roots = append(roots, rs...)
	}
	return roots, nil
}

// CollectGarbage removes from the store every blob that no group of this
// node still needs (blobsync.Store.GC), and reports how many and the
// store's size before and after. What is kept, per group this node is in:
//
//   - its own repo: the current collection and every version its history
//     keeps (datarepo.Repo.GCRoots; the retention, Options.KeepVersions,
//     decides which are kept);
//   - every other repo: the collection its record (as this node holds it)
//     names and the one this node last verified (known.go), with every
//     version each keeps;
//
// and, whatever the roots, blobs under download and blobs added in the
// last 10 minutes (blobsync.StoreOptions.GCGrace). The blobs of groups this
// node left go. When its own repo of a group cannot be read, nothing is
// removed and the error says which. The store's walk is O(blobs); nothing
// else waits on it but other GCs.
func (b *Backend) CollectGarbage(ctx context.Context) (GCResult, error) {
	if err := b.started(); err != nil {
		return GCResult{}, err
	}
	start := time.Now()
	roots, err := b.allRoots(ctx)
	if err != nil {
		return GCResult{}, fmt.Errorf("gc: %w", err)
	}
	var res GCResult
	res.Roots = len(roots)
	if u, err := b.blobs.Usage(); err == nil {
		res.BlobsBefore, res.BytesBefore = u.Blobs, u.Bytes
	}
	n, err := b.blobs.GC(ctx, func(yield func(blobsync.Hash) bool) {
		for _, h := range roots {
			if !yield(h) {
				return
			}
		}
	})
	res.Removed = n
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	if u, err := b.blobs.Usage(); err == nil {
		res.BlobsAfter, res.BytesAfter = u.Blobs, u.Bytes
	}
	res.Took = time.Since(start)
	b.log.Info("gc", "removed", res.Removed, "bytes_before", res.BytesBefore, "bytes_after", res.BytesAfter, "took", res.Took)
	return res, nil
}

// groupRoots is what CollectGarbage keeps for group gs, from the records
// this node holds and what it last verified: no network.
func (b *Backend) groupRoots(ctx context.Context, gs *groupState) ([]blobsync.Hash, error) {
	own, err := datarepo.OpenKey(ctx, localRecords{b}, b.blobs, gs.g.Keys(), gs.info.Repo)
	if err != nil {
		return nil, fmt.Errorf("own repo: %w", err)
	}
	roots, err := own.GCRoots(ctx)
	if err != nil {
		return nil, fmt.Errorf("own repo: %w", err)
	}
	known, order := b.knownRepos(gs.info.ID)
	for _, rk := range order {
		if h := known[rk].Collection; !h.IsZero() {
			roots = append(roots, h)
		}
	}
	others, err := gs.local.RepoKeys(ctx)
	if err != nil {
		b.log.Debug("gc: list repos", "group", gs.info.ID, "err", err)
	}
	for _, rk := range others {
		if rk == gs.info.Repo {
			continue
		}
		if h, ok := b.heldCollection(ctx, gs, rk); ok {
			roots = append(roots, h)
		}
	}
	return roots, nil
}

// heldCollection is the collection hash repo rk's record names, as this
// node holds the record (none when it holds no such value).
func (b *Backend) heldCollection(ctx context.Context, gs *groupState, rk key.RecordKey) (blobsync.Hash, bool) {
	r, err := datarepo.OpenKey(ctx, localRecords{b}, b.blobs, gs.g.Keys(), rk)
	if err != nil {
		return blobsync.Hash{}, false
	}
	h, ok, err := r.CollectionHash(ctx)
	return h, ok && err == nil
}
