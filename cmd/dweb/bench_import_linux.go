//go:build linux

package main

import (
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// biDisk measures what the disk under dir takes at best: size bytes
// written with O_DIRECT by 4 writers, 1 MiB at a time from memory, into a
// preallocated file, then fsynced. It returns the time and the bytes
// written (size rounded down to whole blocks), or 0 bytes where O_DIRECT
// is refused (tmpfs).
func biDisk(path string, size int64) (time.Duration, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	d, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return 0, 0, nil
	}
	defer d.Close()
	const block = 1 << 20
	n := size / block * block // whole blocks: O_DIRECT wants aligned lengths
	if n == 0 {
		return 0, 0, nil
	}
	t := time.Now()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, n); err != nil && err != syscall.EOPNOTSUPP {
		return 0, 0, err
	}
	var mu sync.Mutex
	var next int64
	var werr error
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			raw := make([]byte, block+4096)
			off := int(uintptr(unsafe.Pointer(&raw[0])) & 4095)
			buf := raw[(4096-off)%4096:][:block]
			rand.NewChaCha8([32]byte{9}).Read(buf)
			for {
				mu.Lock()
				k := next
				next++
				mu.Unlock()
				if k*block >= n {
					return
				}
				if _, err := d.WriteAt(buf, k*block); err != nil {
					mu.Lock()
					werr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if werr != nil {
		return 0, 0, nil // refused after all: no figure
	}
	if err := f.Sync(); err != nil {
		return 0, 0, err
	}
	return time.Since(t), n, nil
}
