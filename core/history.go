package core

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
)

// A file's history (docs/design-notes.md, "History") is datarepo's: core
// finds the repo that holds the name, lists its versions, fetches an old
// version from the repo's providers as it fetches a current file, and asks
// this node's repo to restore one.

// ErrVersionNotFound: the version asked for is not in the file's history
// (an index past its end, a hash prefix no version has).
var ErrVersionNotFound = errors.New("version not found")

// FileVersion is one version in a file's history.
type FileVersion struct {
	// Index is the version's place in the history, newest first: 0 is the
	// current version. It shifts by one with each new version; Hash does
	// not.
	Index int           `json:"index"`
	Hash  blobsync.Hash `json:"hash"` // whole-file BLAKE3, as b3sum prints it; zero for a deletion
	Size  int64         `json:"size"` // bytes; 0 for a deletion
	// CreatedAt is when the version was added, or, for a deletion, when
	// the file was deleted (zero: unknown).
	CreatedAt time.Time `json:"created_at"`
	ModTime   time.Time `json:"mod_time"` // the file's modification time (zero: unknown)
	MediaType string    `json:"media_type,omitempty"`
	Deleted   bool      `json:"deleted"` // a deletion: the file was gone from the listings from CreatedAt
	Chunked   bool      `json:"chunked"` // stored as content-defined chunks
	Local     bool      `json:"local"`   // its bytes are all in this node's store
}

// FileHistory is the history of one file name in one repo.
type FileHistory struct {
	Name     string        `json:"name"`
	Repo     key.RecordKey `json:"repo_key"`
	RepoName string        `json:"repo_name"`
	Mine     bool          `json:"mine"`     // in this node's own repo (RestoreFile works on it)
	Versions []FileVersion `json:"versions"` // newest first, at least one
}

// retention is the datarepo retention Options ask for.
func retention(o Options) blobsync.Retention {
	r := blobsync.Retention{Keep: o.KeepVersions, MaxAge: max(o.KeepVersionsFor, 0)}
	switch {
	case o.KeepVersions == 0:
		r.Keep = -1
	case o.KeepVersions < 0:
		r.Keep = 0
	}
	return r
}

// FileHistory returns the versions of file name in group g, newest first,
// a deletion included when the file was deleted (a deleted file is not
// listed by List, but its history is kept). repo narrows the search to
// one repo; zero: this node's own repo if it has the name (live or
// deleted), else the one other repo that has it. Errors: ErrUnknownGroup,
// ErrUnknownRepo, ErrFileNotFound, ErrAmbiguous (several other repos
// have the name: name the repo); reading a repo's record or collection.
func (b *Backend) FileHistory(ctx context.Context, g, repo key.RecordKey, name string) (FileHistory, error) {
	gs, err := b.group(g)
	if err != nil {
		return FileHistory{}, err
	}
	rk, repoName, e, err := b.lookupFile(ctx, gs, repo, name)
	if err != nil {
		return FileHistory{}, err
	}
	h := FileHistory{Name: name, Repo: rk, RepoName: repoName, Mine: rk == gs.info.Repo}
	for i, v := range e.History() {
		fv := FileVersion{Index: i, Hash: v.Hash, Size: v.Size, CreatedAt: v.CreatedAt, ModTime: v.ModTime,
			MediaType: v.MediaType, Deleted: v.Deleted, Chunked: !v.Chunks.IsZero()}
		if !v.Deleted {
			fv.Local, _ = b.blobs.HasFile(v.Entry(name))
		}
		h.Versions = append(h.Versions, fv)
	}
	return h, nil
}

// GetFileVersion writes version ref of file name of group g to dst (an
// absolute path), fetching it from the providers of the file's repo first
// when its bytes are not local, verified as GetFile does (a chunked
// version fetches only the chunks not held and is checked against its
// whole-file hash). ref is an index into the history (0: the current
// version) or 8 to 64 hex digits of a version's hash
// (datarepo.ParseVersionRef). repo narrows the search as FileHistory.
// The FileInfo returned describes that version. Errors: FileHistory's;
// a *BadInputError for a bad ref, a relative dst or a version that is a
// deletion; ErrVersionNotFound; download errors.
func (b *Backend) GetFileVersion(ctx context.Context, g, repo key.RecordKey, name, ref, dst string, progress func(Progress)) (FileInfo, error) {
	return b.getFileVersion(ctx, g, repo, name, dst, GetOptions{Version: ref, Progress: progress})
}

// getFileVersion is GetFileVersion of version opts.Version.
func (b *Backend) getFileVersion(ctx context.Context, g, repo key.RecordKey, name, dst string, opts GetOptions) (FileInfo, error) {
	ref := opts.Version
	gs, err := b.group(g)
	if err != nil {
		return FileInfo{}, err
	}
	if !filepath.IsAbs(dst) {
		return FileInfo{}, badInput(fmt.Errorf("output path %q is not absolute", dst))
	}
	vr, err := parseVersionRef(ref)
	if err != nil {
		return FileInfo{}, err
	}
	rk, repoName, e, err := b.lookupFile(ctx, gs, repo, name)
	if err != nil {
		return FileInfo{}, err
	}
	_, v, err := datarepo.FindVersion(e.History(), vr)
	if err != nil {
		return FileInfo{}, versionErr(name, err)
	}
	fi := b.fileInfo(gs, rk, repoName, v.Entry(name))
	return b.getFile(ctx, gs, fi, dst, opts)
}

// RestoreFile makes version ref (as GetFileVersion's) of file name of this
// node's repo in group g its current version again, as a new version with
// the same bytes (datarepo.Repo.Restore), and publishes the collection as
// AddFiles does; a deleted file comes back to the listings. Restoring the
// current version changes nothing. Errors: ErrUnknownGroup, ErrReadOnly,
// ErrFileNotFound (the name was never in this node's repo, or its history
// was pruned), ErrVersionNotFound, a *BadInputError for a bad ref or a
// version that is a deletion.
func (b *Backend) RestoreFile(ctx context.Context, g key.RecordKey, name, ref string) (FileInfo, error) {
	gs, err := b.writableGroup(g)
	if err != nil {
		return FileInfo{}, err
	}
	vr, err := parseVersionRef(ref)
	if err != nil {
		return FileInfo{}, err
	}
	e, err := gs.repo.Restore(ctx, name, vr)
	if errors.Is(err, datarepo.ErrFileNotFound) {
		return FileInfo{}, fmt.Errorf("%w: %q in your repo of group %s", ErrFileNotFound, name, gs.info.Name)
	}
	if err != nil {
		return FileInfo{}, versionErr(name, err)
	}
	b.ownRepoChanged(ctx, gs)
	repoName, _ := gs.repo.Name(ctx)
	fi := b.fileInfo(gs, gs.info.Repo, repoName, e)
	fi.Publication = b.collectionPending(gs)
	return fi, nil
}

func parseVersionRef(ref string) (datarepo.VersionRef, error) {
	vr, err := datarepo.ParseVersionRef(ref)
	if err != nil {
		return vr, badInput(err)
	}
	return vr, nil
}

// versionErr maps datarepo's version errors to core's.
func versionErr(name string, err error) error {
	switch {
	case errors.Is(err, datarepo.ErrVersionNotFound):
		return fmt.Errorf("%w: %q: %w", ErrVersionNotFound, name, err)
	case errors.Is(err, datarepo.ErrBadVersionRef), errors.Is(err, datarepo.ErrVersionDeleted):
		return badInput(fmt.Errorf("%q: %w", name, err))
	}
	return err
}

// lookupFile finds file name, live or deleted, in repo rk of gs (zero:
// this node's own repo first, then the one other repo that has it) and
// returns the repo, its name and the file's entry with its history.
func (b *Backend) lookupFile(ctx context.Context, gs *groupState, rk key.RecordKey, name string) (key.RecordKey, string, blobsync.Entry, error) {
	if err := datarepo.CheckName(name); err != nil {
		return rk, "", blobsync.Entry{}, badInput(err)
	}
	if !rk.IsZero() {
		if err := b.checkRepo(ctx, gs, rk); err != nil {
			return rk, "", blobsync.Entry{}, err
		}
		repoName, _, c, err := b.repoCollection(ctx, gs, rk, false)
		if err != nil {
			return rk, "", blobsync.Entry{}, err
		}
		e, ok := c.Lookup(name)
		if !ok {
			return rk, "", blobsync.Entry{}, fmt.Errorf("%w: %q in repo %s", ErrFileNotFound, name, rk)
		}
		return rk, repoName, e, nil
	}
	repoName, _, c, err := b.repoCollection(ctx, gs, gs.info.Repo, true)
	if err == nil {
		if e, ok := c.Lookup(name); ok {
			return gs.info.Repo, repoName, e, nil
		}
	}
	_, order := b.knownRepos(gs.info.ID)
	keys, _, err := b.groupRepoKeys(ctx, gs, order, time.Now().Add(listRepoWait))
	if err != nil {
		return rk, "", blobsync.Entry{}, err
	}
	type found struct {
		rk   key.RecordKey
		name string
		e    blobsync.Entry
	}
	var match []found
	for _, k := range slices.DeleteFunc(keys, func(k key.RecordKey) bool { return k == gs.info.Repo }) {
		repoName, _, c, err := b.repoCollection(ctx, gs, k, b.isWatched(gs, k))
		if err != nil {
			b.log.Debug("file history: repo unreadable", "group", gs.info.ID, "repo", k, "err", err)
			continue
		}
		if e, ok := c.Lookup(name); ok {
			match = append(match, found{k, repoName, e})
		}
	}
	switch len(match) {
	case 0:
		return rk, "", blobsync.Entry{}, fmt.Errorf("%w: %q in group %s", ErrFileNotFound, name, gs.info.Name)
	case 1:
		return match[0].rk, match[0].name, match[0].e, nil
	}
	return rk, "", blobsync.Entry{}, fmt.Errorf("%w: %d repos have a file %q; name the repo", ErrAmbiguous, len(match), name)
}
