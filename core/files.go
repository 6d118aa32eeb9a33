package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
)

// FileInfo is one file of one repo in a group.
type FileInfo struct {
	Name      string        `json:"name"`
	Hash      blobsync.Hash `json:"hash"` // hex, as b3sum prints it
	Size      int64         `json:"size"` // bytes
	CreatedAt time.Time     `json:"created_at"`
	MediaType string        `json:"media_type"`
	Repo      key.RecordKey `json:"repo_key"`
	RepoName  string        `json:"repo_name"`
	Mine      bool          `json:"mine"`  // in this node's own repo
	Local     bool          `json:"local"` // bytes present in the local store
	// Publication, of a file of this node's own repo, is the state of the
	// publication of the repo's collection that lists it, while it waits
	// for the DHT (Publication.State: "queued", "retrying"); "" once
	// published, and for others' files.
	Publication string `json:"publication,omitempty"`
}

// Progress reports a download: bytes verified and stored so far, of Total,
// and each member's share.
type Progress struct {
	Done      int64              `json:"done"`
	Total     int64              `json:"total"`
	Resumed   int64              `json:"resumed,omitempty"` // of Done, verified by an earlier attempt
	Providers []ProviderProgress `json:"providers,omitempty"`
}

// ProviderProgress is one member node's share of a download.
type ProviderProgress struct {
	Node  string `json:"node"`
	Bytes int64  `json:"bytes"`
	State string `json:"state"` // active, idle, failed, banned (sent bad data), missing (does not hold it)
}

func progressOf(p blobsync.Progress) Progress {
	out := Progress{Done: p.Done, Total: p.Total, Resumed: p.Resumed}
	for _, pp := range p.Providers {
		out.Providers = append(out.Providers, ProviderProgress{Node: pp.ID, Bytes: pp.Bytes, State: pp.State})
	}
	return out
}

func (b *Backend) fileInfo(gs *groupState, repo key.RecordKey, repoName string, e blobsync.Entry) FileInfo {
	local, _ := b.blobs.Has(e.Hash)
	return FileInfo{
		Name: e.Name, Hash: e.Hash, Size: e.Size, CreatedAt: e.CreatedAt, MediaType: e.MediaType,
		Repo: repo, RepoName: repoName, Mine: repo == gs.info.Repo, Local: local,
	}
}

// AddFiles adds files (absolute paths on this machine) to this node's repo
// in the group, under their base names, and publishes the new collection.
// It returns once the blobs and the collection are stored locally: the
// publication to the DHT is queued and sent in the background (publish.go;
// FileInfo.Publication, Publications).
func (b *Backend) AddFiles(ctx context.Context, g key.RecordKey, paths []string) ([]FileInfo, error) {
	gs, err := b.group(g)
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, badInput(errors.New("no files given"))
	}
	var need int64
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, badInput(fmt.Errorf("path %q is not absolute", p))
		}
		if fi, err := os.Stat(p); err == nil {
			need += fi.Size()
		}
	}
	release, err := b.reserveStorage(need)
	if err != nil {
		return nil, err
	}
	defer release()
	entries, err := gs.repo.AddFiles(ctx, paths)
	if errors.Is(err, datarepo.ErrBadName) {
		return nil, badInput(err)
	}
	if err != nil {
		return nil, err
	}
	b.ownRepoChanged(ctx, gs)
	name, _ := gs.repo.Name(ctx)
	pending := b.collectionPending(gs)
	out := make([]FileInfo, len(entries))
	for i, e := range entries {
		out[i] = b.fileInfo(gs, gs.info.Repo, name, e)
		out[i].Publication = pending
	}
	return out, nil
}

// ListFiles lists the files of every repo in the group, read afresh from
// the DHT; collections not yet local are fetched from the members. A repo
// that cannot be read right now is skipped and logged.
func (b *Backend) ListFiles(ctx context.Context, g key.RecordKey) ([]FileInfo, error) {
	gs, err := b.group(g)
	if err != nil {
		return nil, err
	}
	grp := gs.g
	if b.isWatched(gs, gs.info.ID) {
		grp = gs.local
	}
	repos, err := grp.RepoKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []FileInfo
	for _, rk := range repos {
		files, err := b.repoFiles(ctx, gs, rk, b.isWatched(gs, rk))
		if err != nil {
			b.log.Warn("list repo", "group", g, "repo", rk, "err", err)
			continue
		}
		out = append(out, files...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Repo.String() < out[j].Repo.String()
	})
	return out, nil
}

// repoFiles reads repo rk of gs and its collection (fetched from the
// members if not local). With local, the record is read from this node's
// store only: what its watch keeps current.
func (b *Backend) repoFiles(ctx context.Context, gs *groupState, rk key.RecordKey, local bool) ([]FileInfo, error) {
	name, _, c, err := b.repoCollection(ctx, gs, rk, local)
	if err != nil {
		return nil, err
	}
	var pending string
	if rk == gs.info.Repo {
		pending = b.collectionPending(gs)
	}
	out := make([]FileInfo, 0, len(c.Entries))
	for _, e := range c.Entries {
		fi := b.fileInfo(gs, rk, name, e)
		fi.Publication = pending
		out = append(out, fi)
	}
	return out, nil
}

// repoCollection reads repo rk's name and current collection (its hash
// and content), fetching the collection blob from the members if it is
// not local, and marks the collection and every blob it lists servable to
// the group. local reads the records this node holds (watched) instead
// of asking the DHT.
func (b *Backend) repoCollection(ctx context.Context, gs *groupState, rk key.RecordKey, local bool) (string, blobsync.Hash, *blobsync.Collection, error) {
	repo := gs.repo
	if rk != gs.info.Repo || local {
		var recs datarepo.Records = records{b}
		if local {
			recs = localRecords{b}
		}
		var err error
		if repo, err = datarepo.OpenKey(ctx, recs, b.blobs, gs.g.Secret(), rk); err != nil {
			return "", blobsync.Hash{}, nil, err
		}
	}
	name, err := repo.Name(ctx)
	if err != nil {
		return "", blobsync.Hash{}, nil, err
	}
	fetch := func(ctx context.Context, h blobsync.Hash) error {
		return b.download(ctx, gs, h, 0, []key.RecordKey{rk}, nil)
	}
	c, h, err := repo.Collection(ctx, fetch)
	if err != nil {
		return "", blobsync.Hash{}, nil, err
	}
	b.markServable(gs, h, c)
	return name, h, c, nil
}

// GetFile writes the named file of the group to dst (an absolute path),
// fetching it from the members first if its bytes are not local; every
// 16 KiB chunk group is verified before it is stored. repo narrows the
// search to one repo (zero: this node's own repo first, then any other; a
// name that several repos hold with different content is ErrAmbiguous).
// progress, if not nil, is called as bytes arrive; subscribers hear of a
// download as download.progress events.
func (b *Backend) GetFile(ctx context.Context, g key.RecordKey, repo key.RecordKey, name, dst string, progress func(Progress)) (FileInfo, error) {
	gs, err := b.group(g)
	if err != nil {
		return FileInfo{}, err
	}
	if !filepath.IsAbs(dst) {
		return FileInfo{}, badInput(fmt.Errorf("output path %q is not absolute", dst))
	}
	fi, err := b.findFile(ctx, gs, repo, name)
	if err != nil {
		return FileInfo{}, err
	}
	if !fi.Local {
		release, err := b.reserveStorage(fi.Size)
		if err != nil {
			return fi, fmt.Errorf("download %q: %w", name, err)
		}
		defer release()
		var cb func(blobsync.Progress)
		if progress != nil {
			cb = func(p blobsync.Progress) { progress(progressOf(p)) }
		}
		if err := b.fetchTold(ctx, gs, &fi, cb); err != nil {
			return fi, err
		}
	} else if progress != nil {
		progress(Progress{Done: fi.Size, Total: fi.Size})
	}
	if err := b.blobs.Export(ctx, fi.Hash, dst); err != nil {
		return fi, fmt.Errorf("write %s: %w", dst, err)
	}
	return fi, nil
}

func (b *Backend) findFile(ctx context.Context, gs *groupState, repo key.RecordKey, name string) (FileInfo, error) {
	if !repo.IsZero() {
		files, err := b.repoFiles(ctx, gs, repo, b.isWatched(gs, repo))
		if err != nil {
			return FileInfo{}, err
		}
		for _, f := range files {
			if f.Name == name {
				return f, nil
			}
		}
		return FileInfo{}, fmt.Errorf("%w: %q in repo %s", ErrFileNotFound, name, repo)
	}
	all, err := b.ListFiles(ctx, gs.info.ID)
	if err != nil {
		return FileInfo{}, err
	}
	var match []FileInfo
	for _, f := range all {
		if f.Name == name {
			if f.Mine {
				return f, nil
			}
			match = append(match, f)
		}
	}
	if len(match) == 0 {
		return FileInfo{}, fmt.Errorf("%w: %q in group %s", ErrFileNotFound, name, gs.info.Name)
	}
	for _, f := range match[1:] {
		if f.Hash != match[0].Hash {
			return FileInfo{}, fmt.Errorf("%w: %d repos hold a different %q; name the repo", ErrAmbiguous, len(match), name)
		}
	}
	return match[0], nil
}

// RemoveFile removes the named file from this node's repo in the group.
// Like AddFiles it returns once the new collection is stored locally; its
// publication is queued.
func (b *Backend) RemoveFile(ctx context.Context, g key.RecordKey, name string) error {
	gs, err := b.group(g)
	if err != nil {
		return err
	}
	err = gs.repo.DeleteFile(ctx, name)
	if errors.Is(err, datarepo.ErrFileNotFound) {
		return fmt.Errorf("%w: %q in your repo of group %s", ErrFileNotFound, name, gs.info.Name)
	}
	if err != nil {
		return err
	}
	b.ownRepoChanged(ctx, gs)
	return nil
}

// ownRepoChanged lets members fetch this node's current collection of gs
// and its files, and tells subscribers what changed (noteRepo); called at
// start and after every change of the repo.
func (b *Backend) ownRepoChanged(ctx context.Context, gs *groupState) {
	name, h, c, err := b.repoCollection(ctx, gs, gs.info.Repo, true)
	if err != nil {
		b.log.Warn("read own collection", "group", gs.info.ID, "err", err)
		return
	}
	b.noteRepo(gs, gs.info.Repo, name, h, c)
}
