//go:build !linux

package blobsync

import "os"

// openDirect: O_DIRECT is used on Linux only.
func openDirect(string) *os.File { return nil }

// preallocate: fallocate is used on Linux only.
func preallocate(*os.File, int64) error { return nil }
