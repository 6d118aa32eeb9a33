package blobsync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDownloadTo: a get to a path writes the file as the verified bytes
// arrive, from two providers one of them lying (ExportMirrored: nothing
// read back from the store, which keeps its own copy); a blob the store
// held in part before (a resumed download) or whole, or a small one, is
// written from the store; a download that fails leaves neither dst nor a
// temp file.
func TestDownloadTo(t *testing.T) {
	ctx := context.Background()
	data := content(9<<20+77, 41)
	srvA, srvB := newTestStore(t), newTestStore(t)
	h := addBlob(t, srvA, data)
	addBlob(t, srvB, data)
	liar := withFault(prov(t, "liar", srvA), func(_ int, c net.Conn) io.ReadWriteCloser {
		return &flipAt{Conn: c, off: 700 << 10}
	})
	dir := t.TempDir()
	check := func(name string, want []byte) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes (%v), want the blob's %d", name, len(got), err, len(want))
		}
		left, _ := filepath.Glob(filepath.Join(dir, ".*.part"))
		if len(left) > 0 {
			t.Fatalf("temp files left: %v", left)
		}
	}

	cl := newTestStore(t)
	want := ExportMirrored
	if cl.clonesInto(dir) {
		want = exportReflink // one file system that clones: TestDownloadToClones
	}
	m, err := cl.DownloadTo(ctx, h, []Provider{liar, prov(t, "honest", srvB)}, DownloadOptions{ChunkBytes: 1 << 20}, filepath.Join(dir, "one.bin"))
	if err != nil || m != want {
		t.Fatalf("DownloadTo: %v, %v; want %v", m, err, want)
	}
	check("one.bin", data)
	checkBlob(t, cl, h, data)

	// Held already: written from the store.
	if m, err = cl.DownloadTo(ctx, h, nil, DownloadOptions{}, filepath.Join(dir, "again.bin")); err != nil || m == ExportMirrored {
		t.Fatalf("DownloadTo of a held blob: %v, %v", m, err)
	}
	check("again.bin", data)

	// Resumed: the first try dies after 3 MiB; the second verifies only
	// the rest, so the file comes from the store.
	cl2 := newTestStore(t)
	dying := withFault(prov(t, "dying", srvB), func(_ int, c net.Conn) io.ReadWriteCloser {
		return &dieAfter{Conn: c, left: 3 << 20}
	})
	if _, err := cl2.DownloadTo(ctx, h, []Provider{dying}, DownloadOptions{}, filepath.Join(dir, "cut.bin")); err == nil {
		t.Fatal("a download whose only provider dies succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "cut.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dst after a failed download: %v", err)
	}
	check("one.bin", data) // no temp file left
	if m, err = cl2.DownloadTo(ctx, h, []Provider{prov(t, "honest2", srvB)}, DownloadOptions{}, filepath.Join(dir, "cut.bin")); err != nil || m == ExportMirrored {
		t.Fatalf("resumed DownloadTo: %v, %v; want a copy from the store", m, err)
	}
	check("cut.bin", data)

	small := content(9000, 42)
	hs := addBlob(t, srvB, small)
	if _, err = newTestStore(t).DownloadTo(ctx, hs, []Provider{prov(t, "honest3", srvB)}, DownloadOptions{}, filepath.Join(dir, "small.bin")); err != nil {
		t.Fatal(err)
	}
	check("small.bin", small)
}

// TestMirrorWritesInParallel: the lanes of a download write their buffers
// to the mirror at the same time; the mirror does not make one wait for
// the other's device write. The writer here lets a write return only once
// another one is in flight (or fails it after 5 s).
func TestMirrorWritesInParallel(t *testing.T) {
	w := &pairedWriter{in: make(chan struct{}, 2)}
	m := NewMirror(w)
	errs := make(chan bool, 2)
	for i := range 2 {
		go func() { errs <- m.write(make([]byte, 100), int64(i)*100) }()
	}
	for range 2 {
		if !<-errs {
			t.Fatalf("a write failed: %v (the two were not in flight at once)", m.Err())
		}
	}
	if m.Err() != nil {
		t.Fatal(m.Err())
	}
}

// pairedWriter's WriteAt waits until two calls have entered it.
type pairedWriter struct{ in chan struct{} }

func (p *pairedWriter) WriteAt(b []byte, off int64) (int, error) {
	p.in <- struct{}{}
	deadline := time.After(5 * time.Second)
	for len(p.in) < 2 {
		select {
		case <-deadline:
			return 0, errors.New("the other write never came")
		case <-time.After(time.Millisecond):
		}
	}
	return len(b), nil
}
