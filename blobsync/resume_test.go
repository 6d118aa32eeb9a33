package blobsync

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/store"
)

// tcpServer serves srv on 127.0.0.1 and counts the bytes it sends.
type tcpServer struct {
	ln   net.Listener
	sent atomic.Int64
	wg   sync.WaitGroup
}

func serveTCP(t testing.TB, srv *Store, opts ServeOptions) *tcpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &tcpServer{ln: ln}
	ctx, cancel := context.WithCancel(context.Background())
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				defer c.Close()
				srv.ServeWith(ctx, &countWriter{Conn: c, n: &ts.sent}, opts)
			}()
		}
	}()
	t.Cleanup(func() { cancel(); ln.Close(); ts.wg.Wait() })
	return ts
}

type countWriter struct {
	net.Conn
	n *atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

type tcpProvider struct{ addr string }

func (p tcpProvider) ID() string { return p.addr }
func (p tcpProvider) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", p.addr)
}

func openStoreAt(t testing.TB, dir string) (*Store, *store.DB) {
	t.Helper()
	db, err := store.Open(filepath.Join(dir, "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(db, filepath.Join(dir, "blobs"), StoreOptions{})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return s, db
}

// TestResumeChild is the download that TestDownloadResumeAfterKill runs in
// a child process and kills with SIGKILL.
func TestResumeChild(t *testing.T) {
	if os.Getenv("DWEB_RESUME_CHILD") == "" {
		t.Skip("run by TestDownloadResumeAfterKill")
	}
	h, err := ParseHash(os.Getenv("DWEB_RESUME_HASH"))
	if err != nil {
		t.Fatal(err)
	}
	s, db := openStoreAt(t, os.Getenv("DWEB_RESUME_DIR"))
	defer db.Close()
	_, err = s.Download(context.Background(), h, []Provider{tcpProvider{os.Getenv("DWEB_RESUME_ADDR")}}, DownloadOptions{ChunkBytes: 512 << 10, Progress: func(p Progress) {
		rs, err := s.loadRanges(h)
		fmt.Fprintf(os.Stderr, "child: %d verified, record %v (%v)\n", p.Done, rs, err)
	}})
	t.Fatalf("the child should be killed before it finishes (err %v)", err)
}

// TestDownloadResumeAfterKill: a download killed with SIGKILL mid-blob
// leaves a record that claims only groups whose bytes are on disk and
// correct; the restarted download fetches only the rest and matches b3sum.
func TestDownloadResumeAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process for a few seconds")
	}
	const size = 24 << 20
	data := content(size, 40)
	srv := newTestStore(t)
	h := addBlob(t, srv, data)
	// 8 MB/s: the child needs about 3 s for the blob.
	ts := serveTCP(t, srv, ServeOptions{Limit: NewPeerLimit(ServeLimits{UploadRate: 8e6})})
	dir := t.TempDir()

	cmd := exec.Command(os.Args[0], "-test.run=^TestResumeChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DWEB_RESUME_CHILD=1", "DWEB_RESUME_DIR="+dir,
		"DWEB_RESUME_HASH="+h.String(), "DWEB_RESUME_ADDR="+ts.ln.Addr().String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for ts.sent.Load() < size/2 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child did not get half the blob in time: %s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v\n%s", err, out.String())
	}
	sentBefore := ts.sent.Load()

	cl, db := openStoreAt(t, dir)
	defer db.Close()
	rec, err := cl.loadRanges(h)
	if err != nil {
		t.Fatal(err)
	}
	have := rec.Bytes(size)
	if have == 0 || have >= size {
		t.Fatalf("record after the kill covers %d of %d bytes (child got %d)\n%s", have, size, sentBefore, out.String())
	}
	// Every recorded group is on disk and correct.
	f, err := os.Open(cl.dataPath(h))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rec {
		lo, hi := c.Start*ChunkGroupSize, min(c.End*ChunkGroupSize, size)
		got := make([]byte, hi-lo)
		if _, err := f.ReadAt(got, int64(lo)); err != nil || !bytes.Equal(got, data[lo:hi]) {
			t.Fatalf("recorded groups %v are not the blob's bytes on disk (%v)", c, err)
		}
	}
	f.Close()
	if has(t, cl, h) {
		t.Fatal("partial blob reported complete")
	}

	var last Progress
	ts2 := serveTCP(t, srv, ServeOptions{})
	if _, err := cl.Download(context.Background(), h, []Provider{tcpProvider{ts2.ln.Addr().String()}}, DownloadOptions{Progress: func(p Progress) { last = p }}); err != nil {
		t.Fatal(err)
	}
	checkBlob(t, cl, h, data)
	missing := int64(size) - int64(have)
	fetched := ts2.sent.Load()
	// Fetched: the missing groups, their parents (64 bytes per group plus
	// the path above each range) and frame headers; nothing recorded again.
	if fetched < missing || fetched > missing+missing/200+64<<10 {
		t.Fatalf("resume fetched %d bytes; %d were missing (%d recorded)", fetched, missing, have)
	}
	if last.Resumed != int64(have) || last.Done != size {
		t.Fatalf("progress %+v, want resumed %d", last, have)
	}
	t.Logf("killed after %d bytes sent; %d recorded; resume fetched %d", sentBefore, have, fetched)
}
