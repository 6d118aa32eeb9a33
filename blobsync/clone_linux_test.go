package blobsync

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	lblake3 "lukechampine.com/blake3"
	"lukechampine.com/blake3/bao"
)

// TestAddFileClones: on a file system that clones files, AddFile keeps
// its copy by reflink: the right hash and outboard, next to no new space
// used for the data, and a copy of its own that an edit of the source in
// place leaves as it was.
func TestAddFileClones(t *testing.T) {
	dir := cowDir(t)
	s := newStoreIn(t, dir)
	const n = 32<<20 + 12345
	b := content(n, 7)
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, b, 0o600); err != nil {
		t.Fatal(err)
	}
	syscall.Sync()
	before := freeBytes(t, dir)
	h, size, err := s.AddFile(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if want := Hash(lblake3.Sum256(b)); h != want || size != n {
		t.Fatalf("AddFile = %s, %d; want %s, %d", h, size, want, n)
	}
	syscall.Sync()
	if used := before - freeBytes(t, dir); used > n/4 {
		t.Fatalf("the import took %d bytes of space for a %d-byte file: copied, not cloned", used, n)
	}
	// Edit the source in place: the store's copy must not follow.
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xee}, 1<<20), 5<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadAll(h, n)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("the store's copy after the source's edit: %v, equal=%v", err, bytes.Equal(got, b))
	}
	ob, err := outboardOf(s, h)
	if want, _ := bao.EncodeBuf(b, ChunkGroupLog, true); err != nil || !bytes.Equal(ob, want) {
		t.Fatalf("the outboard differs from bao.EncodeBuf's (%v)", err)
	}
	if names := dirFiles(t, s); len(names) != 2 {
		t.Fatalf("the store's dir holds %v, want the blob's data and outboard only", names)
	}
}

// freeBytes is the space free to root on dir's file system.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bfree) * st.Bsize
}

// TestDownloadToClones: where the store's files clone into the
// destination's directory, a get to a path writes the bytes once, into
// the store, and clones them to the path ("reflink"), the store keeping
// its copy; a destination on another file system is mirrored as before.
func TestDownloadToClones(t *testing.T) {
	ctx := context.Background()
	dir := cowDir(t)
	const n = 24<<20 + 999
	data := content(n, 43)
	srv := newTestStore(t)
	h := addBlob(t, srv, data)
	cl := newStoreIn(t, dir)
	syscall.Sync()
	before := freeBytes(t, dir)
	m, err := cl.DownloadTo(ctx, h, []Provider{prov(t, "srv", srv)}, DownloadOptions{}, filepath.Join(dir, "got.bin"))
	if err != nil || m != exportReflink {
		t.Fatalf("DownloadTo: %v, %v; want %v", m, err, exportReflink)
	}
	syscall.Sync()
	if used := before - freeBytes(t, dir); used > n+n/4 {
		t.Fatalf("the get took %d bytes of space for a %d-byte blob: written twice", used, n)
	}
	got, err := os.ReadFile(filepath.Join(dir, "got.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("got.bin: %d bytes (%v), want the blob's %d", len(got), err, n)
	}
	checkBlob(t, cl, h, data)
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.part")); len(left) > 0 {
		t.Fatalf("temp files left: %v", left)
	}

	// Another file system (the temp dir's, when it does not clone): the
	// mirror, as before.
	other := t.TempDir()
	if canClone(t, other) {
		return
	}
	cl2 := newStoreIn(t, dir)
	if m, err = cl2.DownloadTo(ctx, h, []Provider{prov(t, "srv2", srv)}, DownloadOptions{}, filepath.Join(other, "got.bin")); err != nil || m != ExportMirrored {
		t.Fatalf("DownloadTo across file systems: %v, %v; want %v", m, err, ExportMirrored)
	}
}
