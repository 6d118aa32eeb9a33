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
