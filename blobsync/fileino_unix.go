//go:build unix

package blobsync

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileIno is fi's inode number (0 where the system does not say).
func fileIno(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}

// linkUnsupported reports whether os.Link failed because the file system
// or the two places do not allow a hard link there (another device, no
// links, too many), so that ExportMove falls back to a copy.
func linkUnsupported(err error) bool {
	return errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EMLINK) || errors.Is(err, unix.EOPNOTSUPP)
}
