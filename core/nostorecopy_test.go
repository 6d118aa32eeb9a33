package core

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
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
	// A temp dir on a file system that clones gets a clone of the
	// store's copy instead (blobsync's TestDownloadToClones).
	if fi.Export != "mirror" && fi.Export != "reflink" {
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

// storeDiskBytes is what the files of b's blob directory occupy on disk.
func storeDiskBytes(t *testing.T, b *Backend) int64 {
	t.Helper()
	des, err := os.ReadDir(b.blobs.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, de := range des {
		if fi, err := de.Info(); err == nil {
			n += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
	}
	return n
}

// TestGetFileNoStoreCopyChunked: bob, holding one chunked file of alice's
// (cut.mp4), gets another that shares most of its chunks (film.mp4)
// without a store copy: his output is the file (its BLAKE3 the whole
// hash), his store's disk grows by about nothing, the chunks only
// film.mp4 has are references into the output and the shared ones stay
// his own. He still serves film.mp4 to carol, from the output, and GC
// leaves it alone. Once he edits the output his store no longer holds
// those chunks (film.mp4 lists as not local, and reading it fetches them
// again), cut.mp4 still reads right, and a get of film.mp4 leaves the
// edited output alone.
func TestGetFileNoStoreCopyChunked(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 90*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob", "carol")
	alice, bob, carol := nodes[0], nodes[1], nodes[2]
	g, _, inv := newGroup(ctx, t, alice, "g")
	chunkOwnRepo(t, alice, g.ID)
	film, data := writeFile(t, tmp, "film.mp4", 24<<20+5)
	cutData := bytes.Clone(data[:16<<20])
	cut := filepath.Join(tmp, "cut.mp4")
	if err := os.WriteFile(cut, cutData, 0o600); err != nil {
		t.Fatal(err)
	}
	added, err := alice.AddFiles(ctx, g.ID, []string{film, cut})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range added {
		if a.chunks.IsZero() {
			t.Fatalf("%s is not chunked", a.Name)
		}
	}
	join(ctx, t, inv, bob, carol)
	getFile(ctx, t, bob, g.ID, "cut.mp4", filepath.Join(tmp, "bob-cut.mp4"), cutData)
	before := storeDiskBytes(t, bob)

	out := filepath.Join(tmp, "bob.mp4")
	fi, err := bob.GetFileWith(ctx, g.ID, key.RecordKey{}, "film.mp4", out, GetOptions{NoStoreCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	if fi.Export != "assemble-ref" {
		t.Fatalf("export %q, want assemble-ref", fi.Export)
	}
	if got, err := os.ReadFile(out); err != nil || blobsync.HashBytes(got) != fi.Hash || !bytes.Equal(got, data) {
		t.Fatalf("%s is not the file (%v)", out, err)
	}
	if sum := testnet.B3sum(t, out); sum != "" && sum != fi.Hash.String() {
		t.Fatalf("b3sum %s = %s, want %s", out, sum, fi.Hash)
	}
	after := storeDiskBytes(t, bob)
	if after-before > 2<<20 {
		t.Fatalf("bob's store grew by %d bytes on disk (%d -> %d) for a %d-byte file got without a store copy", after-before, before, after, fi.Size)
	}
	u, err := bob.blobs.Usage()
	if err != nil || u.RefBytes < int64(len(data))-int64(len(cutData))-(4<<20) || u.RefBytes > int64(len(data))-int64(len(cutData))+(4<<20) {
		t.Fatalf("bob's usage %+v, %v: want film.mp4's own chunks (about %d bytes) as references", u, err, len(data)-len(cutData))
	}
	t.Logf("bob's store on disk: %d bytes before the get, %d after; usage %+v", before, after, u)

	// bob serves film.mp4 to carol from his output.
	_, last := getFile(ctx, t, carol, g.ID, "film.mp4", filepath.Join(tmp, "carol.mp4"), data)
	var fromBob int64
	for _, p := range last.Providers {
		if p.Node == bob.NodeID().String() {
			fromBob = p.Bytes
		}
	}
	if fromBob == 0 {
		t.Fatalf("carol got nothing from bob after the get: %+v", last.Providers)
	}
	if _, err := bob.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testnet.B3sum(t, out); got != "" && got != fi.Hash.String() {
		t.Fatalf("GC changed %s", out)
	}
	if ok, err := bob.blobs.HasFile(fi.entry()); !ok || err != nil {
		t.Fatalf("after GC bob lacks film.mp4 (%v)", err)
	}

	// bob edits his output: his store no longer counts film.mp4's own
	// chunks as held (its listing says so), and reading it fetches them
	// again from alice.
	testnet.EditFile(t, out, int64(len(data))-1000)
	if ok, err := bob.blobs.HasFile(fi.entry()); ok || err != nil {
		t.Fatalf("after the edit bob's store holds film.mp4: %v, %v", ok, err)
	}
	if files, err := bob.ListFiles(ctx, g.ID); err != nil {
		t.Fatal(err)
	} else {
		for _, f := range files {
			if f.Name == "film.mp4" && f.Local {
				t.Fatalf("bob's listing shows film.mp4 local after the edit: %+v", f)
			}
		}
	}
	rc, _, err := bob.OpenFile(ctx, g.ID, key.RecordKey{}, "film.mp4")
	if err != nil {
		t.Fatalf("bob opens film.mp4 after the edit: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("bob reads film.mp4 after the edit: %d bytes, %v; want the file, fetched again", len(got), err)
	}
	rc, _, err = bob.OpenFile(ctx, g.ID, key.RecordKey{}, "cut.mp4")
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, cutData) {
		t.Fatalf("cut.mp4, which shares chunks with film.mp4, reads other bytes after the edit (%v)", err)
	}

	// A get fetches the refused chunks again and leaves the edited file be.
	again := filepath.Join(tmp, "bob-again.mp4")
	fi2, err := bob.GetFileWith(ctx, g.ID, key.RecordKey{}, "film.mp4", again, GetOptions{NoStoreCopy: true})
	if err != nil {
		t.Fatalf("get after the edit: %v", err)
	}
	if fi2.Export != "assemble-ref" {
		t.Fatalf("export after the edit %q, want assemble-ref", fi2.Export)
	}
	if got, err := os.ReadFile(again); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%s is not the file (%v)", again, err)
	}
	if got, err := os.ReadFile(out); err != nil || bytes.Equal(got, data) {
		t.Fatalf("the edited %s was replaced (%v)", out, err)
	}
}

// TestNoStoreCopyChunkedDisk measures the bytes on bob's disk (his blob
// directory and the output, allocated blocks) before and after a get of
// a chunked file of DWEB_DISK_MIB MiB (default 256) from alice, with and
// without the store copy, each get by a fresh node. A figure for
// docs/BENCHMARKS.md, not a check: it runs only with DWEB_DISK_FIGURE=1
// (go test ./core -run TestNoStoreCopyChunkedDisk -v).
func TestNoStoreCopyChunkedDisk(t *testing.T) {
	if os.Getenv("DWEB_DISK_FIGURE") != "1" {
		t.Skip("a measurement: set DWEB_DISK_FIGURE=1")
	}
	mib := 256
	if v, err := strconv.Atoi(os.Getenv("DWEB_DISK_MIB")); err == nil && v > 0 {
		mib = v
	}
	tmp := t.TempDir()
	ctx := testContext(t, 10*time.Minute)
	nodes := startNodes(t, tmp, "alice", "bob", "bob2")
	alice := nodes[0]
	g, _, inv := newGroup(ctx, t, alice, "g")
	chunkOwnRepo(t, alice, g.ID)
	p, _ := writeFile(t, tmp, "film.mp4", mib<<20)
	added, err := alice.AddFiles(ctx, g.ID, []string{p})
	if err != nil || added[0].chunks.IsZero() {
		t.Fatalf("add: %+v, %v", added, err)
	}
	join(ctx, t, inv, nodes[1], nodes[2])
	fileBytes := func(path string) int64 {
		fi, err := os.Stat(path)
		if err != nil {
			return 0
		}
		return fi.Sys().(*syscall.Stat_t).Blocks * 512
	}
	for i, noCopy := range []bool{false, true} {
		b := nodes[1+i]
		out := filepath.Join(tmp, fmt.Sprintf("out-%v.mp4", noCopy))
		before := storeDiskBytes(t, b) + fileBytes(out)
		start := time.Now()
		fi, err := b.GetFileWith(ctx, g.ID, key.RecordKey{}, "film.mp4", out, GetOptions{NoStoreCopy: noCopy})
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		store, outB := storeDiskBytes(t, b), fileBytes(out)
		u, _ := b.blobs.Usage()
		t.Logf(`{"mib":%d,"no_store_copy":%v,"export":%q,"disk_before":%d,"store_after":%d,"out_after":%d,"disk_after":%d,"usage_bytes":%d,"usage_ref_bytes":%d,"get_s":%.2f}`,
			mib, noCopy, fi.Export, before, store, outB, store+outB, u.Bytes, u.RefBytes, took.Seconds())
	}
}
