package blobsync

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// TestAddFileRefTruncatedWhileMapped: a file truncated by another process
// while AddFileRef hashes it from its mapping faults (SIGBUS) on the lost
// pages; AddFileRef returns an error (io.ErrUnexpectedEOF, as a short
// read), the process lives on and the store holds nothing new. The hook
// truncates the file after the first block is hashed and holds the other
// workers until it is done, so most blocks are read after the truncation.
func TestAddFileRefTruncatedWhileMapped(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	data := content(8<<20+1000, 41) // the last block ends inside a group: copied
	path := writeTemp(t, data)
	before := dirFiles(t, s)
	var once sync.Once
	var mapped, calls atomic.Int64
	blockHook = func(k uint64, m bool) {
		calls.Add(1)
		if m {
			mapped.Add(1)
		}
		once.Do(func() {
			if err := os.Truncate(path, 0); err != nil {
				t.Error(err)
			}
		})
	}
	defer func() { blockHook = nil }()
	withBlock(t, 64<<10, func() {
		h, n, err := s.AddFileRef(ctx, path)
		if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("AddFileRef of a file truncated while hashed: %s %d %v, want io.ErrUnexpectedEOF", h, n, err)
		}
		t.Logf("AddFileRef: %v", err)
	})
	if mapped.Load() == 0 || mapped.Load() != calls.Load() {
		t.Fatalf("%d of %d blocks hashed from the mapping, want all", mapped.Load(), calls.Load())
	}
	if calls.Load() >= int64(len(data)>>16) {
		t.Fatalf("all %d blocks hashed: the truncation came too late to test", calls.Load())
	}
	if ok, err := s.Has(HashBytes(data)); ok || err != nil {
		t.Fatalf("Has after a failed AddFileRef: %v %v", ok, err)
	}
	if after := dirFiles(t, s); !slices.Equal(before, after) {
		t.Fatalf("store files %v after a failed AddFileRef, %v before", after, before)
	}

	// The file written again: added whole, from a new mapping.
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	blockHook = nil
	h, n, err := s.AddFileRef(ctx, path)
	if err != nil || n != int64(len(data)) || h != HashBytes(data) {
		t.Fatalf("AddFileRef again: %s %d %v", h, n, err)
	}
	checkBlob(t, s, h, data)
}
