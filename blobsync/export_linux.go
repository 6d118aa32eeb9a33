package blobsync

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// reflink makes dst share src's extents (ioctl FICLONE), so dst holds
// src's bytes without any being copied. It reports false when the file
// system cannot (ext4, tmpfs: EOPNOTSUPP/EINVAL/ENOTTY) or the two are on
// different file systems (EXDEV); dst is then still empty.
func reflink(dst, src *os.File) bool {
	sc, err := src.SyscallConn()
	if err != nil {
		return false
	}
	dc, err := dst.SyscallConn()
	if err != nil {
		return false
	}
	var ierr error
	cerr := sc.Control(func(sfd uintptr) {
		err := dc.Control(func(dfd uintptr) { ierr = unix.IoctlFileClone(int(dfd), int(sfd)) })
		if err != nil {
			ierr = err
		}
	})
	return cerr == nil && ierr == nil
}

// copyRange copies size bytes of src from offset off to dst from offset 0
// with copy_file_range, at most chunk bytes per call, checking ctx before
// each and calling hook (tests; may be nil) with the bytes copied after
// each. ok is false, with done = 0 and no error, when the kernel refuses
// copy_file_range for these files before any byte moved (ENOSYS, EXDEV
// across file systems, EOPNOTSUPP, EINVAL); the caller then copies
// another way.
func copyRange(ctx context.Context, dst, src *os.File, off, size, chunk int64, hook func(int64)) (done int64, ok bool, err error) {
	sc, err := src.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	dc, err := dst.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	roff, woff := off, int64(0)
	for done < size {
		if err := ctx.Err(); err != nil {
			return done, true, err
		}
		var n int
		var cerr error
		err := sc.Control(func(sfd uintptr) {
			e := dc.Control(func(dfd uintptr) {
				for {
					n, cerr = unix.CopyFileRange(int(sfd), &roff, int(dfd), &woff, int(min(chunk, size-done)), 0)
					if cerr != unix.EINTR {
						return
					}
				}
			})
			if e != nil {
				cerr = e
			}
		})
		if err == nil {
			err = cerr
		}
		if err != nil {
			if done == 0 && (errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EXDEV) ||
				errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
				return 0, false, nil
			}
			return done, true, fmt.Errorf("copy_file_range after %d bytes: %w", done, err)
		}
		if n == 0 {
			return done, true, fmt.Errorf("%w: data file ended at %d bytes while exported (want %d)", ErrCorrupt, done, size)
		}
		done += int64(n)
		if hook != nil {
			hook(done)
		}
	}
	return done, true, nil
}

// clonesInto reports whether a file of the store's directory can be
// cloned (FICLONE) into directory dir: the same file system, and one that
// clones files. The first call for dir's device clones a 4 KiB probe file
// of the store's directory into dir (both removed after); the answer is
// kept for that device for the store's life. False when dir cannot be
// read or written.
func (s *Store) clonesInto(dir string) bool {
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return false
	}
	if v, ok := s.clones.Load(st.Dev); ok {
		return v.(bool)
	}
	ok := probeClone(s.dir, dir)
	s.clones.Store(st.Dev, ok)
	return ok
}

// probeClone clones a 4 KiB temp file of directory from into a temp file
// of directory to, and removes both.
func probeClone(from, to string) bool {
	src, err := os.CreateTemp(from, "clone-probe-*.part")
	if err != nil {
		return false
	}
	defer os.Remove(src.Name())
	defer src.Close()
	if _, err := src.Write(make([]byte, 4096)); err != nil {
		return false
	}
	dst, err := os.CreateTemp(to, ".dweb-clone-probe-*.part")
	if err != nil {
		return false
	}
	defer os.Remove(dst.Name())
	defer dst.Close()
	return reflink(dst, src)
}
