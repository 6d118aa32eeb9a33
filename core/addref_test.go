package core

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/testnet"
)

// TestAddFileNoStoreCopy: alice adds a file without a store copy: her
// store's directory does not grow by its size (no data file; usage counts
// it as a reference), a small file beside it is copied, and FileInfo.Store
// says which. bob downloads it, verified, from her file; GC leaves her
// file alone. Once she edits it her store refuses it and her listing no
// longer shows it local: carol's download takes nothing from her and gets
// the right bytes from bob; with bob gone dave's download fails with an
// error and stores nothing; alice adding the edited file again makes it a
// new version dave then gets.
func TestAddFileNoStoreCopy(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 90*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob", "carol", "dave")
	alice, bob, carol, dave := nodes[0], nodes[1], nodes[2], nodes[3]

	g, _, inv := newGroup(ctx, t, alice, "g")
	paths, data := writeFiles(t, tmp, []string{"archive.tar", "note.txt"}, 6<<20+77, 900)
	before := storeDiskBytes(t, alice)
	added, err := alice.AddFilesWith(ctx, g.ID, paths, AddOptions{NoStoreCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	fi := added[0]
	if fi.Store != "reference" || fi.Hash != blobsync.HashBytes(data["archive.tar"]) || !fi.Local {
		t.Fatalf("added %+v, want archive.tar held by reference", fi)
	}
	if added[1].Store != "copy" {
		t.Fatalf("the small file kept as %q, want copy", added[1].Store)
	}
	if grew := storeDiskBytes(t, alice) - before; grew > fi.Size/10 {
		t.Fatalf("alice's store grew by %d bytes for a %d-byte file added by reference", grew, fi.Size)
	}
	if _, err := os.Stat(filepath.Join(alice.blobs.Dir(), fi.Hash.String()+".data")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("alice's store has a data file for it (%v)", err)
	}
	if u, err := alice.StorageUsage(); err != nil || u.RefBlobs != 1 || u.RefBytes != fi.Size || u.Bytes >= fi.Size {
		t.Fatalf("alice's usage %+v, %v: want the file as a reference", u, err)
	}

	join(ctx, t, inv, bob, carol, dave)
	_, last := getFile(ctx, t, bob, g.ID, "archive.tar", filepath.Join(tmp, "bob.tar"), data["archive.tar"])
	if providerBytes(last, alice) != fi.Size {
		t.Fatalf("bob's download took %d bytes from alice, want all %d: %+v", providerBytes(last, alice), fi.Size, last.Providers)
	}
	if _, err := alice.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(paths[0]); err != nil || !bytes.Equal(got, data["archive.tar"]) {
		t.Fatalf("GC changed alice's file (%v)", err)
	}

	// alice edits her file: her store refuses it, nothing of it is served.
	testnet.EditFile(t, paths[0], 3<<20)
	if _, _, err := alice.blobs.Open(fi.Hash); !errors.Is(err, blobsync.ErrCorrupt) || !strings.Contains(err.Error(), "changed since") {
		t.Fatalf("alice opens the edited file's blob: %v, want ErrCorrupt (changed since)", err)
	}
	files, err := alice.ListFiles(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name == "archive.tar" && f.Local {
			t.Fatalf("alice's listing shows her edited file's blob as local: %+v", f)
		}
	}
	_, last = getFile(ctx, t, carol, g.ID, "archive.tar", filepath.Join(tmp, "carol.tar"), data["archive.tar"])
	if n := providerBytes(last, alice); n != 0 {
		t.Fatalf("carol took %d bytes from alice's edited file", n)
	}
	bob.Close()
	carol.Close()
	short, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = dave.GetFile(short, g.ID, key.RecordKey{}, "archive.tar", filepath.Join(tmp, "dave.tar"), nil)
	if !errors.Is(err, blobsync.ErrNoProviders) || !errors.Is(err, blobsync.ErrNotFound) {
		t.Fatalf("dave's get with only alice's edited file: %v, want no provider (alice: not found)", err)
	}
	if ok, _ := dave.blobs.Has(fi.Hash); ok {
		t.Fatal("dave stored the blob")
	}

	// Added again, the edited file is a new version, by reference.
	edited, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	again, err := alice.AddFilesWith(ctx, g.ID, paths[:1], AddOptions{NoStoreCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Store != "reference" || again[0].Hash != blobsync.HashBytes(edited) {
		t.Fatalf("added again %+v", again[0])
	}
	waitFor(t, "dave to get the edited file", func() bool {
		out := filepath.Join(tmp, "dave2.tar")
		fi, err := dave.GetFile(ctx, g.ID, key.RecordKey{}, "archive.tar", out, nil)
		if err != nil || fi.Hash != again[0].Hash {
			return false
		}
		got, err := os.ReadFile(out)
		return err == nil && bytes.Equal(got, edited)
	})
}

// providerBytes is what progress p says node b sent.
func providerBytes(p Progress, b *Backend) int64 {
	for _, pp := range p.Providers {
		if pp.Node == b.NodeID().String() {
			return pp.Bytes
		}
	}
	return 0
}

// TestAddFileNoStoreCopyChunked: in a chunked repo a file added without a
// store copy is one blob by reference (no chunk list), and another node
// gets it.
func TestAddFileNoStoreCopyChunked(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob")
	alice, bob := nodes[0], nodes[1]
	g, _, inv := newGroup(ctx, t, alice, "g")
	chunkOwnRepo(t, alice, g.ID)
	p, data := writeFile(t, tmp, "film.mp4", 2*blobsync.ChunkThreshold+5)
	added, err := alice.AddFilesWith(ctx, g.ID, []string{p}, AddOptions{NoStoreCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	if a := added[0]; a.Store != "reference" || !a.chunks.IsZero() {
		t.Fatalf("added %+v (chunks %s), want one blob by reference", a, a.chunks)
	}
	join(ctx, t, inv, bob)
	getFile(ctx, t, bob, g.ID, "film.mp4", filepath.Join(tmp, "bob.mp4"), data)
}

// TestAddFileNoStoreCopyQuota: an add by reference reserves the outboard,
// not the bytes: under a 1 MiB quota a 4 MiB file is refused as a copy
// and taken by reference. A relative path, a directory and a missing file
// are bad input.
func TestAddFileNoStoreCopyQuota(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	alice := startWith(t, filepath.Join(tmp, "alice"), Options{StorageQuota: 1 << 20}, false)
	g, _, _ := newGroup(ctx, t, alice, "g")
	p, _ := writeFile(t, tmp, "big.bin", 4<<20)
	if _, err := alice.AddFiles(ctx, g.ID, []string{p}); !errors.Is(err, ErrQuota) {
		t.Fatalf("a 4 MiB copy under a 1 MiB quota: %v, want ErrQuota", err)
	}
	added, err := alice.AddFilesWith(ctx, g.ID, []string{p}, AddOptions{NoStoreCopy: true})
	if err != nil || added[0].Store != "reference" {
		t.Fatalf("a 4 MiB reference under a 1 MiB quota: %+v, %v", added, err)
	}
	var bad *BadInputError
	if _, err := alice.AddFilesWith(ctx, g.ID, []string{"big.bin"}, AddOptions{NoStoreCopy: true}); !errors.As(err, &bad) {
		t.Fatalf("a relative path: %v, want bad input", err)
	}
	if _, err := alice.AddFilesWith(ctx, g.ID, []string{tmp}, AddOptions{NoStoreCopy: true}); !errors.As(err, &bad) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory: %v, want bad input (not a regular file)", err)
	}
	if _, err := alice.AddFilesWith(ctx, g.ID, []string{filepath.Join(tmp, "missing")}, AddOptions{NoStoreCopy: true}); !errors.As(err, &bad) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file: %v, want bad input (not exist)", err)
	}
}

// TestAddFileNoStoreCopyHiddenEdit: an edit the store cannot see (bytes
// changed in place, size and mtime put back) makes alice send bytes that
// are not the file's; bob's download verifies every 16 KiB group, so it
// fails with nothing stored and no output written.
func TestAddFileNoStoreCopyHiddenEdit(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob")
	alice, bob := nodes[0], nodes[1]
	g, _, inv := newGroup(ctx, t, alice, "g")
	p, _ := writeFile(t, tmp, "archive.tar", 1<<20+3)
	added, err := alice.AddFilesWith(ctx, g.ID, []string{p}, AddOptions{NoStoreCopy: true})
	if err != nil || added[0].Store != "reference" {
		t.Fatalf("add: %+v, %v", added, err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	testnet.EditFile(t, p, 600<<10)
	if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	join(ctx, t, inv, bob)
	out := filepath.Join(tmp, "bob.tar")
	short, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = bob.GetFile(short, g.ID, key.RecordKey{}, "archive.tar", out, nil)
	if !errors.Is(err, blobsync.ErrNoProviders) {
		t.Fatalf("bob's get of bytes changed under alice's reference: %v, want no provider", err)
	}
	if ok, _ := bob.blobs.Has(added[0].Hash); ok {
		t.Fatal("bob stored the blob")
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bob's output exists (%v)", err)
	}
}
