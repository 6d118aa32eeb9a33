package blobsync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// packFixture is a store's blobs held in one pack, in order.
type packFixture struct {
	hs   []Hash
	data map[Hash][]byte
	pack string
}

// keep returns GC roots: the blobs idx.
func (f *packFixture) keep(idx ...int) func(func(Hash) bool) {
	return func(yield func(Hash) bool) {
		for _, i := range idx {
			if !yield(f.hs[i]) {
				return
			}
		}
	}
}

// size sums the sizes of the blobs idx.
func (f *packFixture) size(idx ...int) int64 {
	var n int64
	for _, i := range idx {
		n += int64(len(f.data[f.hs[i]]))
	}
	return n
}

// checkInPack checks that the blobs of f are in pack.
func (f *packFixture) checkInPack(t *testing.T, s *Store, pack string, idx ...int) {
	t.Helper()
	for _, i := range idx {
		if e, ok := entryOf(t, s, f.hs[i]); !ok || e.Pack != pack {
			t.Fatalf("blob %d: %+v, want it in pack %s", i, e, pack)
		}
	}
}

// packedChunks downloads a chunked file from a server into cl (its chunks
// land in one pack).
func packedChunks(t *testing.T, cl *Store) *packFixture {
	t.Helper()
	srv := newTestStore(t)
	v := content(chunkedFixture, 51)
	cf := addChunked(t, srv, v)
	if _, err := cl.DownloadChunked(context.Background(), cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	f := &packFixture{data: map[Hash][]byte{}}
	var off int64
	for _, c := range cf.Chunks {
		f.hs = append(f.hs, c.Hash)
		f.data[c.Hash] = v[off : off+c.Size]
		off += c.Size
	}
	if len(f.hs) < 6 {
		t.Fatalf("fixture has %d chunks, want at least 6", len(f.hs))
	}
	packs := packsIn(t, cl)
	if len(packs) != 1 {
		t.Fatalf("packs after the download: %v, want one", packs)
	}
	f.pack = packs[0]
	f.checkInPack(t, cl, f.pack, allOf(f)...)
	return f
}

// packedCollection downloads a collection of 12 blobs of about 100 KB
// from a server into cl (its blobs land in one pack).
func packedCollection(t *testing.T, cl *Store) *packFixture {
	t.Helper()
	srv := newTestStore(t)
	sizes := make([]int, 12)
	for i := range sizes {
		sizes[i] = 100_000 + i
	}
	c := makeCollection(t, sizes, []*Store{srv}, nil)
	downloadAll(t, cl, c, prov(t, "srv", srv))
	f := &packFixture{data: c.blobs}
	for _, e := range c.c.Entries {
		f.hs = append(f.hs, e.Hash)
	}
	packs := packsIn(t, cl)
	if len(packs) != 1 {
		t.Fatalf("packs after the download: %v, want one", packs)
	}
	f.pack = packs[0]
	f.checkInPack(t, cl, f.pack, allOf(f)...)
	return f
}

func allOf(f *packFixture) []int {
	idx := make([]int, len(f.hs))
	for i := range idx {
		idx[i] = i
	}
	return idx
}

func packSize(t *testing.T, s *Store, name string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(s.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// checkKept checks that f's blobs idx are held byte-identical and are
// served: a third store downloads them from s and verifies every group.
func checkKept(t *testing.T, s *Store, f *packFixture, idx ...int) {
	t.Helper()
	third := newTestStore(t)
	for _, i := range idx {
		h := f.hs[i]
		checkServes(t, s, h, f.data[h])
		if _, err := third.Download(context.Background(), h, []Provider{prov(t, "s", s)}, DownloadOptions{}); err != nil {
			t.Fatalf("serve blob %d on: %v", i, err)
		}
		if got, err := third.ReadAll(h, 8<<20); err != nil || !bytes.Equal(got, f.data[h]) {
			t.Fatalf("blob %d served on: %v", i, err)
		}
	}
}

// packBuilders make a store's blobs that land in one pack.
var packBuilders = map[string]func(*testing.T, *Store) *packFixture{
	"chunks":     packedChunks,
	"collection": packedCollection,
}

// TestPackCompact: a download's blobs land in one pack; when most of
// them go, GC rewrites the rest into a new pack holding only them and
// removes the old one; the kept blobs read, serve and verify as before,
// and Usage counts the dead bytes until then. A pack less than half dead
// is left alone.
func TestPackCompact(t *testing.T) {
	for name, build := range packBuilders {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			cl := newTestStoreOpts(t, StoreOptions{GCGrace: -1})
			f := build(t, cl)
			full := packSize(t, cl, f.pack)
			n := len(f.hs)

			// A third gone: the pack stays.
			most := allOf(f)[:n-n/3]
			if _, err := cl.GC(ctx, f.keep(most...)); err != nil {
				t.Fatal(err)
			}
			if got := packsIn(t, cl); !slices.Equal(got, []string{f.pack}) {
				t.Fatalf("packs with a third dead: %v, want %s", got, f.pack)
			}
			u, err := cl.Usage()
			if err != nil {
				t.Fatal(err)
			}
			if want := full - f.size(most...); u.PackDeadBytes != want {
				t.Fatalf("Usage.PackDeadBytes %d, want %d", u.PackDeadBytes, want)
			}

			// All but 3 gone: compacted.
			keep := []int{0, 2, len(most) - 1}
			if _, err := cl.GC(ctx, f.keep(keep...)); err != nil {
				t.Fatal(err)
			}
			packs := packsIn(t, cl)
			if len(packs) != 1 || packs[0] == f.pack {
				t.Fatalf("packs after GC: %v, want one new pack (was %s)", packs, f.pack)
			}
			if got, want := packSize(t, cl, packs[0]), f.size(keep...); got != want {
				t.Fatalf("new pack %d bytes, want the kept blobs' %d", got, want)
			}
			f.checkInPack(t, cl, packs[0], keep...)
			checkKept(t, cl, f, keep...)
			if u, err := cl.Usage(); err != nil || u.PackDeadBytes != 0 || u.Bytes < f.size(keep...) {
				t.Fatalf("Usage after compaction: %+v, %v: want no dead bytes", u, err)
			}
			// Nothing more to do: a second GC leaves the pack alone.
			if _, err := cl.GC(ctx, f.keep(keep...)); err != nil {
				t.Fatal(err)
			}
			if got := packsIn(t, cl); !slices.Equal(got, packs) {
				t.Fatalf("packs after a second GC: %v, want %v", got, packs)
			}
		})
	}
}

// TestPackCompactReaders: a reader that opened a blob before the
// compaction reads its bytes to the end from the old (unlinked) pack; one
// that read the old entry and opens after the old pack is gone is sent to
// the new pack; a blob locked by a writer stays, and so does its pack,
// until a later GC.
func TestPackCompactReaders(t *testing.T) {
	ctx := context.Background()
	cl := newTestStoreOpts(t, StoreOptions{GCGrace: -1})
	f := packedChunks(t, cl)
	h0, h1 := f.hs[0], f.hs[1]
	r, n, err := cl.Open(h0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	old1, err := cl.getEntry(h1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GC(ctx, f.keep(0, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cl.dir, f.pack)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old pack after compaction: %v, want it gone", err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || int64(len(head)+len(rest)) != n || !bytes.Equal(append(head, rest...), f.data[h0]) {
		t.Fatalf("reader opened before the compaction: %d bytes, %v", len(head)+len(rest), err)
	}
	df, off, e, err := cl.openData(h1, old1)
	if err != nil {
		t.Fatalf("openData with the entry read before the compaction: %v", err)
	}
	got := make([]byte, e.Size)
	_, err = df.ReadAt(got, off)
	df.Close()
	if err != nil || e.Pack == f.pack || !bytes.Equal(got, f.data[h1]) {
		t.Fatalf("read by the old entry: pack %s, %v", e.Pack, err)
	}

	// Another pack, mostly dead, with one kept blob locked by a writer:
	// the other moves, the locked one and its pack stay.
	cl2 := newTestStoreOpts(t, StoreOptions{GCGrace: -1})
	f2 := packedChunks(t, cl2)
	unlock, ok := cl2.tryLock(f2.hs[1])
	if !ok {
		t.Fatal("lock")
	}
	if _, err := cl2.GC(ctx, f2.keep(0, 1)); err != nil {
		t.Fatal(err)
	}
	unlock()
	packs := packsIn(t, cl2)
	if len(packs) != 2 || !slices.Contains(packs, f2.pack) {
		t.Fatalf("packs with a blob locked: %v, want the old %s and a new one", packs, f2.pack)
	}
	f2.checkInPack(t, cl2, f2.pack, 1)
	checkKept(t, cl2, f2, 0, 1)
	// Unlocked, the next GC finishes the job.
	if _, err := cl2.GC(ctx, f2.keep(0, 1)); err != nil {
		t.Fatal(err)
	}
	if packs := packsIn(t, cl2); slices.Contains(packs, f2.pack) {
		t.Fatalf("packs after the lock was released: %v, want %s gone", packs, f2.pack)
	}
	checkKept(t, cl2, f2, 0, 1)
}

// TestPackCompactCrash: a compaction stopped after each step leaves every
// kept blob readable after a reopen, and the next GC leaves one pack that
// holds exactly the kept blobs.
func TestPackCompactCrash(t *testing.T) {
	ctx := context.Background()
	errCrash := errors.New("crash")
	for _, step := range []compactStep{compactCopied, compactRepointed} {
		t.Run(string(step), func(t *testing.T) {
			dir := t.TempDir()
			db, cl := openPackStore(t, dir, StoreOptions{GCGrace: -1})
			f := packedChunks(t, cl)
			keep := []int{2, 4}
			cl.compactHook = func(s compactStep) error {
				if s == step {
					return errCrash
				}
				return nil
			}
			if _, err := cl.GC(ctx, f.keep(keep...)); err != nil {
				t.Fatal(err) // a failed compaction is logged, not GC's error
			}
			if got := packsIn(t, cl); len(got) != 2 || !slices.Contains(got, f.pack) {
				t.Fatalf("packs after the crash: %v, want the old and the new", got)
			}
			db.Close()
			db, cl = openPackStore(t, dir, StoreOptions{GCGrace: -1})
			defer db.Close()
			checkKept(t, cl, f, keep...)
			if _, err := cl.GC(ctx, f.keep(keep...)); err != nil {
				t.Fatal(err)
			}
			packs := packsIn(t, cl)
			if len(packs) != 1 || packs[0] == f.pack {
				t.Fatalf("packs after GC: %v, want one new pack", packs)
			}
			if got, want := packSize(t, cl, packs[0]), f.size(keep...); got != want {
				t.Fatalf("pack %d bytes, want %d", got, want)
			}
			checkKept(t, cl, f, keep...)
		})
	}
}

// TestPackedCollectionFiles: with SmallFiles a collection's blobs get a
// data file each, as before packs (inline ones stay inline either way).
func TestPackedCollectionFiles(t *testing.T) {
	srv, cl := newTestStore(t), newTestStoreOpts(t, StoreOptions{SmallFiles: true})
	f := makeCollection(t, []int{100_000, 200_000, 1000}, []*Store{srv}, nil)
	downloadAll(t, cl, f, prov(t, "srv", srv))
	if packs := packsIn(t, cl); len(packs) != 0 {
		t.Fatalf("packs with SmallFiles: %v", packs)
	}
	for _, e := range f.c.Entries {
		if pe, _ := entryOf(t, cl, e.Hash); pe.Pack != "" {
			t.Fatalf("%s in pack %s", e.Name, pe.Pack)
		}
	}
}

// TestPackCompactSkipsOpen: a pack a download still writes is not
// compacted, however dead; once closed, the next GC compacts it.
func TestPackCompactSkipsOpen(t *testing.T) {
	ctx := context.Background()
	cl := newTestStoreOpts(t, StoreOptions{GCGrace: -1})
	f := packedCollection(t, cl)
	cl.packs.mu.Lock()
	cl.packs.open[f.pack] = true // as if its download were still writing
	cl.packs.mu.Unlock()
	if _, err := cl.GC(ctx, f.keep(3)); err != nil {
		t.Fatal(err)
	}
	if got := packsIn(t, cl); !slices.Equal(got, []string{f.pack}) {
		t.Fatalf("packs while the pack is open: %v, want %s untouched", got, f.pack)
	}
	f.checkInPack(t, cl, f.pack, 3)
	cl.packs.mu.Lock()
	delete(cl.packs.open, f.pack)
	cl.packs.mu.Unlock()
	if _, err := cl.GC(ctx, f.keep(3)); err != nil {
		t.Fatal(err)
	}
	if got := packsIn(t, cl); len(got) != 1 || got[0] == f.pack {
		t.Fatalf("packs after the download closed: %v, want one new pack", got)
	}
	checkKept(t, cl, f, 3)
}
