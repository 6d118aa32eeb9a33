package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
)

// What this node last verified of each repo, kept across restarts so that
// a listing answers from it when the network cannot: the repo's name, the
// hash of the last collection it read whole (its blob stays in the store,
// verified), and when. Reads that reach the network refresh it
// (repoCollection); listings fall back to it (List, Repos), marking the
// repo unreachable, rather than leaving it out.

// metaRepoKnown + group key (32 bytes) + repo key (32 bytes) holds a
// knownRepo in CBOR.
const metaRepoKnown = store.PrefixMeta + "repo-known/"

// knownRepo is what this node last verified of one repo of a group.
type knownRepo struct {
	Name       string        `cbor:"1,keyasint"`
	Collection blobsync.Hash `cbor:"2,keyasint"` // zero: the repo had none
	Fresh      time.Time     `cbor:"3,keyasint"` // when it was read, UTC
}

// listRepoWait bounds how long a listing waits on the network for the
// group record and for each repo of which it knows a verified collection;
// past it, it lists what it knows and warns.
const listRepoWait = time.Second

// rememberRepo records that repo rk of group g was just read whole: its
// name and current collection h.
func (b *Backend) rememberRepo(g, rk key.RecordKey, name string, h blobsync.Hash) {
	v, err := transport.Marshal(knownRepo{Name: name, Collection: h, Fresh: time.Now().UTC().Truncate(time.Millisecond)})
	if err == nil {
		err = b.db.Set(store.Key(metaRepoKnown, g[:], rk[:]), v, false)
	}
	if err != nil {
		b.log.Debug("remember repo", "group", g, "repo", rk, "err", err)
	}
}

// knownRepos returns what this node last verified of each repo of group
// g, by repo key, and the keys in store order.
func (b *Backend) knownRepos(g key.RecordKey) (map[key.RecordKey]knownRepo, []key.RecordKey) {
	out := make(map[key.RecordKey]knownRepo)
	var order []key.RecordKey
	prefix := store.Key(metaRepoKnown, g[:])
	err := b.db.Scan(prefix, func(k, v []byte) error {
		var kr knownRepo
		if len(k) != len(prefix)+key.Size {
			return nil
		}
		rk := key.RecordKey(k[len(prefix):])
		if err := transport.Unmarshal(v, &kr); err != nil {
			return nil
		}
		out[rk] = kr
		order = append(order, rk)
		return nil
	})
	if err != nil {
		b.log.Debug("read known repos", "group", g, "err", err)
	}
	return out, order
}

// forgetRepos drops what this node knows of group g's repos (it left).
func (b *Backend) forgetRepos(g key.RecordKey) {
	_, keys := b.knownRepos(g)
	for _, rk := range keys {
		b.forgetRepo(g, rk)
	}
}

// forgetRepo drops what this node knows of repo rk of group g.
func (b *Backend) forgetRepo(g, rk key.RecordKey) {
	if err := b.db.Delete(store.Key(metaRepoKnown, g[:], rk[:]), false); err != nil {
		b.log.Debug("forget repo", "group", g, "repo", rk, "err", err)
	}
}

// knownCollection returns the collection this node last verified of repo
// rk (from the local store); an error when it knows none or no longer
// holds its blob.
func (b *Backend) knownCollection(kr knownRepo, ok bool) (*blobsync.Collection, error) {
	if !ok {
		return nil, errors.New("this node has never read it")
	}
	if kr.Collection.IsZero() {
		return &blobsync.Collection{}, nil
	}
	c, err := datarepo.LocalCollection(b.blobs, kr.Collection)
	if err != nil {
		return nil, fmt.Errorf("its last verified collection: %w", err)
	}
	return c, nil
}

// groupRepoKeys returns the repo keys of gs: read afresh (or from the
// watched local record when watched; waiting until deadline at most when
// known lists repos), else from the group record this node holds joined
// with known, the repos it has verified before. warn is set when
// the answer did not come from the network.
func (b *Backend) groupRepoKeys(ctx context.Context, gs *groupState, known []key.RecordKey, deadline time.Time) (keys []key.RecordKey, warn string, err error) {
	grp := gs.g
	if b.isWatched(gs, gs.info.ID) {
		grp = gs.local
	}
	rctx := ctx
	if len(known) > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	keys, err = grp.RepoKeys(rctx)
	if err == nil {
		for _, rk := range known {
			if rk != gs.info.Repo && !slices.Contains(keys, rk) {
				b.forgetRepo(gs.info.ID, rk) // no longer in the group
			}
		}
		return keys, "", nil
	}
	if ctx.Err() != nil {
		return nil, "", err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within %v", listRepoWait)
	}
	return b.heldRepoKeys(ctx, gs, known), fmt.Sprintf("group %s: its record could not be read (%v): listing the repos this node knows", gs.info.Name, err), nil
}

// heldRepoKeys returns the repo keys of the group record this node holds
// joined with known, the repos it verified before: the copy may lack
// slots it never held.
func (b *Backend) heldRepoKeys(ctx context.Context, gs *groupState, known []key.RecordKey) []key.RecordKey {
	keys, _ := gs.local.RepoKeys(ctx)
	for _, rk := range known {
		if !slices.Contains(keys, rk) {
			keys = append(keys, rk)
		}
	}
	return keys
}

// knownBackupStatus is the backup status of group gi as this node's last
// verified collections give it (blobs counted once, as a pass does): what
// the backup list shows after a restart until a pass ends.
func (b *Backend) knownBackupStatus(gi GroupInfo) BackupGroupStatus {
	st := BackupGroupStatus{Group: gi.ID, Name: gi.Name, Errors: []string{}}
	known, order := b.knownRepos(gi.ID)
	seen := make(map[blobsync.Hash]bool)
	for _, rk := range order {
		c, err := b.knownCollection(known[rk], true)
		if err != nil {
			continue
		}
		st.Repos++
		c.KeptFiles(func(e blobsync.Entry) bool {
			if seen[e.Hash] {
				return true
			}
			seen[e.Hash] = true
			st.Files++
			st.Bytes += e.Size
			if ok, _ := b.blobs.HasFile(e); ok {
				st.Held++
				st.BytesHeld += e.Size
			}
			return true
		})
	}
	st.Missing = st.Files - st.Held
	return st
}
