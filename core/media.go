package core

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
)

// uploadsDir, under the data dir, holds uploads being received by
// AddReader; each upload has its own subdirectory, removed when it ends.
const uploadsDir = "uploads"

// uploadBuf is the copy buffer of an upload (bytes).
const uploadBuf = 256 << 10

// checkFileName applies datarepo's file name rules (non-empty, not "." or
// "..", at most datarepo.MaxNameLen bytes of UTF-8, no '/' or NUL) before
// the name is used as a path component.
func checkFileName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return badInput(fmt.Errorf("%w: %q", datarepo.ErrBadName, name))
	case len(name) > datarepo.MaxNameLen:
		return badInput(fmt.Errorf("%w: %d bytes, limit %d", datarepo.ErrBadName, len(name), datarepo.MaxNameLen))
	case !utf8.ValidString(name):
		return badInput(fmt.Errorf("%w: not UTF-8", datarepo.ErrBadName))
	case strings.ContainsAny(name, "/\x00"):
		return badInput(fmt.Errorf("%w: %q contains '/' or NUL", datarepo.ErrBadName, name))
	}
	return nil
}

// AddReader adds the bytes of r as file name to this node's repo in group
// g (replacing a file of that name) and publishes the new collection. The
// bytes are streamed to a temporary file under DataDir/uploads and then
// copied into the blob store (blobsync.Store.AddFile), so memory stays
// bounded whatever the size; disk use is twice the file's size while it
// runs. maxBytes bounds the upload (<= 0 or over blobsync.MaxBlobSize:
// blobsync.MaxBlobSize); more bytes give an error wrapping ErrTooLarge,
// and nothing is added. It returns the new entry and the hash of the
// repo's collection after the add.
//
// Errors: ErrUnknownGroup; *BadInputError for a bad name; ErrTooLarge;
// the reader's own error, wrapped (an *http.MaxBytesError stays
// reachable with errors.As); store and DHT errors.
func (b *Backend) AddReader(ctx context.Context, g key.RecordKey, name string, r io.Reader, maxBytes int64) (FileInfo, blobsync.Hash, error) {
	if _, err := b.group(g); err != nil {
		return FileInfo{}, blobsync.Hash{}, err
	}
	if err := checkFileName(name); err != nil {
		return FileInfo{}, blobsync.Hash{}, err
	}
	if maxBytes <= 0 || maxBytes > blobsync.MaxBlobSize {
		maxBytes = blobsync.MaxBlobSize
	}
	root := filepath.Join(b.opts.DataDir, uploadsDir)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return FileInfo{}, blobsync.Hash{}, fmt.Errorf("upload %q: %w", name, err)
	}
	dir, err := os.MkdirTemp(root, "up-*")
	if err != nil {
		return FileInfo{}, blobsync.Hash{}, fmt.Errorf("upload %q: %w", name, err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return FileInfo{}, blobsync.Hash{}, fmt.Errorf("upload %q: %w", name, err)
	}
	n, err := io.CopyBuffer(onlyWriter{f}, &ctxReader{ctx: ctx, r: io.LimitReader(r, maxBytes+1)}, make([]byte, uploadBuf))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FileInfo{}, blobsync.Hash{}, fmt.Errorf("upload %q: %w", name, err)
	}
	if n > maxBytes {
		return FileInfo{}, blobsync.Hash{}, fmt.Errorf("upload %q: %w: over the limit of %d bytes", name, ErrTooLarge, maxBytes)
	}
	fis, err := b.AddFiles(ctx, g, []string{path})
	if err != nil {
		return FileInfo{}, blobsync.Hash{}, err
	}
	if len(fis) != 1 {
		return FileInfo{}, blobsync.Hash{}, fmt.Errorf("upload %q: added %d files, want 1", name, len(fis))
	}
	ch, _, err := b.CollectionHash(ctx, g, fis[0].Repo)
	if err != nil {
		return fis[0], ch, fmt.Errorf("upload %q: read the new collection hash: %w", name, err)
	}
	return fis[0], ch, nil
}

// onlyWriter hides *os.File's ReadFrom so io.CopyBuffer uses the given
// buffer instead of allocating its own.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// ctxReader fails reads once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// fetch downloads fi's blob from the group's members if it is not local,
// verifying every 16 KiB chunk group (from every member that holds it at
// once), and marks it servable.
func (b *Backend) fetch(ctx context.Context, gs *groupState, fi *FileInfo) error {
	if fi.Local {
		return nil
	}
	if err := b.download(ctx, gs, fi.Hash, []key.RecordKey{fi.Repo}, nil); err != nil {
		return fmt.Errorf("download %q: %w", fi.Name, err)
	}
	fi.Local = true
	b.mu.Lock()
	gs.servable[fi.Hash] = true
	b.mu.Unlock()
	return nil
}

// OpenFile opens the named file of group g for reading, fetching it from
// the members first if its bytes are not local. repo narrows the search to
// one repo (zero: this node's own repo first, then any other, as GetFile).
// The reader reads the verified blob from disk; the caller closes it.
//
// Errors: ErrUnknownGroup, ErrUnknownRepo, ErrFileNotFound, ErrAmbiguous;
// download errors;
// blobsync.ErrCorrupt if the local copy is damaged.
func (b *Backend) OpenFile(ctx context.Context, g, repo key.RecordKey, name string) (io.ReadSeekCloser, FileInfo, error) {
	gs, err := b.group(g)
	if err != nil {
		return nil, FileInfo{}, err
	}
	if !repo.IsZero() {
		if err := b.checkRepo(ctx, gs, repo); err != nil {
			return nil, FileInfo{}, err
		}
	}
	fi, err := b.findFile(ctx, gs, repo, name)
	if err != nil {
		return nil, FileInfo{}, err
	}
	if err := b.fetch(ctx, gs, &fi); err != nil {
		return nil, fi, err
	}
	rc, _, err := b.blobs.Open(fi.Hash)
	if err != nil {
		return nil, fi, fmt.Errorf("open %q: %w", name, err)
	}
	return rc, fi, nil
}

// RepoRefresh is one repo's part of a Refresh: the fields of the Save
// app's refresh body (../shared/SAVE-API.md) plus Key and FailedFiles.
type RepoRefresh struct {
	Key      key.RecordKey `json:"key"`
	Name     string        `json:"name"`
	CanWrite bool          `json:"can_write"`
	// RepoHash is the hex hash of the repo's current collection, "" if it
	// has none.
	RepoHash       string   `json:"repo_hash"`
	RefreshedFiles []string `json:"refreshed_files"` // fetched by this refresh
	AllFiles       []string `json:"all_files"`       // every file of the repo, by name
	// FailedFiles could not be fetched from any member this time (the
	// reasons are logged); a later refresh tries again.
	FailedFiles []string `json:"failed_files"`
}

// Refresh reads every repo of group g afresh and downloads every file this
// node lacks, verifying each: a repo's files up to 1 MiB in children
// requests (a few streams per member for hundreds of photos, not one
// download each), the others refreshConcurrency at a time, each from
// every member that holds it. A repo that cannot be read right now is
// skipped and logged; a file no member can supply now (or that the
// storage quota has no room for) is listed in FailedFiles. Errors:
// ErrUnknownGroup; DHT errors reading the group record; the context's
// error if it ends.
func (b *Backend) Refresh(ctx context.Context, g key.RecordKey) ([]RepoRefresh, error) {
	gs, err := b.group(g)
	if err != nil {
		return nil, err
	}
	keys, err := gs.g.RepoKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RepoRefresh, 0, len(keys))
	for _, rk := range keys {
		rr, err := b.refreshRepo(ctx, gs, rk)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			b.log.Warn("refresh: read repo", "group", g, "repo", rk, "err", err)
			continue
		}
		out = append(out, rr)
	}
	return out, nil
}

// refreshBatchMax and refreshConcurrency: Refresh fetches files up to
// refreshBatchMax bytes in children requests, larger ones (and those the
// batches missed) refreshConcurrency at a time.
const (
	refreshBatchMax    = 1 << 20
	refreshConcurrency = 4
)

// refreshRepo is Refresh's work on one repo.
func (b *Backend) refreshRepo(ctx context.Context, gs *groupState, rk key.RecordKey) (RepoRefresh, error) {
	name, h, c, err := b.repoCollection(ctx, gs, rk, false)
	if err != nil {
		return RepoRefresh{}, err
	}
	rr := RepoRefresh{Key: rk, Name: name, CanWrite: rk == gs.info.Repo,
		RefreshedFiles: []string{}, AllFiles: make([]string, 0, len(c.Entries)), FailedFiles: []string{}}
	if h != (blobsync.Hash{}) {
		rr.RepoHash = h.String()
	}
	var missing, small, each []int
	var smallBytes int64
	for i, e := range c.Entries {
		rr.AllFiles = append(rr.AllFiles, e.Name)
		if ok, err := b.blobs.Has(e.Hash); err != nil || ok {
			continue
		}
		missing = append(missing, i)
		if e.Size <= refreshBatchMax {
			small, smallBytes = append(small, i), smallBytes+e.Size
		} else {
			each = append(each, i)
		}
	}
	if len(missing) == 0 {
		return rr, nil
	}
	errs := make(map[int]error)
	if len(small) > 1 {
		left, err := b.refreshBatch(ctx, gs, rk, h, c, small, smallBytes)
		if err != nil {
			b.log.Debug("refresh: batch", "group", gs.info.ID, "repo", rk, "files", len(small), "err", err)
			left = small
		}
		each = append(each, left...)
	} else {
		each = append(each, small...)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, refreshConcurrency)
	for _, i := range each {
		e := c.Entries[i]
		if ok, _ := b.blobs.Has(e.Hash); ok {
			continue // another entry names the same blob
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			err := b.refreshFile(ctx, gs, rk, name, e)
			if err != nil {
				mu.Lock()
				errs[i] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return rr, ctx.Err()
	}
	for _, i := range missing {
		e := c.Entries[i]
		if ok, _ := b.blobs.Has(e.Hash); ok {
			rr.RefreshedFiles = append(rr.RefreshedFiles, e.Name)
			continue
		}
		b.log.Warn("refresh: fetch", "group", gs.info.ID, "repo", rk, "file", e.Name, "err", errs[i])
		rr.FailedFiles = append(rr.FailedFiles, e.Name)
	}
	return rr, nil
}

// refreshBatch fetches the entries idx of repo rk's collection h (decoded
// as c; bytes in all) in children requests from every member, under one
// storage reservation, and returns those it did not get.
func (b *Backend) refreshBatch(ctx context.Context, gs *groupState, rk key.RecordKey, h blobsync.Hash, c *blobsync.Collection, idx []int, bytes int64) ([]int, error) {
	release, err := b.reserveStorage(bytes)
	if err != nil {
		return nil, err
	}
	defer release()
	provs, err := b.memberProviders(ctx, gs, []key.RecordKey{rk})
	if err != nil {
		return nil, err
	}
	return b.blobs.DownloadBatch(ctx, h, c, idx, provs, blobsync.DownloadOptions{Logger: b.log})
}

// refreshFile fetches one file's blob from every member, under a storage
// reservation for it.
func (b *Backend) refreshFile(ctx context.Context, gs *groupState, rk key.RecordKey, repoName string, e blobsync.Entry) error {
	release, err := b.reserveStorage(e.Size)
	if err != nil {
		return err
	}
	defer release()
	fi := b.fileInfo(gs, rk, repoName, e)
	return b.fetch(ctx, gs, &fi)
}
