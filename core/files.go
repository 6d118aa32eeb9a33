package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
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
	// RepoSeenFresh is when this node last read the file's repo afresh;
	// RepoReachable, whether the listing did now (List, RepoState).
	RepoSeenFresh time.Time `json:"repo_seen_fresh"`
	RepoReachable bool      `json:"repo_reachable"`
	// Export, set by a get only, is how the bytes reached the output
	// path: "move" (the store's file became it; GetOptions.NoStoreCopy),
	// "mirror" (written by the download as the bytes arrived, beside the
	// store's copy: blobsync.Store.DownloadTo), "reflink",
	// "copy_file_range" or "copy" (from the store, which keeps its copy),
	// "assemble" (a chunked file written from its chunks), "assemble-ref"
	// (so written, its chunks then kept as references into the path:
	// GetOptions.NoStoreCopy).
	Export string `json:"export,omitempty"`
	// Store, set by an add only, is how this node's blob store keeps the
	// file's bytes: "reference" (no copy: it reads the user's file,
	// until that changes; AddOptions.NoStoreCopy), "copy" (its own copy
	// of the whole file) or "chunks" (its own copies of the file's
	// content-defined chunks: Options.Chunking).
	Store string `json:"store,omitempty"`

	chunks blobsync.Hash // the entry's chunk list; zero: the file is blob Hash
}

// entry is the part of fi's collection entry that says where its bytes
// are: blob Hash, or the chunk list chunks.
func (fi *FileInfo) entry() blobsync.Entry {
	return blobsync.Entry{Name: fi.Name, Hash: fi.Hash, Size: fi.Size, Chunks: fi.chunks}
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
	local, _ := b.blobs.HasFile(e)
	return FileInfo{
		Name: e.Name, Hash: e.Hash, Size: e.Size, CreatedAt: e.CreatedAt, MediaType: e.MediaType,
		Repo: repo, RepoName: repoName, Mine: repo == gs.info.Repo, Local: local, chunks: e.Chunks,
	}
}

// AddFiles adds files (absolute paths on this machine) to this node's repo
// in the group, under their base names, and publishes the new collection.
// It returns once the blobs and the collection are stored locally: the
// publication to the DHT is queued and sent in the background (publish.go;
// FileInfo.Publication, Publications). The store copies each file
// (AddFilesWith with the zero AddOptions).
func (b *Backend) AddFiles(ctx context.Context, g key.RecordKey, paths []string) ([]FileInfo, error) {
	return b.AddFilesWith(ctx, g, paths, AddOptions{})
}

// AddOptions configures AddFilesWith. The zero value is AddFiles's add.
type AddOptions struct {
	// NoStoreCopy keeps each file by reference instead of copying it
	// into the store (datarepo.AddOptions.NoStoreCopy,
	// blobsync.Store.AddFileRef): the store reads the file once,
	// hashing it on every core, and keeps only its outboard (about 1/256
	// of its size) with its path, size and mtime; it lists and serves
	// the file from the path until the file's size or mtime change, then
	// refuses it (never serving changed bytes as verified) and the node
	// no longer holds the file: other members fetch it from other
	// holders; add it again after an edit. GC drops the reference, never
	// the file. Files of at most 16 KiB and bytes the store already
	// keeps as its own copy are copied; a chunked repo (Options.Chunking)
	// keeps such a file as one blob by reference, unchunked.
	// FileInfo.Store says how each file was kept. The storage quota
	// counts the outboard only, as it counts reference-mode blobs
	// nothing (StorageUsage.RefBytes).
	NoStoreCopy bool
}

// AddFilesWith is AddFiles with options; the FileInfos returned have
// Store set. Errors: a *BadInputError for no paths, a relative path, a
// path that is missing or not a regular file, or a base name
// datarepo.CheckName refuses; a *QuotaError when the copies (or
// with NoStoreCopy, the outboards) would pass Options.StorageQuota; the
// store's (with NoStoreCopy, a file that changed while it was hashed).
func (b *Backend) AddFilesWith(ctx context.Context, g key.RecordKey, paths []string, opts AddOptions) ([]FileInfo, error) {
	gs, err := b.writableGroup(g)
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
		fi, err := os.Stat(p)
		if err != nil {
			return nil, badInput(fmt.Errorf("add %s: %w", p, err))
		}
		if !fi.Mode().IsRegular() {
			return nil, badInput(fmt.Errorf("add %s: not a regular file (%v)", p, fi.Mode().Type()))
		}
		need += addReserve(fi.Size(), opts.NoStoreCopy)
	}
	release, err := b.reserveStorage(need)
	if err != nil {
		return nil, err
	}
	defer release()
	added, err := gs.repo.AddFilesWith(ctx, paths, datarepo.AddOptions{NoStoreCopy: opts.NoStoreCopy})
	if errors.Is(err, datarepo.ErrBadName) {
		return nil, badInput(err)
	}
	if err != nil {
		return nil, err
	}
	b.ownRepoChanged(ctx, gs)
	name, _ := gs.repo.Name(ctx)
	pending := b.collectionPending(gs)
	out := make([]FileInfo, len(added))
	for i, a := range added {
		out[i] = b.fileInfo(gs, gs.info.Repo, name, a.Entry)
		out[i].Publication = pending
		out[i].Store = a.Store
	}
	return out, nil
}

// addReserve is what an add of a file of size bytes reserves against the
// storage quota: its size for a copy; by reference, its outboard (one
// 64-byte parent per 16 KiB group, about 1/256 of the size), or the
// size itself for a file the store keeps inline (at most 16 KiB).
func addReserve(size int64, byRef bool) int64 {
	if !byRef || size <= blobsync.ChunkGroupSize {
		return size
	}
	return 64 * ((size + blobsync.ChunkGroupSize - 1) / blobsync.ChunkGroupSize)
}

// Listing is a group's files as this node knows them, with the state of
// each repo they come from.
type Listing struct {
	Files []FileInfo `json:"files"` // by name, then repo key
	// Repos: every repo of the group this listing covers, in the group's
	// order, this node's own first when the group does not list it yet.
	Repos []RepoState `json:"repos"`
	// Warnings say, one line each, what could not be read now and what
	// was listed instead; empty when every repo was read afresh.
	Warnings []string `json:"warnings"`
}

// RepoState is one repo of a listing.
type RepoState struct {
	Repo key.RecordKey `json:"repo_key"`
	Name string        `json:"name"`
	// Collection is the hash of the collection listed (zero: none).
	Collection blobsync.Hash `json:"collection"`
	Files      int           `json:"files"`
	// SeenFresh is when this node last read the repo's current record and
	// collection (zero: never).
	SeenFresh time.Time `json:"seen_fresh"`
	// Reachable: this listing read the repo's current collection now.
	// When false, Error says why, and Files come from the collection this
	// node verified at SeenFresh (none if it never did).
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// ListFiles is List's files.
func (b *Backend) ListFiles(ctx context.Context, g key.RecordKey) ([]FileInfo, error) {
	l, err := b.List(ctx, g)
	return l.Files, err
}

// List lists the files of every repo in the group. Each repo is read
// afresh (from the DHT, or from the records its watch keeps current), its
// collection fetched from the members if not local. A repo that cannot be
// read now is listed from the last collection this node verified of it,
// marked unreachable, with a warning; when the group record cannot be
// read, the repos are those this node knows. When the node knows a
// verified collection of a repo, the listing waits on the network for it
// (and for the group record) listRepoWait at most, from its start. Errors:
// ErrUnknownGroup, ctx's.
func (b *Backend) List(ctx context.Context, g key.RecordKey) (Listing, error) {
	gs, err := b.group(g)
	if err != nil {
		return Listing{}, err
	}
	known, knownOrder := b.knownRepos(g)
	deadline := time.Now().Add(listRepoWait)
	keys, warn, err := b.groupRepoKeys(ctx, gs, knownOrder, deadline)
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Files: []FileInfo{}, Warnings: []string{}}
	if warn != "" {
		l.Warnings = append(l.Warnings, warn)
	}
	if !slices.Contains(keys, gs.info.Repo) {
		keys = append([]key.RecordKey{gs.info.Repo}, keys...)
	}
	files := make([][]FileInfo, len(keys))
	l.Repos = make([]RepoState, len(keys))
	var wg sync.WaitGroup
	for i, rk := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kr, ok := known[rk]
			files[i], l.Repos[i] = b.listRepo(ctx, gs, rk, kr, ok, deadline)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return Listing{}, ctx.Err()
	}
	for i, rs := range l.Repos {
		if !rs.Reachable {
			label := rs.Repo.String()
			if rs.Name != "" {
				label = fmt.Sprintf("%q (%s)", rs.Name, rs.Repo)
			}
			l.Warnings = append(l.Warnings, fmt.Sprintf("repo %s unreachable: %s", label, rs.Error))
			b.log.Warn("list repo", "group", g, "repo", rs.Repo, "err", rs.Error)
		}
		l.Files = append(l.Files, files[i]...)
	}
	sort.Slice(l.Files, func(i, j int) bool {
		if l.Files[i].Name != l.Files[j].Name {
			return l.Files[i].Name < l.Files[j].Name
		}
		return l.Files[i].Repo.String() < l.Files[j].Repo.String()
	})
	return l, nil
}

// listRepo reads repo rk of gs for List: afresh, or, failing that, from
// kr, what this node last verified of it (ok: it has), waiting on the
// network until deadline at most when it has.
func (b *Backend) listRepo(ctx context.Context, gs *groupState, rk key.RecordKey, kr knownRepo, ok bool, deadline time.Time) ([]FileInfo, RepoState) {
	rctx := ctx
	fallback, ferr := b.knownCollection(kr, ok)
	if ferr == nil && rk != gs.info.Repo {
		var cancel context.CancelFunc
		rctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	rs := RepoState{Repo: rk}
	name, h, c, fresh, err := b.readRepo(rctx, gs, rk, b.isWatched(gs, rk))
	switch {
	case err == nil && fresh:
		rs.Name, rs.Collection, rs.Reachable, rs.SeenFresh = name, h, true, time.Now().UTC().Truncate(time.Millisecond)
	case err == nil:
		// Read from this node's own copy of the records: what it holds,
		// not known to be current.
		rs.Name, rs.Collection = name, h
		if ok {
			rs.SeenFresh = kr.Fresh
		}
		rs.Error = fmt.Sprintf("no other node answered for its record: listing the %d files of the collection this node holds", len(c.Entries))
	default:
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %v", listRepoWait)
		}
		if ok {
			rs.Name, rs.SeenFresh = kr.Name, kr.Fresh
		}
		if ferr != nil {
			rs.Error = fmt.Sprintf("%v; no files listed: %v", err, ferr)
			return nil, rs
		}
		c, rs.Collection = fallback, kr.Collection
		b.markServable(gs, kr.Collection, c)
		rs.Error = fmt.Sprintf("%v; listing the %d files of its collection last seen fresh at %s", err, len(c.Entries), kr.Fresh.Format(time.RFC3339))
	}
	var pending string
	if rk == gs.info.Repo {
		pending = b.collectionPending(gs)
	}
	out := make([]FileInfo, 0, len(c.Entries))
	for _, e := range c.Entries {
		fi := b.fileInfo(gs, rk, rs.Name, e)
		fi.Publication = pending
		fi.RepoSeenFresh, fi.RepoReachable = rs.SeenFresh, rs.Reachable
		out = append(out, fi)
	}
	rs.Files = len(out)
	return out, rs
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
	name, h, c, _, err := b.readRepo(ctx, gs, rk, local)
	return name, h, c, err
}

// readRepo is repoCollection that also says whether what it read is
// fresh: this node's own repo, one whose watch holds a lease with another
// node (dht.Watching), or one whose records another node answered for. Only a fresh read is remembered as what this
// node last verified of the repo (known.go).
func (b *Backend) readRepo(ctx context.Context, gs *groupState, rk key.RecordKey, local bool) (string, blobsync.Hash, *blobsync.Collection, bool, error) {
	repo := gs.repo
	var missed atomic.Bool
	if rk != gs.info.Repo || local {
		var recs datarepo.Records = probedRecords{b, &missed}
		if local {
			recs = localRecords{b}
		}
		var err error
		if repo, err = datarepo.OpenKey(ctx, recs, b.blobs, gs.g.Keys(), rk); err != nil {
			return "", blobsync.Hash{}, nil, false, err
		}
	}
	name, err := repo.Name(ctx)
	if err != nil {
		return "", blobsync.Hash{}, nil, false, err
	}
	fetch := func(ctx context.Context, h blobsync.Hash) error {
		return b.download(ctx, gs, h, 0, []key.RecordKey{rk}, nil)
	}
	c, h, err := repo.Collection(ctx, fetch)
	if err != nil {
		return "", blobsync.Hash{}, nil, false, err
	}
	b.markServable(gs, h, c)
	fresh := rk == gs.info.Repo || (!local && !missed.Load()) || (local && b.curDHT().Watching(rk))
	if fresh {
		b.rememberRepo(gs.info.ID, rk, name, h)
	}
	return name, h, c, fresh, nil
}

// GetFile writes the named file of the group to dst (an absolute path),
// fetching it from the members first if its bytes are not local; every
// 16 KiB chunk group is verified before it is stored. A chunked file
// (blobsync.Entry.Chunks) fetches only the chunks not held, and is
// written only if its chunks assemble to its whole-file hash
// (blobsync.ErrWholeHash otherwise). repo narrows the
// search to one repo (zero: this node's own repo first, then any other; a
// name that several repos hold with different content is ErrAmbiguous).
// progress, if not nil, is called as bytes arrive; subscribers hear of a
// download as download.progress events.
func (b *Backend) GetFile(ctx context.Context, g key.RecordKey, repo key.RecordKey, name, dst string, progress func(Progress)) (FileInfo, error) {
	return b.GetFileWith(ctx, g, repo, name, dst, GetOptions{Progress: progress})
}

// GetOptions configures GetFileWith. The zero value is GetFile's get.
type GetOptions struct {
	// Version, when set, gets that version of the file instead of the
	// current one, as GetFileVersion's ref.
	Version string
	// Progress, if not nil, is called as bytes arrive.
	Progress func(Progress)
	// NoStoreCopy: the store does not keep its own copy of the bytes
	// written to dst when it can avoid it (Options.NoStoreCopy makes it
	// every get's default): a file that is one large blob held as the
	// store's own data file is moved to dst, and the store keeps the
	// blob as a reference to dst (blobsync.Store.ExportMove), so it
	// still lists and serves it, from dst, until dst is changed; after
	// that it refuses to serve it as verified, and the node no longer
	// holds the file (edit a copy to keep it). Inline blobs (at most
	// 16 KiB), reference-mode blobs and a dst on another file system
	// are copied. A chunked file is assembled from its chunks, and then
	// those of its chunks no other file or version of any group names
	// become references into dst (blobsync.Store.ExportChunkedRef;
	// "assemble-ref"), with the same rule: served from dst until dst
	// changes; shared chunks stay the store's own. FileInfo.Export says
	// which.
	NoStoreCopy bool
}

// GetFileWith is GetFile (or, with opts.Version, GetFileVersion) with
// options; the FileInfo returned has Export set.
func (b *Backend) GetFileWith(ctx context.Context, g key.RecordKey, repo key.RecordKey, name, dst string, opts GetOptions) (FileInfo, error) {
	if opts.Version != "" {
		return b.getFileVersion(ctx, g, repo, name, dst, opts)
	}
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
	return b.getFile(ctx, gs, fi, dst, opts)
}

// getFile writes file fi of gs to dst, fetching what of its bytes is not
// local from fi's repo's providers first (GetFile, GetFileVersion). A
// file held by reference whose file changed since (a moved file the user
// edited or deleted: GetOptions.NoStoreCopy) is dropped from the store
// and fetched again.
func (b *Backend) getFile(ctx context.Context, gs *groupState, fi FileInfo, dst string, opts GetOptions) (FileInfo, error) {
	got, err := b.getFileOnce(ctx, gs, fi, dst, opts)
	if fi.Local && errors.Is(err, blobsync.ErrCorrupt) {
		dropped := false
		if fi.chunks.IsZero() {
			dropped, _ = b.blobs.DropBrokenRef(fi.Hash)
		} else if n, derr := b.blobs.DropBrokenChunkRefs(fi.chunks); derr == nil && n > 0 {
			dropped = true
		}
		if dropped {
			fi.Local = false
			return b.getFileOnce(ctx, gs, fi, dst, opts)
		}
	}
	return got, err
}

// chunksBesides is what a get without a store copy of the chunked file
// with chunk list list must leave as the store's own: the chunks every
// other file and version of every group this node is in names
// (blobsync.Store.ChunksBesides over CollectGarbage's roots). When a
// group's roots cannot be read it keeps every chunk (nil, false).
func (b *Backend) chunksBesides(ctx context.Context, list blobsync.Hash) (map[blobsync.Hash]bool, bool) {
	roots, err := b.allRoots(ctx)
	if err != nil {
		b.log.Info("get: the store keeps its copy of the chunks", "err", err)
		return nil, false
	}
	shared, err := b.blobs.ChunksBesides(ctx, roots, list)
	if err != nil {
		return nil, false
	}
	return shared, true
}

// getFileOnce is getFile without the second try.
func (b *Backend) getFileOnce(ctx context.Context, gs *groupState, fi FileInfo, dst string, opts GetOptions) (FileInfo, error) {
	progress := opts.Progress
	if !fi.Local {
		release, err := b.reserveStorage(fi.Size)
		if err != nil {
			return fi, fmt.Errorf("download %q: %w", fi.Name, err)
		}
		defer release()
		var cb func(blobsync.Progress)
		if progress != nil {
			cb = func(p blobsync.Progress) { progress(progressOf(p)) }
		}
		if !opts.NoStoreCopy && !b.opts.NoStoreCopy && fi.chunks.IsZero() {
			// The store keeps its copy: the download writes dst
			// beside it as the bytes arrive.
			m, err := b.fetchTold(ctx, gs, &fi, cb, dst)
			if err != nil {
				return fi, err
			}
			fi.Export = m.String()
			return fi, nil
		}
		if _, err := b.fetchTold(ctx, gs, &fi, cb, ""); err != nil {
			return fi, err
		}
	} else if progress != nil {
		progress(Progress{Done: fi.Size, Total: fi.Size})
	}
	var m blobsync.ExportMethod
	var err error
	if opts.NoStoreCopy || b.opts.NoStoreCopy {
		keep := func(blobsync.Hash) bool { return true }
		if !fi.chunks.IsZero() {
			if shared, ok := b.chunksBesides(ctx, fi.chunks); ok {
				keep = func(h blobsync.Hash) bool { return shared[h] }
			}
		}
		m, err = b.blobs.ExportFileMove(ctx, fi.entry(), dst, keep)
	} else {
		m, err = b.blobs.ExportFileMethod(ctx, fi.entry(), dst)
	}
	if err != nil {
		return fi, fmt.Errorf("write %s: %w", dst, err)
	}
	fi.Export = m.String()
	return fi, nil
}

func (b *Backend) findFile(ctx context.Context, gs *groupState, repo key.RecordKey, name string) (FileInfo, error) {
	all, err := b.ListFiles(ctx, gs.info.ID)
	if err != nil {
		return FileInfo{}, err
	}
	if !repo.IsZero() {
		for _, f := range all {
			if f.Repo == repo && f.Name == name {
				return f, nil
			}
		}
		return FileInfo{}, fmt.Errorf("%w: %q in repo %s", ErrFileNotFound, name, repo)
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
	gs, err := b.writableGroup(g)
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
