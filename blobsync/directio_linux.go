package blobsync

import (
	"os"
	"syscall"
)

// openDirect opens path for writing with O_DIRECT: writes of aligned
// buffers at aligned offsets skip the page cache copy, which on the
// machines we measured costs more CPU than the whole verifier
// (docs/BENCHMARKS.md). It returns nil when the file system refuses
// O_DIRECT (tmpfs); the caller then writes through the page cache.
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}

// preallocate reserves size bytes for f (fallocate, mode 0), so that the
// O_DIRECT writes of an import land in allocated extents instead of
// extending the file one write at a time (ext4 serialises extending direct
// writes), and a full disk shows before the copy starts. A file system
// that cannot (EOPNOTSUPP) is not an error.
func preallocate(f *os.File, size int64) error {
	if size <= 0 {
		return nil
	}
	err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if err == syscall.EOPNOTSUPP || err == syscall.ENOSYS {
		return nil
	}
	return err
}
