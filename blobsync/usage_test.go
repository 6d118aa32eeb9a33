package blobsync

import (
	"context"
	"testing"
)

func TestUsage(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	u, err := s.Usage()
	if err != nil || u != (Usage{}) {
		t.Fatalf("empty store: %+v, %v", u, err)
	}
	small := content(1000, 1)           // inline
	big := content(3*ChunkGroupSize, 2) // files
	if _, err := s.AddBytes(ctx, small); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddFile(ctx, writeTemp(t, big)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddBytes(ctx, small); err != nil { // the same blob again
		t.Fatal(err)
	}
	ref := content(2*ChunkGroupSize+5, 3)
	if _, _, err := s.AddFileRef(ctx, writeTemp(t, ref)); err != nil {
		t.Fatal(err)
	}
	u, err = s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{Blobs: 2, Bytes: int64(len(small) + len(big)), RefBlobs: 1, RefBytes: int64(len(ref))}
	if u != want {
		t.Fatalf("usage %+v, want %+v", u, want)
	}
	h, err := s.AddBytes(ctx, small)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(h); err != nil {
		t.Fatal(err)
	}
	if u, _ = s.Usage(); u.Blobs != 1 || u.Bytes != int64(len(big)) {
		t.Fatalf("after delete: %+v", u)
	}
}
