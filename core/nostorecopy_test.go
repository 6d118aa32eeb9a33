package core

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/testnet"
)

// TestGetFileNoStoreCopy: bob gets alice's file without a store copy:
// his output is the only copy on his disk (the store's data file moved
// there, its BLAKE3 as b3sum prints it), he still serves the file to
// carol from it, GC leaves it alone, and once he edits it his store
// refuses it as changed, and a get fetches it again. A small file is
// copied instead.
func TestGetFileNoStoreCopy(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob", "carol")
	alice, bob, carol := nodes[0], nodes[1], nodes[2]

	paths, data := writeFiles(t, tmp, []string{"clip.mp4", "note.txt"}, 5<<20+77, 900)
	g, _, inv := newGroup(ctx, t, alice, "g", paths...)
	join(ctx, t, inv, bob, carol)

	out := filepath.Join(tmp, "bob.mp4")
	fi, err := bob.GetFileWith(ctx, g.ID, key.RecordKey{}, "clip.mp4", out, GetOptions{NoStoreCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	if fi.Export != "move" {
		t.Fatalf("export %q, want move", fi.Export)
	}
	if sum := testnet.B3sum(t, out); sum != "" && sum != fi.Hash.String() {
		t.Fatalf("b3sum %s = %s, want %s", out, sum, fi.Hash)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Sys().(*syscall.Stat_t).Nlink; n != 1 {
		t.Fatalf("%s has %d links, want 1", out, n)
	}
	if _, err := os.Stat(filepath.Join(bob.blobs.Dir(), fi.Hash.String()+".data")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bob's store still has its data file (%v)", err)
	}
	if u, err := bob.blobs.Usage(); err != nil || u.RefBlobs != 1 || u.RefBytes != fi.Size {
		t.Fatalf("bob's usage %+v, %v: want the file as a reference", u, err)
	}

	// bob still lists and serves it: carol's download takes bytes from him.
	files, err := bob.ListFiles(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name == "clip.mp4" && !f.Local {
			t.Fatalf("bob lists clip.mp4 as not local")
		}
	}
	_, last := getFile(ctx, t, carol, g.ID, "clip.mp4", filepath.Join(tmp, "carol.mp4"), data["clip.mp4"])
	var fromBob int64
	for _, p := range last.Providers {
		if p.Node == bob.NodeID().String() {
			fromBob = p.Bytes
		}
	}
	if fromBob == 0 {
		t.Fatalf("carol got nothing from bob after the move: %+v", last.Providers)
	}

	if _, err := bob.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testnet.B3sum(t, out); got != "" && got != fi.Hash.String() {
		t.Fatalf("GC changed %s", out)
	}

	// A small file is copied (inline in the store).
	small, err := bob.GetFileWith(ctx, g.ID, key.RecordKey{}, "note.txt", filepath.Join(tmp, "note.txt.out"), GetOptions{NoStoreCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	if small.Export == "move" || small.Export == "" {
		t.Fatalf("small file export %q, want a copy", small.Export)
	}

	// bob edits his file: his store no longer serves it as verified.
	testnet.EditFile(t, out, 1000)
	_, _, err = bob.blobs.Open(fi.Hash)
	if !errors.Is(err, blobsync.ErrCorrupt) || !strings.Contains(err.Error(), "changed since") {
		t.Fatalf("bob opens the edited file's blob: %v, want ErrCorrupt (changed since)", err)
	}

	// Getting it again fetches it afresh and leaves the edited file be.
	again := filepath.Join(tmp, "bob-again.mp4")
	fi2, err := bob.GetFileWith(ctx, g.ID, key.RecordKey{}, "clip.mp4", again, GetOptions{NoStoreCopy: true})
	if err != nil {
		t.Fatalf("get after the edit: %v", err)
	}
	if fi2.Export != "move" {
		t.Fatalf("export after the edit %q, want move", fi2.Export)
	}
	if sum := testnet.B3sum(t, again); sum != "" && sum != fi.Hash.String() {
		t.Fatalf("b3sum %s = %s, want %s", again, sum, fi.Hash)
	}
	if sum := testnet.B3sum(t, out); sum == fi.Hash.String() {
		t.Fatalf("the edited %s was replaced", out)
	}
}

// TestGetFileMirror: by default a get keeps the store's copy and writes
// the output as the download verifies the bytes ("mirror"): the file's
// BLAKE3 as b3sum prints it, the store holding and serving its own copy,
// an independent file (one link); a get of a file already held is a copy
// from the store.
func TestGetFileMirror(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob")
	alice, bob := nodes[0], nodes[1]
	paths, data := writeFiles(t, tmp, []string{"clip.mp4"}, 6<<20+5)
	g, _, inv := newGroup(ctx, t, alice, "g", paths...)
	join(ctx, t, inv, bob)

	out := filepath.Join(tmp, "bob.mp4")
	fi, _ := getFile(ctx, t, bob, g.ID, "clip.mp4", out, data["clip.mp4"])
	if fi.Export != "mirror" {
		t.Fatalf("export %q, want mirror", fi.Export)
	}
	if sum := testnet.B3sum(t, out); sum != "" && sum != fi.Hash.String() {
		t.Fatalf("b3sum %s = %s, want %s", out, sum, fi.Hash)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Sys().(*syscall.Stat_t).Nlink; n != 1 {
		t.Fatalf("%s has %d links, want 1", out, n)
	}
	if ok, err := bob.blobs.Has(fi.Hash); !ok || err != nil {
		t.Fatalf("bob's store does not hold the file (%v)", err)
	}
	again, _ := getFile(ctx, t, bob, g.ID, "clip.mp4", filepath.Join(tmp, "again.mp4"), data["clip.mp4"])
	if again.Export == "mirror" || again.Export == "" {
		t.Fatalf("a held file's export %q, want a copy from the store", again.Export)
	}
}
