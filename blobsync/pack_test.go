package blobsync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dwebkit/dweb/internal/store"
)

// packsIn returns the pack files in s's directory.
func packsIn(t testing.TB, s *Store) []string {
	t.Helper()
	var out []string
	for _, n := range dirFiles(t, s) {
		if strings.HasSuffix(n, packSuffix) {
			out = append(out, n)
		}
	}
	return out
}

// checkPacked checks that every chunk of cf is held in pack, its outboard
// inline, and that no chunk has a data file of its own.
func checkPacked(t testing.TB, s *Store, cf ChunkedFile, pack string) {
	t.Helper()
	for i, c := range cf.Chunks {
		e, ok := entryOf(t, s, c.Hash)
		if !ok || e.State != stateComplete || e.Pack != pack || len(e.Outboard) == 0 {
			t.Fatalf("chunk %d entry %+v (found %v), want complete in pack %s with an inline outboard", i, e, ok, pack)
		}
		if _, err := os.Stat(s.dataPath(c.Hash)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("chunk %d has a data file of its own (%v)", i, err)
		}
	}
}

// openPackStore opens (or reopens) a store whose database and blob files are
// under dir; the caller closes the database.
func openPackStore(t testing.TB, dir string, opts StoreOptions) (*store.DB, *Store) {
	t.Helper()
	db, err := store.Open(filepath.Join(dir, "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(db, filepath.Join(dir, "blobs"), opts)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return db, s
}

// TestPackedChunks: a chunked file downloaded fresh lands in one pack;
// its chunks read back, export (one blob, and the whole file), and are
// served on to a third store, which verifies every group; ExportMove of a
// packed chunk copies and leaves the pack alone.
func TestPackedChunks(t *testing.T) {
	ctx := context.Background()
	srv, mid, last := newTestStore(t), newTestStore(t), newTestStore(t)
	v := content(chunkedFixture, 31)
	cf := addChunked(t, srv, v)
	if len(cf.Chunks) < 3 {
		t.Fatalf("fixture has %d chunks", len(cf.Chunks))
	}
	if _, err := mid.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	packs := packsIn(t, mid)
	if len(packs) != 1 {
		t.Fatalf("packs after a fresh download: %v, want one", packs)
	}
	checkPacked(t, mid, cf, packs[0])
	exportChunked(t, mid, cf, v)

	// Each chunk alone: Open, ReadAll, Export.
	var off int64
	for i, c := range cf.Chunks {
		want := v[off : off+c.Size]
		off += c.Size
		r, n, err := mid.Open(c.Hash)
		if err != nil || n != c.Size {
			t.Fatalf("open chunk %d: %d bytes, %v", i, n, err)
		}
		if _, err := r.Seek(c.Size/2, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, want[c.Size/2:]) {
			t.Fatalf("chunk %d read from its middle differs (%v)", i, err)
		}
		if b, err := mid.ReadAll(c.Hash, ChunkMax); err != nil || !bytes.Equal(b, want) {
			t.Fatalf("ReadAll chunk %d differs (%v)", i, err)
		}
		dst := filepath.Join(t.TempDir(), "chunk")
		if err := mid.Export(ctx, c.Hash, dst); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(dst); err != nil || !bytes.Equal(b, want) {
			t.Fatalf("exported chunk %d differs (%v)", i, err)
		}
	}

	// Served on: the third store verifies every group against the list's
	// hashes as it stores them.
	res, err := last.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "mid", mid)}, DownloadOptions{})
	if err != nil || res.Fetched != len(cf.Chunks) {
		t.Fatalf("download from the packed store: %+v, %v", res, err)
	}
	exportChunked(t, last, cf, v)

	// ExportMove cannot move a packed chunk: it copies, and the chunk stays.
	c := cf.Chunks[1]
	dst := filepath.Join(t.TempDir(), "moved")
	m, err := mid.ExportMove(ctx, c.Hash, dst)
	if err != nil || m == ExportMoved {
		t.Fatalf("ExportMove of a packed chunk: %v, %v", m, err)
	}
	if b, err := os.ReadFile(dst); err != nil || !bytes.Equal(b, v[cf.Chunks[0].Size:cf.Chunks[0].Size+c.Size]) {
		t.Fatalf("moved chunk differs (%v)", err)
	}
	checkPacked(t, mid, cf, packs[0])
}

// TestPackGC: a pack stays while any of its chunks is kept, and GC removes
// it with the last; a pack a download is writing is never removed.
func TestPackGC(t *testing.T) {
	ctx := context.Background()
	srv, cl := newTestStore(t), newTestStoreOpts(t, StoreOptions{GCGrace: -1})
	v := content(chunkedFixture, 32)
	cf := addChunked(t, srv, v)
	if _, err := cl.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	packs := packsIn(t, cl)
	if len(packs) != 1 {
		t.Fatalf("packs %v", packs)
	}
	keep := func(hs ...Hash) func(func(Hash) bool) {
		return func(yield func(Hash) bool) {
			for _, h := range hs {
				if !yield(h) {
					return
				}
			}
		}
	}
	if n, err := cl.GC(ctx, keep(cf.List)); err != nil || n != 0 {
		t.Fatalf("GC keeping the list removed %d (%v)", n, err)
	}
	if got := packsIn(t, cl); !slices.Equal(got, packs) {
		t.Fatalf("packs after GC keeping the list: %v", got)
	}
	// A chunk deleted: the pack stays for the others.
	if err := cl.Delete(cf.Chunks[0].Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GC(ctx, keep(cf.List)); err != nil {
		t.Fatal(err)
	}
	if got := packsIn(t, cl); !slices.Equal(got, packs) {
		t.Fatalf("packs while all but one chunk are kept: %v", got)
	}
	// Only chunk 1 kept: the pack is mostly dead, so GC rewrites chunk 1
	// into a pack of its own (compact.go) and removes the old one.
	if _, err := cl.GC(ctx, keep(cf.Chunks[1].Hash)); err != nil {
		t.Fatal(err)
	}
	if got := packsIn(t, cl); len(got) != 1 || got[0] == packs[0] {
		t.Fatalf("packs while chunk 1 is kept: %v, want one new pack (was %v)", got, packs)
	}
	if b, err := cl.ReadAll(cf.Chunks[1].Hash, ChunkMax); err != nil || !bytes.Equal(b, v[cf.Chunks[0].Size:cf.Chunks[0].Size+cf.Chunks[1].Size]) {
		t.Fatalf("kept chunk after GC: %v", err)
	}
	// A pack being written has no entries yet: GC leaves it.
	pk, err := cl.newPack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pk.f.WriteAt([]byte("not yet committed"), pk.reserve(17)); err != nil {
		t.Fatal(err)
	}
	// The last chunk goes: so does its pack, but not the open one.
	if _, err := cl.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := packsIn(t, cl); !slices.Equal(got, []string{pk.name}) {
		t.Fatalf("packs after GC of everything: %v, want only the open %s", got, pk.name)
	}
	if has(t, cl, cf.Chunks[1].Hash) {
		t.Fatal("chunk 1 survived GC without roots")
	}
	// Closed with no entry naming it, the pack is removed.
	pk.close()
	if got := packsIn(t, cl); len(got) != 0 {
		t.Fatalf("packs after closing an unused one: %v", got)
	}
}

// TestPackCrash: a crash leaves a pack with bytes no entry names at its
// tail, and a pack that no entry names at all (the crash came before its
// first commit). After reopening, the chunks read, export and serve as
// before; GC removes the orphan pack and keeps the other. A pack cut short
// (lost bytes under an entry) is reported corrupt, not read.
func TestPackCrash(t *testing.T) {
	ctx := context.Background()
	srv := newTestStore(t)
	v := content(chunkedFixture, 33)
	cf := addChunked(t, srv, v)
	dir := t.TempDir()
	db, cl := openPackStore(t, dir, StoreOptions{GCGrace: -1})
	if _, err := cl.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
		db.Close()
		t.Fatal(err)
	}
	packs := packsIn(t, cl)
	db.Close()
	if len(packs) != 1 {
		t.Fatalf("packs %v", packs)
	}
	pack := filepath.Join(dir, "blobs", packs[0])
	f, err := os.OpenFile(pack, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(content(300<<10, 1)) // a chunk half written when the power went
	f.Close()
	orphan := filepath.Join(dir, "blobs", "00000000deadbeef"+packSuffix)
	if err := os.WriteFile(orphan, content(1<<20, 2), 0o600); err != nil {
		t.Fatal(err)
	}

	db, cl = openPackStore(t, dir, StoreOptions{GCGrace: -1})
	defer func() { db.Close() }()
	checkPacked(t, cl, cf, packs[0])
	exportChunked(t, cl, cf, v)
	other := newTestStore(t)
	if _, err := other.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "cl", cl)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	exportChunked(t, other, cf, v)
	if _, err := cl.GC(ctx, func(yield func(Hash) bool) { yield(cf.List) }); err != nil {
		t.Fatal(err)
	}
	if got := packsIn(t, cl); !slices.Equal(got, packs) {
		t.Fatalf("packs after GC: %v, want %v (the orphan removed)", got, packs)
	}

	// Bytes lost under an entry: the chunk is corrupt, not served.
	lastChunk := cf.Chunks[len(cf.Chunks)-1]
	e, _ := entryOf(t, cl, lastChunk.Hash)
	if err := os.Truncate(pack, e.PackOff+e.Size-1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.Open(lastChunk.Hash); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a chunk past its pack's end = %v, want ErrCorrupt", err)
	}
}

// TestPackOldStore: a store whose chunks were written a file each (as
// before packs; StoreOptions.ChunkFiles) reopens with packs on: the old
// chunks still read and serve, and a new version's chunks go to a pack
// beside them. An entry naming a pack outside the store is corrupt.
func TestPackOldStore(t *testing.T) {
	ctx := context.Background()
	srv := newTestStore(t)
	v0 := content(chunkedFixture, 34)
	cf0 := addChunked(t, srv, v0)
	dir := t.TempDir()
	db, cl := openPackStore(t, dir, StoreOptions{ChunkFiles: true})
	if _, err := cl.DownloadChunked(ctx, cf0.List, cf0.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
		db.Close()
		t.Fatal(err)
	}
	if got := packsIn(t, cl); len(got) != 0 {
		db.Close()
		t.Fatalf("ChunkFiles store wrote packs %v", got)
	}
	db.Close()

	db, cl = openPackStore(t, dir, StoreOptions{})
	defer func() { db.Close() }()
	for i, c := range cf0.Chunks {
		if e, ok := entryOf(t, cl, c.Hash); !ok || e.Pack != "" {
			t.Fatalf("old chunk %d: %+v", i, e)
		}
	}
	exportChunked(t, cl, cf0, v0)
	v1 := append(bytes.Clone(v0), content(4<<20, 35)...)
	cf1 := addChunked(t, srv, v1)
	res, err := cl.DownloadChunked(ctx, cf1.List, cf1.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{NoDelta: true})
	if err != nil || res.Fetched == 0 {
		t.Fatalf("second version: %+v, %v", res, err)
	}
	if got := packsIn(t, cl); len(got) != 1 {
		t.Fatalf("packs after the second version: %v", got)
	}
	exportChunked(t, cl, cf1, v1)
	other := newTestStore(t)
	if _, err := other.DownloadChunked(ctx, cf1.List, cf1.Size, []Provider{prov(t, "cl", cl)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	exportChunked(t, other, cf1, v1)

	// A pack name that is not one of ours is refused before any file opens.
	h := cf1.Chunks[len(cf1.Chunks)-1].Hash
	e, _ := entryOf(t, cl, h)
	if e.Pack == "" {
		t.Fatal("the new last chunk is not packed")
	}
	e.Pack = "../../etc/passwd"
	if err := cl.putEntry(h, e); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.Open(h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of an entry naming %q = %v, want ErrCorrupt", e.Pack, err)
	}
}

// TestPackLiar: with packs, a provider that flips a byte is still caught
// at its first bad group and banned; the bytes it sent are never named by
// an entry, and the file assembles from the honest provider's chunks.
func TestPackLiar(t *testing.T) {
	srvA, srvB, cl := newTestStore(t), newTestStore(t), newTestStore(t)
	v := content(chunkedFixture, 36)
	cf := addChunked(t, srvA, v)
	addChunked(t, srvB, v)
	var flipped atomic.Bool
	liar := withFault(prov(t, "liar", srvA), func(_ int, c net.Conn) io.ReadWriteCloser {
		return &flipAt{Conn: c, off: 2 << 20, flipped: &flipped}
	})
	var last Progress
	res, err := cl.DownloadChunked(context.Background(), cf.List, cf.Size, []Provider{liar, prov(t, "honest", srvB)}, DownloadOptions{Progress: func(p Progress) { last = p }})
	if err != nil || res.Fetched != len(cf.Chunks) {
		t.Fatalf("download: %+v, %v", res, err)
	}
	if l := provOf(last.Providers, "liar"); !flipped.Load() || l.State != "banned" {
		t.Fatalf("liar flipped %v, state %+v", flipped.Load(), l)
	}
	if got := packsIn(t, cl); len(got) != 1 {
		t.Fatalf("packs %v", got)
	}
	exportChunked(t, cl, cf, v)
	for i, c := range cf.Chunks {
		if b, err := cl.ReadAll(c.Hash, ChunkMax); err != nil || HashBytes(b) != c.Hash {
			t.Fatalf("chunk %d does not hash to its name (%v)", i, err)
		}
	}
}

// TestPackGuard: a pack opened and closed while a GC runs stays busy for
// that GC (its entries may postdate GC's scan), and not for the next; a
// data file left beside a packed blob (a partial download's, the blob
// then stored in a pack) is removed by GC, the blob kept.
func TestPackGuard(t *testing.T) {
	ctx := context.Background()
	srv, cl := newTestStore(t), newTestStoreOpts(t, StoreOptions{GCGrace: -1})
	g := cl.packGuard()
	pk, err := cl.newPack()
	if err != nil {
		t.Fatal(err)
	}
	if !g.busy(pk.name) {
		t.Fatal("a pack opened during GC is not busy")
	}
	pk.stored(1) // as if a commit had named it
	pk.close()
	if !g.busy(pk.name) {
		t.Fatal("a pack opened and closed during GC is not busy for it")
	}
	g.release()
	g = cl.packGuard()
	if g.busy(pk.name) {
		t.Fatal("a pack closed before GC began is busy")
	}
	g.release()
	os.Remove(filepath.Join(cl.Dir(), pk.name))

	v := content(chunkedFixture, 37)
	cf := addChunked(t, srv, v)
	if _, err := cl.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	c := cf.Chunks[0]
	stray := cl.dataPath(c.Hash)
	if err := os.WriteFile(stray, v[:c.Size], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GC(ctx, func(yield func(Hash) bool) { yield(cf.List) }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("data file beside a packed chunk after GC: %v", err)
	}
	packs := packsIn(t, cl)
	if len(packs) != 1 {
		t.Fatalf("packs %v", packs)
	}
	checkPacked(t, cl, cf, packs[0])
	exportChunked(t, cl, cf, v)
}
