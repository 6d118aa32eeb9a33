package blobsync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestFileEntries: HasFile, DownloadFile, ExportFile, OpenFile and
// FileBlobs give the same file for a one-blob entry and a chunked one,
// fetched from a provider over the blob protocol into another store.
func TestFileEntries(t *testing.T) {
	ctx := context.Background()
	srv, cl := newTestStore(t), newTestStore(t)
	small := content(100<<10, 7)
	big := content(chunkedFixture, 8)
	cf := addChunked(t, srv, big)
	entries := map[string]struct {
		e    Entry
		want []byte
	}{
		"blob":    {Entry{Name: "a", Hash: addBlob(t, srv, small), Size: int64(len(small))}, small},
		"chunked": {Entry{Name: "b", Hash: cf.Hash, Size: cf.Size, Chunks: cf.List}, big},
	}
	p := prov(t, "srv", srv)
	for name, tc := range entries {
		t.Run(name, func(t *testing.T) {
			if ok, err := cl.HasFile(tc.e); ok || err != nil {
				t.Fatalf("HasFile before the download = %v, %v", ok, err)
			}
			if err := cl.DownloadFile(ctx, tc.e, []Provider{p}, DownloadOptions{}); err != nil {
				t.Fatal(err)
			}
			if ok, err := cl.HasFile(tc.e); !ok || err != nil {
				t.Fatalf("HasFile after the download = %v, %v", ok, err)
			}
			dst := filepath.Join(t.TempDir(), "out")
			if err := cl.ExportFile(ctx, tc.e, dst); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("ExportFile wrote other bytes (%v)", err)
			}
			r, n, err := cl.OpenFile(ctx, tc.e)
			if err != nil || n != int64(len(tc.want)) {
				t.Fatalf("OpenFile: %v, %d bytes", err, n)
			}
			defer r.Close()
			if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("OpenFile read other bytes (%v)", err)
			}
			var blobs []Hash
			cl.FileBlobs(tc.e, func(h Hash) bool { blobs = append(blobs, h); return true })
			for _, h := range blobs {
				if !has(t, cl, h) {
					t.Fatalf("FileBlobs names %s, which the store lacks", h)
				}
			}
			if want := 1; tc.e.Chunks.IsZero() && len(blobs) != want || !tc.e.Chunks.IsZero() && len(blobs) != 1+len(cf.Chunks) {
				t.Fatalf("FileBlobs named %d blobs", len(blobs))
			}
			// Without the store's copy: the blob is moved, the chunked
			// file assembled and its chunks kept.
			moved := filepath.Join(t.TempDir(), "moved")
			m, err := cl.ExportFileMove(ctx, tc.e, moved)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]ExportMethod{true: ExportMoved, false: ExportAssembled}[tc.e.Chunks.IsZero()]; m != want {
				t.Fatalf("ExportFileMove used %v, want %v", m, want)
			}
			if got, err := os.ReadFile(moved); err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("ExportFileMove wrote other bytes (%v)", err)
			}
			for _, h := range blobs {
				if !has(t, cl, h) {
					t.Fatalf("after ExportFileMove the store lacks %s", h)
				}
			}
		})
	}
}

// TestOpenChunkedSeek: the reader seeks anywhere in the file, across chunk
// boundaries, and reads what the file holds there; a read through from
// the start checks the whole-file hash, a read after a seek cannot.
func TestOpenChunkedSeek(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	v := content(chunkedFixture, 9)
	cf := addChunked(t, s, v)
	r, n, err := s.OpenChunked(ctx, cf.Hash, cf.List)
	if err != nil || n != int64(len(v)) {
		t.Fatalf("OpenChunked: %v, %d", err, n)
	}
	defer r.Close()
	b1 := cf.Chunks[0].Size // the first chunk boundary
	for _, tc := range []struct {
		off    int64
		whence int
		at     int64
	}{
		{b1 - 10, io.SeekStart, b1 - 10},
		{5, io.SeekCurrent, b1 - 10 + 64 + 5},
		{-100, io.SeekEnd, n - 100},
		{0, io.SeekStart, 0},
	} {
		pos, err := r.Seek(tc.off, tc.whence)
		if err != nil || pos != tc.at {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d", tc.off, tc.whence, pos, err, tc.at)
		}
		got := make([]byte, 64)
		k, err := io.ReadFull(r, got)
		if tc.at+64 > n {
			if !errors.Is(err, io.ErrUnexpectedEOF) || k != int(n-tc.at) {
				t.Fatalf("at %d: read %d, %v", tc.at, k, err)
			}
		} else if err != nil {
			t.Fatalf("at %d: %v", tc.at, err)
		}
		if !bytes.Equal(got[:k], v[tc.at:tc.at+int64(k)]) {
			t.Fatalf("at %d: other bytes", tc.at)
		}
	}
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("Seek to -1 succeeded")
	}
	// A wrong whole hash is caught on a read through, not after a seek.
	r2, _, err := s.OpenChunked(ctx, HashBytes([]byte("other")), cf.List)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := io.ReadAll(r2); !errors.Is(err, ErrWholeHash) {
		t.Fatalf("read through with a wrong hash = %v", err)
	}
}

// TestGCChunkListRoot: a chunk list given as a root keeps its chunks (a
// download in progress names the list it fills).
func TestGCChunkListRoot(t *testing.T) {
	s := newTestStoreOpts(t, StoreOptions{GCGrace: -1})
	cf := addChunked(t, s, content(chunkedFixture, 10))
	orphan := addBlob(t, s, content(100<<10, 11))
	if _, err := s.GC(context.Background(), func(yield func(Hash) bool) { yield(cf.List) }); err != nil {
		t.Fatal(err)
	}
	for _, c := range cf.Chunks {
		if !has(t, s, c.Hash) {
			t.Fatalf("GC removed chunk %s of a root chunk list", c.Hash)
		}
	}
	if has(t, s, orphan) {
		t.Fatal("GC kept an orphan")
	}
}
