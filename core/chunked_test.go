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

// TestChunkedFileGet: alice's repo stores a 12 MiB file as chunks; bob,
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
	gs, err := alice.group(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	gs.repo.SetChunking(true)
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
