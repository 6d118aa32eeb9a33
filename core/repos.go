package core

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/store"
)

// Errors of the repo and media methods; test with errors.Is.
var (
	// ErrUnknownRepo: the repo key is not one of the group's repos.
	ErrUnknownRepo = errors.New("unknown repo")
	// ErrReadOnly: a write to a repo this node does not own (every member
	// writes only its own repo).
	ErrReadOnly = errors.New("repo is read-only for this node")
	// ErrTooLarge: an upload over the caller's byte limit.
	ErrTooLarge = errors.New("too large")
)

// RepoInfo describes one data repo of a group. Key, Name and CreatedAt are
// the fields of the Save app's API (../shared/SAVE-API.md).
type RepoInfo struct {
	Key  key.RecordKey `json:"key"`
	Name string        `json:"name"`
	// CreatedAt is when this node first saw the repo (its own repo: when it
	// first listed it); repo records carry no creation time.
	CreatedAt time.Time `json:"created_at"`
	CanWrite  bool      `json:"can_write"` // this node's own repo
}

// metaRepoSeen + repo key (32 bytes) holds the first time this node saw a
// repo, as 8 bytes big-endian Unix milliseconds.
const metaRepoSeen = store.PrefixMeta + "repo-seen/"

// firstSeen returns when this node first saw repo rk, recording now if
// never.
func (b *Backend) firstSeen(rk key.RecordKey) time.Time {
	k := store.Key(metaRepoSeen, rk[:])
	if v, err := b.db.Get(k); err == nil && len(v) == 8 {
		return time.UnixMilli(int64(binary.BigEndian.Uint64(v))).UTC()
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := b.db.Set(k, binary.BigEndian.AppendUint64(nil, uint64(now.UnixMilli())), false); err != nil {
		b.log.Debug("record repo first-seen time", "repo", rk, "err", err)
	}
	return now
}

// openRepo returns a handle on repo rk of gs: this node's writable one, or
// a read-only one found in the DHT.
func (b *Backend) openRepo(ctx context.Context, gs *groupState, rk key.RecordKey) (*datarepo.Repo, error) {
	if rk == gs.info.Repo {
		return gs.repo, nil
	}
	return datarepo.OpenKey(ctx, records{b}, b.blobs, gs.g.Keys(), rk)
}

// checkRepo returns ErrUnknownRepo unless rk is one of gs's repos (as
// groupRepoKeys reads them: when the group record cannot be read, those
// this node holds or knows).
func (b *Backend) checkRepo(ctx context.Context, gs *groupState, rk key.RecordKey) error {
	if rk == gs.info.Repo {
		return nil
	}
	_, order := b.knownRepos(gs.info.ID)
	keys, _, err := b.groupRepoKeys(ctx, gs, order, time.Now().Add(listRepoWait))
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k == rk {
			return nil
		}
	}
	return fmt.Errorf("%w: %s in group %s", ErrUnknownRepo, rk, gs.info.Name)
}

func (b *Backend) repoInfo(ctx context.Context, gs *groupState, rk key.RecordKey) (RepoInfo, error) {
	r, err := b.openRepo(ctx, gs, rk)
	if err != nil {
		return RepoInfo{}, err
	}
	name, err := r.Name(ctx)
	if err != nil {
		return RepoInfo{}, fmt.Errorf("repo %s: %w", rk, err)
	}
	return RepoInfo{Key: rk, Name: name, CreatedAt: b.firstSeen(rk), CanWrite: rk == gs.info.Repo}, nil
}

// Repos lists the data repos of group g, read afresh from the DHT, in the
// order of the group's repo subkeys; this node's own repo is always listed.
// A repo whose record cannot be read right now is listed under the name
// this node last read (known.go), or skipped and logged if it never read
// one; when the group record cannot be read, the repos are those this
// node holds or knows (List). Reads of repos this node knows wait
// listRepoWait at most. Errors: ErrUnknownGroup; ctx's.
func (b *Backend) Repos(ctx context.Context, g key.RecordKey) ([]RepoInfo, error) {
	gs, err := b.group(g)
	if err != nil {
		return nil, err
	}
	known, order := b.knownRepos(g)
	deadline := time.Now().Add(listRepoWait)
	keys, warn, err := b.groupRepoKeys(ctx, gs, order, deadline)
	if err != nil {
		return nil, err
	}
	if warn != "" {
		b.log.Warn("list repos", "group", g, "warning", warn)
	}
	out := make([]RepoInfo, 0, len(keys)+1)
	own := false
	for _, rk := range keys {
		own = own || rk == gs.info.Repo
		rctx, cancel := ctx, context.CancelFunc(func() {})
		kr, ok := known[rk]
		if ok {
			rctx, cancel = context.WithDeadline(ctx, deadline)
		}
		ri, err := b.repoInfo(rctx, gs, rk)
		cancel()
		if err != nil && ok && ctx.Err() == nil {
			ri, err = RepoInfo{Key: rk, Name: kr.Name, CreatedAt: b.firstSeen(rk), CanWrite: rk == gs.info.Repo}, nil
			b.log.Warn("list repo: listed under the name last read", "group", g, "repo", rk, "seen_fresh", kr.Fresh)
		}
		if err != nil {
			b.log.Warn("list repo", "group", g, "repo", rk, "err", err)
			continue
		}
		out = append(out, ri)
	}
	if !own {
		ri, err := b.repoInfo(ctx, gs, gs.info.Repo)
		if err != nil {
			return nil, err
		}
		out = append(out, ri)
	}
	return out, nil
}

// Repo describes repo rk of group g. Errors: ErrUnknownGroup,
// ErrUnknownRepo (rk is not listed in the group), DHT errors.
func (b *Backend) Repo(ctx context.Context, g, rk key.RecordKey) (RepoInfo, error) {
	gs, err := b.group(g)
	if err != nil {
		return RepoInfo{}, err
	}
	if err := b.checkRepo(ctx, gs, rk); err != nil {
		return RepoInfo{}, err
	}
	return b.repoInfo(ctx, gs, rk)
}

// OwnRepo describes this node's own repo in group g (dweb keeps one repo
// per node per group). Errors: ErrUnknownGroup, DHT errors.
func (b *Backend) OwnRepo(ctx context.Context, g key.RecordKey) (RepoInfo, error) {
	gs, err := b.group(g)
	if err != nil {
		return RepoInfo{}, err
	}
	return b.repoInfo(ctx, gs, gs.info.Repo)
}

// RepoFiles lists the files of repo rk of group g, by name (ListFiles,
// narrowed to the repo: collections not yet local are fetched from the
// members first, and a repo that cannot be read right now lists no files).
// Errors: ErrUnknownGroup, ErrUnknownRepo, DHT errors.
func (b *Backend) RepoFiles(ctx context.Context, g, rk key.RecordKey) ([]FileInfo, error) {
	gs, err := b.group(g)
	if err != nil {
		return nil, err
	}
	if err := b.checkRepo(ctx, gs, rk); err != nil {
		return nil, err
	}
	all, err := b.ListFiles(ctx, g)
	if err != nil {
		return nil, err
	}
	files := make([]FileInfo, 0, len(all))
	for _, f := range all {
		if f.Repo == rk {
			files = append(files, f)
		}
	}
	return files, nil
}

// CollectionHash returns the hash of repo rk's current collection in group
// g; ok is false when the repo has none yet. Errors: ErrUnknownGroup,
// ErrUnknownRepo, DHT errors.
func (b *Backend) CollectionHash(ctx context.Context, g, rk key.RecordKey) (h blobsync.Hash, ok bool, err error) {
	gs, err := b.group(g)
	if err != nil {
		return h, false, err
	}
	if err := b.checkRepo(ctx, gs, rk); err != nil {
		return h, false, err
	}
	r, err := b.openRepo(ctx, gs, rk)
	if err != nil {
		return h, false, err
	}
	return r.CollectionHash(ctx)
}

// SetRepoName names this node's own repo in group g (subkey 0 of the repo
// record, sealed under the group secret: datarepo.Repo.SetName) and returns
// it as the group now lists it. The name is 1 to datarepo.MaxNameLen bytes
// of UTF-8 without '/' or NUL; several members may share one name (the repo
// key tells them apart). It returns once the name is stored locally; its
// publication to the DHT is queued (publish.go). Errors: ErrUnknownGroup;
// a *BadInputError for a bad name; store errors.
func (b *Backend) SetRepoName(ctx context.Context, g key.RecordKey, name string) (RepoInfo, error) {
	gs, err := b.group(g)
	if err != nil {
		return RepoInfo{}, err
	}
	if err := gs.repo.SetName(ctx, name); err != nil {
		if errors.Is(err, datarepo.ErrBadName) {
			return RepoInfo{}, badInput(fmt.Errorf("repo name: %w", err))
		}
		return RepoInfo{}, fmt.Errorf("name repo %s: %w", gs.info.Repo, err)
	}
	b.ownRepoChanged(ctx, gs)
	return b.repoInfo(ctx, gs, gs.info.Repo)
}
