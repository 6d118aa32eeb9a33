package datarepo_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/testnet"
)

// historyRepo is a writable repo on a one-node network with a store whose
// GC has no grace (so a test sees at once what GC keeps).
func historyRepo(t *testing.T) (*datarepo.Repo, *blobsync.Store, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	net := testnet.New(t, 1)
	blobs, err := blobsync.OpenStore(net[0].Store, filepath.Join(net[0].Dir, "blobs"), blobsync.StoreOptions{GCGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	repo, _, err := datarepo.Create(ctx, net[0].DHT, blobs, record.Secret(key.NewSecret()), "phone")
	if err != nil {
		t.Fatal(err)
	}
	return repo, blobs, ctx
}

// exportVersion writes version v of name from the store to a file and
// checks its bytes are want, by BLAKE3 and by b3sum.
func exportVersion(t *testing.T, blobs *blobsync.Store, name string, v blobsync.Version, want []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := blobs.ExportFile(context.Background(), v.Entry(name), p); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) || blobsync.HashBytes(got) != v.Hash {
		t.Fatalf("version %s of %s exports other bytes", v.Hash, name)
	}
	if sum := testnet.B3sum(t, p); sum != "" && sum != v.Hash.String() {
		t.Fatalf("b3sum %s, the version's hash %s", sum, v.Hash)
	}
}

// TestHistoryRestore: three writes of one name (AddFiles twice, AddReader
// once) are listed newest first, each exported byte-identical; restoring
// the first makes it current again as a fourth version with the same
// bytes; refs by index and by hash prefix agree, and bad refs get their
// errors.
func TestHistoryRestore(t *testing.T) {
	repo, blobs, ctx := historyRepo(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "notes.txt")
	data := [][]byte{[]byte("first draft"), []byte("second draft, longer"), []byte("third")}
	for _, b := range data[:2] {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := repo.AddFiles(ctx, []string{p}); err != nil {
			t.Fatal(err)
		}
	}
	// The same bytes again: no new version.
	if _, err := repo.AddFiles(ctx, []string{p}); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.AddReader(ctx, "notes.txt", bytes.NewReader(data[2]), 1<<20); err != nil {
		t.Fatal(err)
	}
	hist, err := repo.History(ctx, "notes.txt", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 {
		t.Fatalf("history has %d versions, want 3: %+v", len(hist), hist)
	}
	for i, v := range hist {
		exportVersion(t, blobs, "notes.txt", v, data[2-i])
	}

	byPrefix, err := datarepo.ParseVersionRef(hist[2].Hash.String()[:10])
	if err != nil {
		t.Fatal(err)
	}
	e, err := repo.Restore(ctx, "notes.txt", byPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if e.Hash != blobsync.HashBytes(data[0]) || len(e.Versions) != 3 || e.Versions[0].Hash != hist[0].Hash {
		t.Fatalf("restored entry %+v", e)
	}
	c, _, err := repo.Collection(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cur, ok := c.Get("notes.txt"); !ok || cur.Hash != e.Hash {
		t.Fatalf("published entry %+v", cur)
	}
	exportVersion(t, blobs, "notes.txt", e.Current(), data[0])
	// Restoring the current version changes nothing.
	if again, err := repo.Restore(ctx, "notes.txt", datarepo.VersionRef{Index: 0}); err != nil || len(again.Versions) != 3 {
		t.Fatalf("restoring the current version: %+v, %v", again, err)
	}

	for ref, want := range map[string]error{"-1": datarepo.ErrBadVersionRef, "abc": datarepo.ErrBadVersionRef, "12345": datarepo.ErrBadVersionRef,
		"4": datarepo.ErrVersionNotFound, "00000000": datarepo.ErrVersionNotFound} {
		r, err := datarepo.ParseVersionRef(ref)
		if err == nil {
			_, err = repo.Restore(ctx, "notes.txt", r)
		}
		if !errors.Is(err, want) {
			t.Fatalf("ref %q: %v, want %v", ref, err, want)
		}
	}
	if _, err := repo.History(ctx, "nothing.txt", nil); !errors.Is(err, datarepo.ErrFileNotFound) {
		t.Fatalf("History of an unknown name: %v", err)
	}
}

// TestDeleteThenRestore: a deleted file leaves the listing but keeps its
// history, a tombstone first; restoring the version before the deletion
// brings it back byte-identical, with the deletion kept in its history.
func TestDeleteThenRestore(t *testing.T) {
	repo, blobs, ctx := historyRepo(t)
	data := []byte("evidence")
	if _, err := repo.AddReader(ctx, "clip.mp4", bytes.NewReader(data), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := repo.DeleteFile(ctx, "clip.mp4"); err != nil {
		t.Fatal(err)
	}
	if err := repo.DeleteFile(ctx, "clip.mp4"); !errors.Is(err, datarepo.ErrFileNotFound) {
		t.Fatalf("deleting a deleted file: %v", err)
	}
	c, _, err := repo.Collection(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("clip.mp4"); ok || len(c.Entries) != 0 {
		t.Fatalf("a deleted file is listed: %+v", c.Entries)
	}
	hist, err := repo.History(ctx, "clip.mp4", nil)
	if err != nil || len(hist) != 2 || !hist[0].Deleted || hist[1].Hash != blobsync.HashBytes(data) {
		t.Fatalf("history after the delete: %+v, %v", hist, err)
	}
	if _, err := repo.Restore(ctx, "clip.mp4", datarepo.VersionRef{Index: 0}); !errors.Is(err, datarepo.ErrVersionDeleted) {
		t.Fatalf("restoring the deletion: %v", err)
	}
	e, err := repo.Restore(ctx, "clip.mp4", datarepo.VersionRef{Index: 1})
	if err != nil {
		t.Fatal(err)
	}
	if h := e.History(); len(h) != 3 || h[0].Hash != blobsync.HashBytes(data) || !h[1].Deleted {
		t.Fatalf("history after the restore: %+v", h)
	}
	exportVersion(t, blobs, "clip.mp4", e.Current(), data)
}

// TestGCAfterPrune: with chunked files, a retention of one older version
// prunes on the next write, and GC with the repo's roots removes exactly
// the blobs and chunks only the pruned versions had: every kept version,
// a deleted name's included, still exports byte-identical.
func TestGCAfterPrune(t *testing.T) {
	repo, blobs, ctx := historyRepo(t)
	repo.SetChunking(true)
	dir := t.TempDir()
	// Random bytes: periodic ones repeat chunks within a file.
	big := make([]byte, 3*blobsync.ChunkThreshold)
	rand.NewChaCha8([32]byte{1}).Read(big)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// film.mp4: three versions, each with the first byte changed (its
	// first chunk differs, the rest is shared); small.txt: two versions,
	// then deleted.
	var films [][]byte
	for i := range 3 {
		b := bytes.Clone(big)
		b[0] = byte(i)
		films = append(films, b)
		if _, err := repo.AddFiles(ctx, []string{write("film.mp4", b)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"small one", "small two"} {
		if _, err := repo.AddReader(ctx, "small.txt", bytes.NewReader([]byte(s)), 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	if err := repo.DeleteFile(ctx, "small.txt"); err != nil {
		t.Fatal(err)
	}
	before, err := repo.History(ctx, "film.mp4", nil)
	if err != nil || len(before) != 3 {
		t.Fatalf("film history %d versions, %v", len(before), err)
	}
	firstChunk := func(v blobsync.Version) blobsync.Hash {
		l, err := blobs.ReadChunkList(v.Chunks)
		if err != nil {
			t.Fatal(err)
		}
		return l.Chunks[0].Hash
	}
	oldest, oldestChunk := before[2], firstChunk(before[2])

	// Nothing pruned yet: GC keeps every version.
	gc := func() int {
		roots, err := repo.GCRoots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := blobs.GC(ctx, func(yield func(blobsync.Hash) bool) {
			for _, h := range roots {
				if !yield(h) {
					return
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	gc()
	if ok, _ := blobs.HasFile(oldest.Entry("film.mp4")); !ok {
		t.Fatal("GC removed a kept version")
	}

	repo.SetRetention(blobsync.Retention{Keep: 1})
	if _, err := repo.AddReader(ctx, "other.txt", bytes.NewReader([]byte("x")), 1<<20); err != nil {
		t.Fatal(err)
	}
	if removed := gc(); removed == 0 {
		t.Fatal("GC after pruning removed nothing")
	}
	film, err := repo.History(ctx, "film.mp4", nil)
	if err != nil || len(film) != 2 {
		t.Fatalf("film history after pruning: %d, %v", len(film), err)
	}
	for i, v := range film {
		exportVersion(t, blobs, "film.mp4", v, films[2-i])
	}
	small, err := repo.History(ctx, "small.txt", nil)
	if err != nil || len(small) != 2 || !small[0].Deleted {
		t.Fatalf("small.txt history after pruning: %+v, %v", small, err)
	}
	exportVersion(t, blobs, "small.txt", small[1], []byte("small two"))
	for _, h := range []blobsync.Hash{oldest.Chunks, oldestChunk, blobsync.HashBytes([]byte("small one"))} {
		if ok, err := blobs.Has(h); ok || err != nil {
			t.Fatalf("GC kept %s, which only a pruned version needed (%v)", h, err)
		}
	}
	// The chunks the pruned version shared with kept ones stay.
	if l, err := blobs.ReadChunkList(film[0].Chunks); err != nil || len(l.Chunks) < 2 {
		t.Fatalf("kept list: %v", err)
	} else if ok, _ := blobs.Has(l.Chunks[len(l.Chunks)-1].Hash); !ok {
		t.Fatal("GC removed a chunk a kept version shares with a pruned one")
	}
}
