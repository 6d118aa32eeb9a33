//go:build !linux

package blobsync

import "os"

// preadFull fills bufs, in order, with the bytes of f from offset off
// (ReadAt per buffer where preadv is not used).
func preadFull(f *os.File, bufs [][]byte, off int64) error { return readAtFull(f, bufs, off) }
