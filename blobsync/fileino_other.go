//go:build !unix

package blobsync

import "os"

// fileIno is fi's inode number: 0, not known here (a reference is held to
// its size and mtime only).
func fileIno(os.FileInfo) uint64 { return 0 }

// linkUnsupported: any failed hard link falls back to a copy here.
func linkUnsupported(error) bool { return true }
