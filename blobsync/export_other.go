//go:build !linux

package blobsync

import (
	"context"
	"os"
)

// reflink: used on Linux only.
func reflink(dst, src *os.File) bool { return false }

// copyRange: copy_file_range is used on Linux only.
func copyRange(ctx context.Context, dst, src *os.File, off, size, chunk int64, hook func(int64)) (int64, bool, error) {
	return 0, false, nil
}

// clonesInto: files are cloned on Linux only.
func (s *Store) clonesInto(string) bool { return false }
