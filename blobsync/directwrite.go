package blobsync

import (
	"log/slog"
	"os"
	"sync"
	"unsafe"
)

// directWriter writes blocks of a data part file from several goroutines
// at once: through a second, O_DIRECT descriptor (openDirect) the aligned
// part of each block whose buffer is aligned (alignedBuf), so the bytes go
// from the buffer to the disk without a page-cache copy, and the rest (the
// blob's unaligned tail) through f. The part file's fsync in commit makes
// both durable. If the file system refuses an O_DIRECT write, the writer
// falls back to f for good.
type directWriter struct {
	f   *os.File
	log *slog.Logger

	mu     sync.RWMutex
	direct *os.File // nil: page cache only
}

func newDirectWriter(f *os.File, log *slog.Logger) *directWriter {
	return &directWriter{f: f, log: log, direct: openDirect(f.Name())}
}

// writeAt writes b at byte offset off. It is safe for concurrent use on
// disjoint ranges.
func (w *directWriter) writeAt(b []byte, off int64) error {
	w.mu.RLock()
	d := w.direct
	if d != nil && off%directAlign == 0 && len(b) >= directAlign && uintptr(unsafe.Pointer(&b[0]))%directAlign == 0 {
		n := len(b) &^ (directAlign - 1)
		_, err := d.WriteAt(b[:n], off)
		w.mu.RUnlock()
		if err == nil {
			b, off = b[n:], off+int64(n)
		} else {
			w.stopDirect(d, err)
		}
	} else {
		w.mu.RUnlock()
	}
	if len(b) == 0 {
		return nil
	}
	_, err := w.f.WriteAt(b, off)
	return err
}

// stopDirect closes the O_DIRECT descriptor d after a refused write; the
// caller writes the block again through the page cache.
func (w *directWriter) stopDirect(d *os.File, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.direct == d {
		w.log.Debug("blobsync: O_DIRECT write refused; using the page cache", "err", err)
		d.Close()
		w.direct = nil
	}
}

// close closes the O_DIRECT descriptor (f stays open).
func (w *directWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.direct == nil {
		return nil
	}
	err := w.direct.Close()
	w.direct = nil
	return err
}
