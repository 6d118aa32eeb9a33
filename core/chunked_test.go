package core

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
)

// TestChunkedFileGet: alice adds a 12 MiB file, stored as chunks; bob,
// another real node, lists it (not local), gets it to a path and opens it,
// byte-identical, its hash the whole file's BLAKE3; after alice re-adds it
// with one byte changed, bob's get of the new version moves at most two
// chunks.
func TestChunkedFileGet(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob")
	alice, bob := nodes[0], nodes[1]
	g, _, inv := newGroup(ctx, t, alice, "g")
	chunkOwnRepo(t, alice, g.ID)
	p, data := writeFile(t, tmp, "film.mp4", 12<<20+5)
	added, err := alice.AddFiles(ctx, g.ID, []string{p})
	if err != nil {
		t.Fatal(err)
	}
	if added[0].chunks.IsZero() || added[0].Hash != blobsync.HashBytes(data) || !added[0].Local {
		t.Fatalf("added %+v", added[0])
	}
	join(ctx, t, inv, bob)
	files, err := bob.ListFiles(ctx, g.ID)
	if err != nil || len(files) != 1 || files[0].Local || files[0].Hash != added[0].Hash {
		t.Fatalf("bob lists %+v, %v", files, err)
	}
	fi, last := getFile(ctx, t, bob, g.ID, "film.mp4", filepath.Join(tmp, "bob.mp4"), data)
	if !fi.Local || fi.Hash != blobsync.HashBytes(data) || last.Total != int64(len(data)) {
		t.Fatalf("bob got %+v, last progress %+v", fi, last)
	}
	rc, _, err := bob.OpenFile(ctx, g.ID, key.RecordKey{}, "film.mp4")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("OpenFile read other bytes (%v)", err)
	}

	data[len(data)/2] ^= 1
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddFiles(ctx, g.ID, []string{p}); err != nil {
		t.Fatal(err)
	}
	var moved int64
	deadline := time.Now().Add(20 * time.Second)
	for {
		// Bob may list the old collection until alice's publication lands.
		last = Progress{}
		fi, err = bob.GetFile(ctx, g.ID, key.RecordKey{}, "film.mp4", filepath.Join(tmp, "bob2.mp4"), func(p Progress) { last = p })
		if err != nil {
			t.Fatal(err)
		}
		if fi.Hash == blobsync.HashBytes(data) {
			for _, pp := range last.Providers {
				moved += pp.Bytes
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob does not see the new version")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(tmp, "bob2.mp4")); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("the new version differs (%v)", err)
	}
	if moved == 0 || moved > 2*blobsync.ChunkMax {
		t.Fatalf("one byte changed in %d: %d bytes moved", len(data), moved)
	}
}

// TestDrainChunkedFile: two backup servers fetch alice's chunked file by
// its chunks; when B loses one chunk, a drain of A without a target
// reports exactly that chunk unplaced (under the file's name), and a
// drain to B hands it over.
func TestDrainChunkedFile(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	boot := startNode(t, filepath.Join(tmp, "boot"))
	alice := startNode(t, filepath.Join(tmp, "alice"), boot.Contact())
	bo := Options{Bootstrap: []string{boot.Contact()}, Backup: true, BackupInterval: time.Hour}
	nodes := startTogether(t, map[string]Options{filepath.Join(tmp, "a"): bo, filepath.Join(tmp, "b"): bo})
	a, bk := nodes[filepath.Join(tmp, "a")], nodes[filepath.Join(tmp, "b")]

	g, _, inv := newGroup(ctx, t, alice, "newsroom")
	chunkOwnRepo(t, alice, g.ID)
	p, _ := writeFile(t, tmp, "film.mp4", 9<<20+3)
	added, err := alice.AddFiles(ctx, g.ID, []string{p})
	if err != nil || added[0].chunks.IsZero() {
		t.Fatalf("added %+v, %v", added, err)
	}
	join(ctx, t, inv, a, bk)
	waitFor(t, "backup A to hold alice's file", holds(a, g.ID, 1))
	waitFor(t, "backup B to hold alice's file", holds(bk, g.ID, 1))
	alice.Close()

	// B loses a chunk and cannot fetch it by itself.
	for range cap(bk.bk.sem) {
		bk.bk.sem <- struct{}{}
	}
	l, err := bk.blobs.ReadChunkList(added[0].chunks)
	if err != nil {
		t.Fatal(err)
	}
	lost := l.Chunks[1].Hash
	if err := bk.blobs.Delete(lost); err != nil {
		t.Fatal(err)
	}
	rep, err := a.Drain(ctx, DrainOptions{Group: g.ID})
	if err != nil {
		t.Fatal(err)
	}
	dg := rep.Groups[0]
	if dg.UnplacedN != 1 || len(dg.Unplaced) != 1 || dg.Unplaced[0].Hash != lost || dg.Unplaced[0].Name != "chunk of film.mp4" ||
		dg.Checked < 2+len(l.Chunks) {
		t.Fatalf("drain without a target: %+v", dg)
	}
	uri, _, err := bk.AdminURI()
	if err != nil {
		t.Fatal(err)
	}
	rep, err = a.Drain(ctx, DrainOptions{Group: g.ID, To: []string{uri}, Wait: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if dg := rep.Groups[0]; !dg.Complete || dg.HandedOver != 1 {
		t.Fatalf("drain to B: %+v", dg)
	}
	if ok, err := bk.blobs.HasFile(blobsync.Entry{Hash: added[0].Hash, Size: added[0].Size, Chunks: added[0].chunks}); err != nil || !ok {
		t.Fatalf("B does not hold the whole film after the drain (%v)", err)
	}
}

// chunkOwnRepo turns chunking on for b's repo in group g, as
// Options.Chunking does for every group.
func chunkOwnRepo(t *testing.T, b *Backend, g key.RecordKey) {
	t.Helper()
	gs, err := b.group(g)
	if err != nil {
		t.Fatal(err)
	}
	gs.repo.SetChunking(true)
}

// TestChunkedUpload: with chunking on, an upload streamed through
// AddReader (the Save app's route, the C ABI's bytes) is stored as chunks
// as it arrives, its hash the whole file's BLAKE3; bob, another real
// node, gets it byte-identical.
func TestChunkedUpload(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob")
	alice, bob := nodes[0], nodes[1]
	g, _, inv := newGroup(ctx, t, alice, "g")
	chunkOwnRepo(t, alice, g.ID)
	_, data := writeFile(t, tmp, "source.mp4", 9<<20+7)
	fi, _, err := alice.AddReader(ctx, g.ID, "upload.mp4", io.MultiReader(bytes.NewReader(data)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if fi.chunks.IsZero() || fi.Hash != blobsync.HashBytes(data) || fi.Size != int64(len(data)) {
		t.Fatalf("uploaded %+v: want chunks and the whole file's BLAKE3", fi)
	}
	join(ctx, t, inv, bob)
	got, _ := getFile(ctx, t, bob, g.ID, "upload.mp4", filepath.Join(tmp, "bob.mp4"), data)
	if got.Hash != fi.Hash || got.chunks != fi.chunks {
		t.Fatalf("bob got %+v, want %+v", got, fi)
	}
}
