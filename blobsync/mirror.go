package blobsync

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Mirror takes a copy of the bytes a download verifies
// (DownloadOptions.Mirror): the download's writer writes each buffer of
// verified groups to the store and then, at the same offset, to the
// mirror, before it marks the groups verified. The bytes are in memory
// once and read from nowhere: a get to a path that also keeps the store's
// copy writes the file beside the store's instead of reading it back
// afterwards (DownloadTo). A mirror that fails to write is given up, not
// the download.
type Mirror struct {
	w       io.WriterAt
	covered atomic.Int64 // bytes this download marked verified after mirroring them
	failed  atomic.Bool  // err is set

	mu  sync.Mutex
	err error
}

// NewMirror returns a Mirror writing to w, which must allow parallel
// WriteAt calls on disjoint ranges (an *os.File does).
func NewMirror(w io.WriterAt) *Mirror { return &Mirror{w: w} }

// write copies b to offset off; false once the mirror has failed.
// The lanes of a download write their buffers at the same time (w must
// allow parallel WriteAt calls on disjoint ranges, as io.WriterAt says).
func (m *Mirror) write(b []byte, off int64) bool {
	if m.failed.Load() {
		return false
	}
	if _, err := m.w.WriteAt(b, off); err != nil {
		m.mu.Lock()
		if m.err == nil {
			m.err = err
		}
		m.mu.Unlock()
		m.failed.Store(true)
		return false
	}
	return true
}

// Covered returns how many bytes of the blob the mirror holds: those this
// download verified and mirrored. A blob of n bytes is whole in the mirror
// when Covered is n (groups verified by an earlier, interrupted download,
// or fetched inline, are not in it).
func (m *Mirror) Covered() int64 { return m.covered.Load() }

// Err returns the mirror's write error, if it failed.
func (m *Mirror) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// ExportMirrored is the ExportMethod DownloadTo reports when the file was
// written by the download itself (a Mirror) rather than exported after.
const ExportMirrored ExportMethod = 252

// DownloadTo downloads blob h as Download does and writes its bytes to the
// file dst as Export does (a temp file beside dst, fsynced, renamed, the
// directory synced; dst never partial), the store keeping its own copy.
// The temp file is the download's Mirror, so when this download verifies
// every byte itself the file is written as the bytes arrive and nothing
// is read back (ExportMirrored); when the store held some or all of the
// blob already (a resumed download, a blob of at most ChunkGroupSize
// bytes), or the mirror failed, the temp file is written from the store
// after the download, as Export does, with the method Export reports.
// Where the store's files clone into dst's directory (one file system
// that clones: btrfs, XFS with reflink, bcachefs) the download writes the
// store's copy only and dst is then a clone of it ("reflink"): the bytes
// are written once and the disk's space is not doubled.
// Errors: Download's (dst untouched); Export's.
func (s *Store) DownloadTo(ctx context.Context, h Hash, providers []Provider, opts DownloadOptions, dst string) (ExportMethod, error) {
	if ok, _ := s.Has(h); ok {
		return s.export(ctx, h, dst, s.exportFrom)
	}
	if s.exportFrom == ExportAuto && s.clonesInto(filepath.Dir(dst)) {
		// One write: the store's copy, then a clone of it at dst (no
		// byte written twice, nor read back).
		if _, err := s.Download(ctx, h, providers, opts); err != nil {
			return 0, err
		}
		return s.export(ctx, h, dst, s.exportFrom)
	}
	used := ExportMirrored
	var dlErr error
	err := writeExport(ctx, h, dst, func(f *os.File) error {
		// The verified buffers are aligned: written with O_DIRECT
		// where the file system allows, as the store's own copy is,
		// they cost no page-cache copy and leave no gigabyte of dirty
		// pages for the fsync.
		dw := newDirectWriter(f, s.log)
		m := NewMirror(writerAtFunc(dw.writeAt))
		opts.Mirror = m
		n, err := s.Download(ctx, h, providers, opts)
		if cerr := dw.close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			dlErr = err
			return err
		}
		if m.Covered() == n && n > 0 {
			return nil
		}
		// Some of the bytes were verified before this download (or
		// the mirror failed): the whole file from the store.
		if merr := m.Err(); merr != nil {
			s.log.Debug("blobsync: writing the file beside the download failed; exporting it from the store", "hash", h, "dst", dst, "err", merr)
		}
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		used, err = s.exportInto(ctx, h, f, s.exportFrom)
		return err
	})
	if dlErr != nil {
		return 0, dlErr
	}
	if err != nil {
		return 0, err
	}
	s.log.Debug("blobsync: downloaded to a file", "hash", h, "dst", dst, "method", used)
	return used, nil
}

// writerAtFunc is a function as an io.WriterAt.
type writerAtFunc func(b []byte, off int64) error

func (f writerAtFunc) WriteAt(b []byte, off int64) (int, error) {
	if err := f(b, off); err != nil {
		return 0, err
	}
	return len(b), nil
}
