package blobsync

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/store"
)

func newTestStoreOpts(t testing.TB, opts StoreOptions) *Store {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := OpenStore(db, filepath.Join(dir, "blobs"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestGC: a blob referenced by a root collection and a blob under download
// survive; an orphan (complete or partial) does not; the grace keeps fresh
// blobs.
func TestGC(t *testing.T) {
	ctx := context.Background()
	s := newTestStoreOpts(t, StoreOptions{GCGrace: -1})
	inColl := addBlob(t, s, content(100<<10, 1))
	orphan := addBlob(t, s, content(100<<10, 2))
	small := addBlob(t, s, []byte("orphan inline"))
	var c Collection
	c.Put(Entry{Name: "a.jpg", Hash: inColl, Size: 100 << 10})
	cb, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	coll := addBlob(t, s, cb)

	// A partial blob nobody downloads (orphan) and one under download.
	srv := newTestStore(t)
	big := content(8<<20, 3)
	hBig := addBlob(t, srv, big)
	orphanPart := addBlob(t, srv, content(4<<20, 4))
	slow := prov(t, "slow", srv)
	slow.opts.Limit = NewPeerLimit(ServeLimits{UploadRate: 4e6})
	dctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	s.Download(dctx, orphanPart, []Provider{slow}, DownloadOptions{})
	cancel()
	if e, found := entryOf(t, s, orphanPart); !found || e.State != statePartial {
		t.Fatalf("setup: no partial entry for the interrupted download")
	}
	dctx, cancel = context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := s.Download(dctx, hBig, []Provider{slow}, DownloadOptions{})
		done <- err
	}()
	// The download makes its entry at once; at 4 MB/s it runs for 2 s.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, found := entryOf(t, s, hBig); found {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("setup: the download under GC ended before it made its entry: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("setup: the download made no entry within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	removed, err := s.GC(ctx, func(yield func(Hash) bool) { yield(coll) })
	if err != nil {
		t.Fatal(err)
	}
	if removed != 3 {
		t.Errorf("removed %d, want 3 (orphan, inline orphan, orphan partial)", removed)
	}
	for h, want := range map[Hash]bool{coll: true, inColl: true, orphan: false, small: false} {
		if ok := has(t, s, h); ok != want {
			t.Errorf("after GC Has(%s) = %v, want %v", h, ok, want)
		}
	}
	if _, found := entryOf(t, s, orphanPart); found {
		t.Error("orphan partial blob survived GC")
	}
	if _, err := os.Stat(s.dataPath(orphan)); !os.IsNotExist(err) {
		t.Errorf("orphan data file still there: %v", err)
	}
	if _, found := entryOf(t, s, hBig); !found {
		t.Error("blob under download lost its entry")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the download under GC did not end within 10 s of its cancel")
	}
	// Not under download any more, not a root: collected. With a grace,
	// a fresh blob stays.
	if n, err := s.GC(ctx, func(yield func(Hash) bool) { yield(coll) }); err != nil || n != 1 {
		t.Errorf("second GC removed %d, %v; want the interrupted download", n, err)
	}
	g := newTestStore(t) // default grace
	addBlob(t, g, content(50<<10, 5))
	if n, err := g.GC(ctx, nil); err != nil || n != 0 {
		t.Errorf("GC with grace removed %d, %v", n, err)
	}
}

// TestAddFileRef: reference mode keeps no copy, serves and exports the
// app's file, refuses it once it changed, and Delete leaves it alone.
func TestAddFileRef(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	data := content(300<<10, 6)
	path := writeTemp(t, data)
	h, n, err := s.AddFileRef(ctx, path)
	if err != nil || n != int64(len(data)) || h != HashBytes(data) {
		t.Fatalf("AddFileRef: %s %d %v", h, n, err)
	}
	if _, err := os.Stat(s.dataPath(h)); !os.IsNotExist(err) {
		t.Fatalf("reference mode copied the data: %v", err)
	}
	// Served to another store, verified there.
	cl := newTestStore(t)
	if _, err := cl.Download(ctx, h, []Provider{prov(t, "ref", s)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	checkBlob(t, cl, h, data)
	checkBlob(t, s, h, data)
	// Changed: refused.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(h); err == nil {
		t.Fatal("Open of a changed referenced file succeeded")
	}
	if err := s.Delete(h); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || len(b) != len(data) {
		t.Fatalf("Delete touched the app's file: %v", err)
	}
}
