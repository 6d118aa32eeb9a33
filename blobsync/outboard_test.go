package blobsync

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"lukechampine.com/blake3/bao"
)

// Sizes around the inline outboard limit: the smallest blob with an
// outboard, the largest whose 256 parents fit inline, and one byte more
// (257 parents: an .obao file).
var outboardSizes = []int{ChunkGroupSize + 1, 257 * ChunkGroupSize, 257*ChunkGroupSize + 1}

// checkOutboard fails unless blob h of n bytes keeps its outboard where
// inlineOutboard says (entry or .obao file, never both) and the outboard is
// bao's.
func checkOutboard(t *testing.T, s *Store, h Hash, b []byte, what string) {
	t.Helper()
	e, err := s.getEntry(h)
	if err != nil {
		t.Fatalf("%s, size %d: %v", what, len(b), err)
	}
	_, statErr := os.Stat(s.obaoPath(h))
	if inlineOutboard(uint64(len(b))) {
		if len(e.Outboard) == 0 || !errors.Is(statErr, os.ErrNotExist) {
			t.Fatalf("%s, size %d: want the outboard inline only; entry has %d bytes, .obao stat: %v", what, len(b), len(e.Outboard), statErr)
		}
	} else if len(e.Outboard) != 0 || statErr != nil {
		t.Fatalf("%s, size %d: want an .obao file only; entry has %d bytes, .obao stat: %v", what, len(b), len(e.Outboard), statErr)
	}
	got, err := outboardOf(s, h)
	want, _ := bao.EncodeBuf(b, ChunkGroupLog, true)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s, size %d: outboard differs from bao.EncodeBuf (%v)", what, len(b), err)
	}
}

// TestOutboardPlacement: every way a complete blob gets stored (AddBytes,
// AddFile, AddFileRef, Fetch, a ranged Download) keeps a small outboard in
// the entry and a large one in a file, and both serve whole and ranged
// requests.
func TestOutboardPlacement(t *testing.T) {
	ctx := context.Background()
	if !inlineOutboard(257*ChunkGroupSize) || inlineOutboard(257*ChunkGroupSize+1) || inlineOutboard(ChunkGroupSize) {
		t.Fatal("inlineOutboard's limit is not 256 parents")
	}
	for i, n := range outboardSizes {
		b := content(n, uint64(40+i))
		src := newTestStore(t)
		h, err := src.AddBytes(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		checkOutboard(t, src, h, b, "AddBytes")

		copied := newTestStore(t)
		if _, _, err := copied.AddFile(ctx, writeTemp(t, b)); err != nil {
			t.Fatal(err)
		}
		checkOutboard(t, copied, h, b, "AddFile")

		ref := newTestStore(t)
		if _, _, err := ref.AddFileRef(ctx, writeTemp(t, b)); err != nil {
			t.Fatal(err)
		}
		checkOutboard(t, ref, h, b, "AddFileRef")

		// Fetch: the whole-blob stream from a store with an inline outboard.
		fetched := newTestStore(t)
		conn, _ := servePipe(t, ref, nil)
		if _, err := fetched.Fetch(ctx, conn, h, nil); err != nil {
			t.Fatalf("size %d: Fetch: %v", n, err)
		}
		checkOutboard(t, fetched, h, b, "Fetch")

		// Download in 32 KiB ranges from two providers: ranged streams
		// skip through the inline outboard.
		dl := newTestStore(t)
		if _, err := dl.Download(ctx, h, []Provider{prov(t, "a", copied), prov(t, "b", ref)}, DownloadOptions{ChunkBytes: 2 * ChunkGroupSize}); err != nil {
			t.Fatalf("size %d: Download: %v", n, err)
		}
		checkBlob(t, dl, h, b)
		// A partial download that completes moves a small outboard in too.
		checkOutboard(t, dl, h, b, "Download")
	}
}

// TestInlineOutboardStaleFile: an .obao left by an earlier partial
// download is removed when the blob is stored with its outboard inline,
// and GC removes one that appears beside such an entry later; GC keeps the
// .obao of a blob whose entry uses it.
func TestInlineOutboardStaleFile(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	small := content(64<<10, 50)
	hs := HashBytes(small)
	if err := os.WriteFile(s.obaoPath(hs), []byte("left by a partial download"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddBytes(ctx, small); err != nil {
		t.Fatal(err)
	}
	checkOutboard(t, s, hs, small, "AddBytes over a stale .obao")

	large := content(5<<20, 51)
	hl, err := s.AddBytes(ctx, large)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.obaoPath(hs), []byte("stray"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(s.obaoPath(hs), old, old)
	roots := func(yield func(Hash) bool) { _ = yield(hs) && yield(hl) }
	if removed, err := s.GC(ctx, roots); err != nil || removed != 0 {
		t.Fatalf("GC = %d, %v; want 0 blobs removed", removed, err)
	}
	checkOutboard(t, s, hs, small, "after GC")
	checkOutboard(t, s, hl, large, "after GC")
}
