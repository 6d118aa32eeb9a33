package core

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/ctxio"
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
	if _, err := b.writableGroup(g); err != nil {
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
	n, err := io.CopyBuffer(onlyWriter{f}, ctxio.NewReader(ctx, io.LimitReader(r, maxBytes+1)), make([]byte, uploadBuf))
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

// fetch downloads fi's blob from the group's members if it is not local,
// verifying every 16 KiB chunk group (from every member that holds it at
// once), and marks it servable. progress, if not nil, gets the download's
// state.
func (b *Backend) fetch(ctx context.Context, gs *groupState, fi *FileInfo, progress func(blobsync.Progress)) error {
	if fi.Local {
		return nil
	}
	if err := b.download(ctx, gs, fi.Hash, fi.Size, []key.RecordKey{fi.Repo}, progress); err != nil {
		return fmt.Errorf("download %q: %w", fi.Name, err)
	}
	fi.Local = true
	b.mu.Lock()
	gs.servable[fi.Hash] = true
	b.mu.Unlock()
	return nil
}

// fetchTold is fetch for a download an app asked for: subscribers hear of
// it (download.progress events, op "get") if there is one.
func (b *Backend) fetchTold(ctx context.Context, gs *groupState, fi *FileInfo, progress func(blobsync.Progress)) error {
	if fi.Local {
		return nil
	}
	de := b.newDownloadEvents(gs.info.ID, fi.Repo, DownloadEvent{Op: "get", Name: fi.Name, Hash: fi.Hash, Total: fi.Size})
	err := b.fetch(ctx, gs, fi, func(p blobsync.Progress) {
		de.update(func(e *DownloadEvent) { e.Done, e.Total = p.Done, p.Total })
		if progress != nil {
			progress(p)
		}
	})
	de.end(err)
	return err
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
	if err := b.fetchTold(ctx, gs, &fi, nil); err != nil {
		return nil, fi, err
	}
	rc, _, err := b.blobs.Open(fi.Hash)
	if err != nil {
		return nil, fi, fmt.Errorf("open %q: %w", name, err)
	}
	return rc, fi, nil
}
