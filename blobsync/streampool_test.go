package blobsync

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestStreamPoolReuse: downloads one after another from a pooled provider
// share one stream (one open, answers still verified); DownloadBatch's
// children sessions take and give back the same stream.
func TestStreamPoolReuse(t *testing.T) {
	ctx := context.Background()
	srv := newTestStore(t)
	var blobs [][]byte
	var hashes []Hash
	for i := range 4 {
		b := content(100<<10+i*7000, uint64(60+i))
		blobs, hashes = append(blobs, b), append(hashes, addBlob(t, srv, b))
	}
	pool := NewStreamPool(0, 0)
	defer pool.Close()
	p := prov(t, "a", srv)
	pp := pool.Provider(p)
	cl := newTestStore(t)
	for i, h := range hashes {
		if _, err := cl.Download(ctx, h, []Provider{pp}, DownloadOptions{ChunkBytes: 2 * ChunkGroupSize}); err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
		checkBlob(t, cl, h, blobs[i])
	}
	if n := p.opens.Load(); n != 1 {
		t.Fatalf("the provider opened %d streams for 4 downloads, want 1", n)
	}
	if st := pool.Stats(); st.Opened != 1 || st.Reused != 3 {
		t.Fatalf("pool stats %+v, want 1 opened, 3 reused", st)
	}

	// A collection of small files: children requests on the pooled stream.
	c := &Collection{}
	for i, h := range hashes {
		c.Entries = append(c.Entries, Entry{Name: string(rune('a' + i)), Hash: h, Size: int64(len(blobs[i]))})
	}
	cb, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ch := addBlob(t, srv, cb)
	cl2 := newTestStore(t)
	if _, err := cl2.DownloadCollection(ctx, ch, []Provider{pp}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, h := range hashes {
		checkBlob(t, cl2, h, blobs[i])
	}
	if n := p.opens.Load(); n != 1 {
		t.Fatalf("after the collection: %d streams opened, want still 1", n)
	}
}

// TestStreamPoolDropsBadStreams: the stream of a provider that lied is not
// kept; a kept stream that broke while idle costs one retry, then a fresh
// stream is opened; idle streams close after the idle timeout.
func TestStreamPoolDropsBadStreams(t *testing.T) {
	ctx := context.Background()
	srv := newTestStore(t)
	b := content(300<<10, 70)
	h := addBlob(t, srv, b)

	// A liar (flips a byte of its first stream, in its second chunk) and
	// an honest provider whose answers are held back until the liar has
	// lied: otherwise the honest one may serve the whole blob before the
	// liar's lie is read (the liar then ends clean and is rightly kept),
	// or be cut answering an end-game duplicate of the liar's first chunk
	// (rightly closed).
	pool := NewStreamPool(0, 0)
	defer pool.Close()
	liar, good := prov(t, "liar", srv), prov(t, "good", srv)
	lied := make(chan struct{})
	liar.fault = func(n int, c net.Conn) io.ReadWriteCloser {
		if n == 0 {
			return &flipAt{Conn: c, off: 40 << 10, onFlip: func() { close(lied) }}
		}
		return c
	}
	good.fault = func(n int, c net.Conn) io.ReadWriteCloser { return &gatedConn{Conn: c, open: lied} }
	cl := newTestStore(t)
	if _, err := cl.Download(ctx, h, []Provider{pool.Provider(liar), pool.Provider(good)}, DownloadOptions{ChunkBytes: 2 * ChunkGroupSize}); err != nil {
		t.Fatal(err)
	}
	checkBlob(t, cl, h, b)
	// A stream taken from the pool is closed before any check fails, so
	// that its server ends and the test's cleanup does not wait for it.
	sl, sg := pool.take("liar"), pool.take("good")
	for _, s := range []*pooledStream{sl, sg} {
		if s != nil {
			s.closeIdle()
		}
	}
	if sl != nil {
		t.Fatal("the liar's stream was kept")
	}
	if sg == nil {
		t.Fatal("the honest provider's stream was not kept")
	}

	// A kept stream that dies while idle.
	var first net.Conn
	p := prov(t, "p", srv)
	p.fault = func(n int, c net.Conn) io.ReadWriteCloser {
		if n == 0 {
			first = c
		}
		return c
	}
	pp := pool.Provider(p)
	if _, err := newTestStore(t).Download(ctx, h, []Provider{pp}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	first.Close() // the peer went away while the stream sat in the pool
	cl2 := newTestStore(t)
	if _, err := cl2.Download(ctx, h, []Provider{pp}, DownloadOptions{}); err != nil {
		t.Fatalf("download over a dead kept stream: %v", err)
	}
	checkBlob(t, cl2, h, b)
	if n := p.opens.Load(); n != 2 {
		t.Fatalf("%d streams opened, want 2 (the dead one, then a fresh one)", n)
	}

	// Idle timeout: the kept stream is closed, so the server's session ends.
	short := NewStreamPool(1, 20*time.Millisecond)
	defer short.Close()
	q := prov(t, "q", srv)
	if _, err := newTestStore(t).Download(ctx, h, []Provider{short.Provider(q)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle stream was not closed after its timeout")
	}
	if s := short.take("q"); s != nil {
		t.Fatal("an expired stream is still in the pool")
	}
}

// gatedConn holds back reads until open is closed, or for 10 s at most
// (so that a test whose gate never opens fails instead of hanging).
type gatedConn struct {
	net.Conn
	open <-chan struct{}
}

func (g *gatedConn) Read(p []byte) (int, error) {
	select {
	case <-g.open:
	case <-time.After(10 * time.Second):
	}
	return g.Conn.Read(p)
}

// fakeStream is a stream that only records Close.
type fakeStream struct{ closed atomic.Bool }

func (f *fakeStream) Read([]byte) (int, error)  { return 0, io.EOF }
func (f *fakeStream) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }
func (f *fakeStream) Close() error              { f.closed.Store(true); return nil }

type fakeProvider struct{ opened []*fakeStream }

func (p *fakeProvider) ID() string { return "x" }
func (p *fakeProvider) Open(context.Context) (io.ReadWriteCloser, error) {
	s := new(fakeStream)
	p.opened = append(p.opened, s)
	return s, nil
}

// TestStreamPoolCloseAlone: a stream cut because its download ended
// (closeAlone) leaves the provider's idle streams in the pool; a stream
// that failed (plain Close) takes them down; kept streams beyond maxIdle
// are closed.
func TestStreamPoolCloseAlone(t *testing.T) {
	ctx := context.Background()
	pool := NewStreamPool(2, time.Minute)
	defer pool.Close()
	fp := new(fakeProvider)
	pp := pool.Provider(fp)
	var open []io.ReadWriteCloser
	for range 4 {
		rw, err := pp.Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, rw)
	}
	for _, rw := range open[:3] { // the third is one more than maxIdle
		rw.(keeper).keepOnClose()
		rw.Close()
	}
	if !fp.opened[2].closed.Load() || fp.opened[0].closed.Load() || fp.opened[1].closed.Load() {
		t.Fatal("want the first two kept and the third closed")
	}
	open[3].(keeper).closeAlone()
	if !fp.opened[3].closed.Load() || fp.opened[0].closed.Load() || fp.opened[1].closed.Load() {
		t.Fatal("closeAlone: want that stream closed and the idle ones kept")
	}
	rw, err := pp.Open(ctx) // an idle one
	if err != nil || len(fp.opened) != 4 {
		t.Fatalf("Open with idle streams opened a new one (%d opened, %v)", len(fp.opened), err)
	}
	rw.Close() // failed: the other idle stream goes too
	if !fp.opened[0].closed.Load() || !fp.opened[1].closed.Load() {
		t.Fatal("a failed stream left the provider's idle streams open")
	}
	if st := pool.Stats(); st.Opened != 4 || st.Reused != 1 {
		t.Fatalf("stats %+v, want 4 opened, 1 reused", st)
	}
}

// TestEndGameSparesOnTimeTasks: three equal providers behind 8 MB/s
// links, four blobs one after another. A task that is merely older than
// 50 ms is on time on such a link; the end game duplicates only tasks
// late against the typical task time, so at each blob's end no stream is
// still answering a duplicate, and the streams are kept for the next blob
// rather than cut.
func TestEndGameSparesOnTimeTasks(t *testing.T) {
	ctx := context.Background()
	pool := NewStreamPool(0, 0)
	defer pool.Close()
	var datas [][]byte
	var hashes []Hash
	var raw []*pipeProvider
	var provs []Provider
	for i := range 3 {
		srv := newTestStore(t)
		for j := range 4 {
			b := content(6<<20+j*999, uint64(80+j))
			h := addBlob(t, srv, b)
			if i == 0 {
				datas, hashes = append(datas, b), append(hashes, h)
			}
		}
		p := prov(t, string(rune('a'+i)), srv)
		p.opts = ServeOptions{Limit: NewPeerLimit(ServeLimits{UploadRate: 8e6})}
		raw, provs = append(raw, p), append(provs, pool.Provider(p))
	}
	cl := newTestStore(t)
	for i, h := range hashes {
		if _, err := cl.Download(ctx, h, provs, DownloadOptions{SizeHint: int64(len(datas[i]))}); err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
		checkBlob(t, cl, h, datas[i])
	}
	var opens int32
	for _, p := range raw {
		opens += p.opens.Load()
	}
	// One stream per provider; a late task now and then may cost one more.
	if st := pool.Stats(); opens > 4 || st.Reused < 8 {
		t.Fatalf("%d streams opened for 4 blobs from 3 providers (pool %+v), want about 3", opens, st)
	}
}
