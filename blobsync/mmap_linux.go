package blobsync

import (
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps the first size bytes of f read-only (MAP_SHARED, so the
// pages are the page cache's own and nothing is copied) and returns them
// with the function that unmaps them; nil when the file cannot be mapped
// (size 0, larger than the address space, a special file, an mmap
// error), and the caller then reads it with ReadAt.
//
// Touching a page beyond the file's end raises SIGBUS: a file truncated by
// another process while it is mapped. Whoever reads the mapping must run
// with debug.SetPanicOnFault(true) and recover the fault (treeRun.work).
func mapFile(f *os.File, size int64) ([]byte, func()) {
	if size <= 0 || uint64(size) > math.MaxInt {
		return nil, nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil
	}
	// The workers take the blocks in order: a cold file is read ahead
	// the more for it. Advice only; an error changes nothing.
	_ = unix.Madvise(b, unix.MADV_SEQUENTIAL)
	return b, func() { _ = unix.Munmap(b) }
}
