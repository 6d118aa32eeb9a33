package blobsync

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// preadFull fills bufs, in order, with the bytes of f from offset off, by
// preadv(2) calls (one unless the kernel returns less); a file that ends
// first is io.ErrUnexpectedEOF.
func preadFull(f *os.File, bufs [][]byte, off int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return readAtFull(f, bufs, off)
	}
	for len(bufs) > 0 {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			for {
				n, rerr = unix.Preadv(int(fd), bufs, off)
				if rerr != unix.EINTR {
					return true
				}
			}
		}); err != nil {
			return err
		}
		if rerr != nil {
			return rerr
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		off += int64(n)
		for n > 0 {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
	return nil
}
