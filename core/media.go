package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
)

// uploadsDir, under the data dir, held uploads being received by earlier
// versions of AddReader (bytes spooled to a file, then imported); Open
// removes what an interrupted one left.
const uploadsDir = "uploads"

// quotaStep is how many bytes of an upload AddReader reserves against the
// storage quota at a time.
const quotaStep = 64 << 20

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
// bytes are streamed into the blob store once, hashed as they arrive
// (blobsync.Store.AddReader): no temporary file is written and imported
// afterwards, memory stays bounded whatever the size, and if r fails or
// breaks off, nothing is added and the repo is unchanged (with
// Options.Chunking, the bytes of more than blobsync.ChunkThreshold are
// cut into chunks as they arrive, and chunks stored before the failure
// are left for CollectGarbage). maxBytes
// bounds the upload (<= 0 or over blobsync.MaxBlobSize:
// blobsync.MaxBlobSize); more bytes give an error wrapping ErrTooLarge,
// and nothing is added. Under a storage quota the upload reserves its
// bytes as they arrive, 64 MiB at a time. It returns the new entry and
// the hash of the repo's collection after the add.
//
// Errors: ErrUnknownGroup; *BadInputError for a bad name; ErrTooLarge;
// *QuotaError; the reader's own error, wrapped (an *http.MaxBytesError
// stays reachable with errors.As); store and DHT errors.
func (b *Backend) AddReader(ctx context.Context, g key.RecordKey, name string, r io.Reader, maxBytes int64) (FileInfo, blobsync.Hash, error) {
	gs, err := b.writableGroup(g)
	if err != nil {
		return FileInfo{}, blobsync.Hash{}, err
	}
	if err := checkFileName(name); err != nil {
		return FileInfo{}, blobsync.Hash{}, err
	}
	if maxBytes <= 0 || maxBytes > blobsync.MaxBlobSize {
		maxBytes = blobsync.MaxBlobSize
	}
	var src io.Reader
	if br, ok := r.(*bytes.Reader); ok {
		// A caller's buffer (the C ABI): its size is known, and the
		// store reads it on every core.
		release, err := b.reserveStorage(br.Size())
		if err != nil {
			return FileInfo{}, blobsync.Hash{}, err
		}
		defer release()
		src = br
	} else {
		qr := &quotaReader{r: r, reserve: b.reserveStorage}
		defer qr.release()
		src = qr
	}
	e, err := gs.repo.AddReader(ctx, name, src, maxBytes)
	var le *blobsync.LimitError
	switch {
	case errors.As(err, &le):
		return FileInfo{}, blobsync.Hash{}, fmt.Errorf("upload %q: %w: over the limit of %d bytes", name, ErrTooLarge, maxBytes)
	case errors.Is(err, datarepo.ErrBadName):
		return FileInfo{}, blobsync.Hash{}, badInput(err)
	case err != nil:
		return FileInfo{}, blobsync.Hash{}, fmt.Errorf("upload %q: %w", name, err)
	}
	b.ownRepoChanged(ctx, gs)
	repoName, _ := gs.repo.Name(ctx)
	fi := b.fileInfo(gs, gs.info.Repo, repoName, e)
	fi.Publication = b.collectionPending(gs)
	ch, _, err := b.CollectionHash(ctx, g, fi.Repo)
	if err != nil {
		return fi, ch, fmt.Errorf("upload %q: read the new collection hash: %w", name, err)
	}
	return fi, ch, nil
}

// quotaReader reserves storage (Backend.reserveStorage) for the bytes it
// reads, quotaStep at a time (or just what it has read, when a whole step
// does not fit), and fails with the *QuotaError once the bytes read do
// not fit. release gives back every reservation.
type quotaReader struct {
	r        io.Reader
	reserve  func(int64) (func(), error)
	read     int64
	reserved int64
	releases []func()
}

func (q *quotaReader) Read(p []byte) (int, error) {
	n, err := q.r.Read(p)
	q.read += int64(n)
	if q.read > q.reserved {
		step := max(quotaStep, q.read-q.reserved)
		rel, rerr := q.reserve(step)
		if rerr != nil {
			step = q.read - q.reserved
			if rel, rerr = q.reserve(step); rerr != nil {
				return n, rerr
			}
		}
		q.releases = append(q.releases, rel)
		q.reserved += step
	}
	return n, err
}

func (q *quotaReader) release() {
	for _, rel := range q.releases {
		rel()
	}
}

// fetch downloads fi's blob from the group's members if it is not local,
// verifying every 16 KiB chunk group (from every member that holds it at
// once), and marks it servable. progress, if not nil, gets the download's
// state.
func (b *Backend) fetch(ctx context.Context, gs *groupState, fi *FileInfo, progress func(blobsync.Progress)) error {
	_, err := b.fetchTo(ctx, gs, fi, progress, "")
	return err
}

// fetchTo is fetch that, given a path dst and a file that is one blob,
// also writes the file to dst as the download verifies it
// (blobsync.Store.DownloadTo), and returns how dst was written.
func (b *Backend) fetchTo(ctx context.Context, gs *groupState, fi *FileInfo, progress func(blobsync.Progress), dst string) (blobsync.ExportMethod, error) {
	if fi.Local {
		return 0, nil
	}
	e := fi.entry()
	var m blobsync.ExportMethod
	var err error
	if dst != "" && e.Chunks.IsZero() {
		m, err = b.downloadTo(ctx, gs, e.Hash, e.Size, []key.RecordKey{fi.Repo}, progress, dst)
	} else {
		err = b.downloadFile(ctx, gs, e, []key.RecordKey{fi.Repo}, progress)
	}
	if err != nil {
		return 0, fmt.Errorf("download %q: %w", fi.Name, err)
	}
	fi.Local = true
	b.markFileServable(gs, e)
	return m, nil
}

// fetchTold is fetchTo for a download an app asked for: subscribers hear
// of it (download.progress events, op "get") if there is one.
func (b *Backend) fetchTold(ctx context.Context, gs *groupState, fi *FileInfo, progress func(blobsync.Progress), dst string) (blobsync.ExportMethod, error) {
	if fi.Local {
		return 0, nil
	}
	de := b.newDownloadEvents(gs.info.ID, fi.Repo, DownloadEvent{Op: "get", Name: fi.Name, Hash: fi.Hash, Total: fi.Size})
	m, err := b.fetchTo(ctx, gs, fi, func(p blobsync.Progress) {
		de.update(func(e *DownloadEvent) { e.Done, e.Total = p.Done, p.Total })
		if progress != nil {
			progress(p)
		}
	}, dst)
	de.end(err)
	return m, err
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
	if _, err := b.fetchTold(ctx, gs, &fi, nil, ""); err != nil {
		return nil, fi, err
	}
	rc, _, err := b.blobs.OpenFile(ctx, fi.entry())
	if err != nil {
		return nil, fi, fmt.Errorf("open %q: %w", name, err)
	}
	return rc, fi, nil
}
