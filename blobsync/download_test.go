package blobsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// pipeProvider serves srv over a fresh net.Pipe on every Open. fault, if
// set, wraps the client end of the n-th stream (n counts from 0).
type pipeProvider struct {
	id    string
	srv   *Store
	opts  ServeOptions
	fault func(n int, c net.Conn) io.ReadWriteCloser
	opens atomic.Int32
	read  atomic.Int64 // bytes the client read over all its streams
	wg    sync.WaitGroup
}

// prov returns a provider for srv whose server goroutines are waited for
// before srv's database closes.
func prov(t testing.TB, id string, srv *Store) *pipeProvider {
	p := &pipeProvider{id: id, srv: srv}
	t.Cleanup(p.wg.Wait)
	return p
}

func (p *pipeProvider) ID() string { return p.id }

func (p *pipeProvider) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	a, b := net.Pipe()
	sctx, cancel := context.WithCancel(context.Background())
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.srv.ServeWith(sctx, a, p.opts)
		a.Close()
		cancel()
	}()
	n := int(p.opens.Add(1)) - 1
	var rw io.ReadWriteCloser = b
	if p.fault != nil {
		rw = p.fault(n, b)
	}
	return &countRW{ReadWriteCloser: rw, n: &p.read, close: cancel}, nil
}

type countRW struct {
	io.ReadWriteCloser
	n     *atomic.Int64
	close func()
}

func (c *countRW) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countRW) Close() error {
	c.close()
	return c.ReadWriteCloser.Close()
}

// flipAt flips one bit of the byte at stream offset off of what the client
// reads.
type flipAt struct {
	net.Conn
	off, at int64
	flipped *atomic.Bool // if not nil, set once the byte is flipped
	onFlip  func()       // if not nil, called once the byte is flipped
}

func (f *flipAt) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	if f.off >= f.at && f.off < f.at+int64(n) {
		p[f.off-f.at] ^= 0x40
		if f.flipped != nil {
			f.flipped.Store(true)
		}
		if f.onFlip != nil {
			f.onFlip()
		}
	}
	f.at += int64(n)
	return n, err
}

// dieAfter makes the stream fail once the client has read n bytes.
type dieAfter struct {
	net.Conn
	left int64
}

func (d *dieAfter) Read(p []byte) (int, error) {
	if d.left <= 0 {
		d.Conn.Close()
		return 0, errors.New("test: provider died")
	}
	if int64(len(p)) > d.left {
		p = p[:d.left]
	}
	n, err := d.Conn.Read(p)
	d.left -= int64(n)
	return n, err
}

func addBlob(t testing.TB, s *Store, b []byte) Hash {
	t.Helper()
	h, err := s.AddBytes(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkBlob exports h from s and compares it with b3sum's hash (when b3sum
// is installed) and zeebo/blake3's.
func checkBlob(t testing.TB, s *Store, h Hash, want []byte) {
	t.Helper()
	p := t.TempDir() + "/out"
	if err := s.Export(context.Background(), h, p); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if Hash(blake3.Sum256(got)) != h || len(got) != len(want) {
		t.Fatalf("exported blob hashes to %x (%d bytes), want %s (%d bytes)", blake3.Sum256(got), len(got), h, len(want))
	}
	if out, err := exec.Command("b3sum", "--no-names", p).Output(); err == nil {
		if strings.TrimSpace(string(out)) != h.String() {
			t.Fatalf("b3sum %s, want %s", out, h)
		}
	}
}

func provOf(ps []ProviderProgress, id string) ProviderProgress {
	for _, p := range ps {
		if p.ID == id {
			return p
		}
	}
	return ProviderProgress{}
}

// holders returns n providers "a", "b", ... each with its own store that
// holds data, serving at rate bytes/s each (0: no limit), and data's hash.
func holders(t *testing.T, n int, data []byte, rate int64) ([]Provider, Hash) {
	var provs []Provider
	var h Hash
	for i := range n {
		srv := newTestStore(t)
		h = addBlob(t, srv, data)
		p := prov(t, string(rune('a'+i)), srv)
		if rate > 0 {
			p.opts = ServeOptions{Limit: NewPeerLimit(ServeLimits{UploadRate: rate})}
		}
		provs = append(provs, p)
	}
	return provs, h
}

// TestDownloadManyProviders: one blob split across three providers; every
// provider does part of the work; the progress events end at the total.
func TestDownloadManyProviders(t *testing.T) {
	data := content(12<<20+777, 31)
	provs, h := holders(t, 3, data, 0)
	cl := newTestStore(t)
	var mu sync.Mutex
	var last Progress
	n, err := cl.Download(context.Background(), h, provs, DownloadOptions{ChunkBytes: 256 << 10, Pipeline: 2, Progress: func(p Progress) {
		mu.Lock()
		last = p
		mu.Unlock()
	}})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("download: %d, %v", n, err)
	}
	checkBlob(t, cl, h, data)
	if !last.Finished || last.Done != int64(len(data)) || last.Total != int64(len(data)) {
		t.Fatalf("last progress %+v", last)
	}
	var sum int64
	for _, p := range last.Providers {
		if p.Bytes == 0 {
			t.Errorf("provider %s did no work: %+v", p.ID, last.Providers)
		}
		sum += p.Bytes
	}
	if sum != int64(len(data)) {
		t.Errorf("providers sent %d new bytes in all, want %d", sum, len(data))
	}
	if !has(t, cl, h) {
		t.Fatal("not complete after download")
	}
	if b, err := cl.db.Get(rangesKey(h)); err == nil {
		t.Fatalf("range record left after completion: %x", b)
	}
}

// TestDownloadSmallBlobShared: a blob of less than two default chunks,
// from three providers at 8 MB/s each, is cut finer (chunkGroups), so
// every provider sends a share instead of the first taking the whole blob.
func TestDownloadSmallBlobShared(t *testing.T) {
	data := content(6<<20+99, 36)
	provs, h := holders(t, 3, data, 8e6)
	cl := newTestStore(t)
	var last Progress
	if _, err := cl.Download(context.Background(), h, provs, DownloadOptions{Progress: func(p Progress) { last = p }}); err != nil {
		t.Fatal(err)
	}
	checkBlob(t, cl, h, data)
	var sum int64
	for _, p := range last.Providers {
		if p.Bytes < MinChunkBytes {
			t.Errorf("provider %s sent %d new bytes, less than one chunk: %+v", p.ID, p.Bytes, last.Providers)
		}
		sum += p.Bytes
	}
	if sum != int64(len(data)) {
		t.Errorf("providers sent %d new bytes in all, want %d", sum, len(data))
	}
}

// TestDownloadSlowProviderTakenOver: of two providers, one at 40 MB/s and
// one at 500 KB/s, the slow one's chunks turn late against the typical
// task time and the fast one duplicates them (end game), so the blob does
// not wait the 4 s the slow one's first chunks alone would take.
func TestDownloadSlowProviderTakenOver(t *testing.T) {
	data := content(8<<20+3, 37)
	provs, h := holders(t, 2, data, 40e6)
	provs[1].(*pipeProvider).opts.Limit = NewPeerLimit(ServeLimits{UploadRate: 500e3})
	cl := newTestStore(t)
	var last Progress
	t0 := time.Now()
	if _, err := cl.Download(context.Background(), h, provs, DownloadOptions{Progress: func(p Progress) { last = p }}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	checkBlob(t, cl, h, data)
	if took > 2*time.Second {
		t.Fatalf("the download took %v: the slow provider held it up", took)
	}
	if slow := provOf(last.Providers, "b"); slow.Bytes > 1<<20 {
		t.Fatalf("the slow provider delivered %d bytes: its chunks were not taken over (%+v)", slow.Bytes, last.Providers)
	}
}

func TestChunkGroups(t *testing.T) {
	for _, c := range []struct {
		size      int64
		providers int
		chunk     int64 // option
		want      uint64
	}{
		{1 << 30, 1, 0, 256},       // one provider: whole 4 MiB chunks
		{16 << 20, 1, 0, 256},      // whatever the size
		{1 << 30, 3, 0, 256},       // large blob: 4 MiB chunks
		{16 << 20, 3, 0, 43},       // 1024 groups in 24 pieces
		{3 << 20, 3, 0, 16},        // not below 256 KiB
		{16 << 20, 2, 64 << 10, 4}, // nor above ChunkBytes
		{16 << 20, 2, 1, 1},        // which may be less than 256 KiB
	} {
		o := DownloadOptions{ChunkBytes: c.chunk}
		o.defaults()
		d := &download{opts: &o, providers: c.providers, groups: numGroups(uint64(c.size))}
		if got := d.chunkGroups(); got != c.want {
			t.Errorf("%d bytes, %d providers, ChunkBytes %d: chunk of %d groups, want %d", c.size, c.providers, c.chunk, got, c.want)
		}
	}
}

// TestDownloadLiarCaught: a provider that flips one byte is banned at the
// first bad group; its ranges come from the honest provider; the result
// matches b3sum.
func TestDownloadLiarCaught(t *testing.T) {
	data := content(8<<20+5, 32)
	srvA, srvB := newTestStore(t), newTestStore(t)
	h := addBlob(t, srvA, data)
	addBlob(t, srvB, data)
	const flip = 300 << 10
	liar := withFault(prov(t, "liar", srvA), func(_ int, c net.Conn) io.ReadWriteCloser {
		return &flipAt{Conn: c, off: flip}
	})
	honest := prov(t, "honest", srvB)
	cl := newTestStore(t)
	var last Progress
	_, err := cl.Download(context.Background(), h, []Provider{liar, honest}, DownloadOptions{ChunkBytes: 1 << 20, Progress: func(p Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, cl, h, data)
	l := provOf(last.Providers, "liar")
	if l.State != "banned" || !strings.Contains(l.Err, "failed verification") {
		t.Fatalf("liar state %+v", l)
	}
	// Caught within one group: it is credited with no more than the bytes
	// it sent before the flipped one.
	if l.Bytes > flip {
		t.Fatalf("liar credited with %d bytes, flip at %d", l.Bytes, flip)
	}
	if liar.opens.Load() != 1 {
		t.Fatalf("liar opened %d times after being banned", liar.opens.Load())
	}
}

// TestDownloadProviderDies: the only provider's stream breaks mid-blob;
// reopening it costs a re-request of the unverified rest, not the blob.
func TestDownloadProviderDies(t *testing.T) {
	data := content(6<<20+100, 33)
	srv := newTestStore(t)
	h := addBlob(t, srv, data)
	p := withFault(prov(t, "flaky", srv), func(n int, c net.Conn) io.ReadWriteCloser {
		if n == 0 {
			return &dieAfter{Conn: c, left: 2<<20 + 5000}
		}
		return c
	})
	cl := newTestStore(t)
	if _, err := cl.Download(context.Background(), h, []Provider{p}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	checkBlob(t, cl, h, data)
	if p.opens.Load() != 2 {
		t.Fatalf("opened %d times, want 2", p.opens.Load())
	}
	// Stream overhead: parents (64 bytes per 16 KiB) and frames; waste: at
	// most the one group cut in half.
	if max := int64(len(data)) + int64(len(data))/200 + ChunkGroupSize + 4096; p.read.Load() > max {
		t.Fatalf("read %d bytes for a %d-byte blob (max %d)", p.read.Load(), len(data), max)
	}
}

// TestDownloadMissingAndSmall: a provider without the blob is skipped;
// small (inline) and empty blobs download too.
func TestDownloadMissingAndSmall(t *testing.T) {
	for _, n := range []int{0, 1, 1000, ChunkGroupSize, ChunkGroupSize + 1} {
		data := content(n, 34)
		srv := newTestStore(t)
		h := addBlob(t, srv, data)
		none := prov(t, "none", newTestStore(t))
		cl := newTestStore(t)
		var last Progress
		got, err := cl.Download(context.Background(), h, []Provider{none, prov(t, "ok", srv)}, DownloadOptions{Progress: func(p Progress) { last = p }})
		if err != nil || got != int64(n) {
			t.Fatalf("%d: download %d, %v", n, got, err)
		}
		b, err := cl.ReadAll(h, 1<<30)
		if err != nil || string(b) != string(data) {
			t.Fatalf("%d: read back %v", n, err)
		}
		if s := provOf(last.Providers, "none").State; s != "missing" && s != "idle" {
			t.Fatalf("%d: provider without the blob is %q", n, s)
		}
	}
	cl := newTestStore(t)
	var last Progress
	_, err := cl.Download(context.Background(), HashBytes([]byte("nobody")), []Provider{prov(t, "x", newTestStore(t))}, DownloadOptions{Progress: func(p Progress) { last = p }})
	if !errors.Is(err, ErrNoProviders) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("no holder: %v", err)
	}
	if s := provOf(last.Providers, "x").State; s != "missing" || !last.Finished {
		t.Fatalf("provider without the blob: %q, %+v", s, last)
	}
}

func withFault(p *pipeProvider, f func(n int, c net.Conn) io.ReadWriteCloser) *pipeProvider {
	p.fault = f
	return p
}

// TestHaveAndPartialServe: a have query answers all groups for a complete
// blob and the recorded ranges for a partial one; a partial holder serves
// the ranges it holds (and refuses the others), so a third node can
// download from it and from a complete holder together.
func TestHaveAndPartialServe(t *testing.T) {
	ctx := context.Background()
	data := content(6<<20, 41)
	full := newTestStore(t)
	h := addBlob(t, full, data)
	conn, _ := servePipe(t, full, nil)
	size, held, err := Have(ctx, conn, h)
	if err != nil || size != int64(len(data)) || len(held) != 1 || held[0] != (ChunkRange{0, numGroups(uint64(len(data)))}) {
		t.Fatalf("have on complete: %d %v %v", size, held, err)
	}
	if _, _, err := Have(ctx, conn, HashBytes([]byte("x"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("have on absent: %v", err)
	}

	// An interrupted download leaves a partial holder.
	part := newTestStore(t)
	slow := prov(t, "slow", full)
	slow.opts.Limit = NewPeerLimit(ServeLimits{UploadRate: 4e6})
	dctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	part.Download(dctx, h, []Provider{slow}, DownloadOptions{ChunkBytes: 256 << 10})
	cancel()
	rec := rangesOf(t, part, h)
	pc, _ := servePipe(t, part, nil)
	size, held, err = Have(ctx, pc, h)
	if err != nil || size != int64(len(data)) || len(rec) == 0 || fmt.Sprint(held) != fmt.Sprint(rec) {
		t.Fatalf("have on partial: %d %v %v (record %v)", size, held, err, rec)
	}
	if has(t, part, h) {
		t.Fatal("partial blob is Has")
	}
	// A whole-blob Fetch from the partial holder is refused.
	if _, err := newTestStore(t).Fetch(ctx, pc, h, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("whole fetch from a partial holder: %v", err)
	}
	third := newTestStore(t)
	pp, fp := prov(t, "partial", part), prov(t, "full", full)
	fp.opts.Limit = NewPeerLimit(ServeLimits{UploadRate: 20e6})
	var last Progress
	if _, err := third.Download(ctx, h, []Provider{pp, fp}, DownloadOptions{ChunkBytes: 256 << 10, Progress: func(p Progress) { last = p }}); err != nil {
		t.Fatal(err)
	}
	checkBlob(t, third, h, data)
	if provOf(last.Providers, "partial").Bytes == 0 {
		t.Fatalf("the partial holder served nothing: %+v", last.Providers)
	}
}

// countWrites counts the writes of the client end of a stream: requests
// written together count once.
type countWrites struct {
	net.Conn
	n *atomic.Int32
}

func (c countWrites) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// TestDownloadSizeHint: with the size known beforehand, the size probe and
// (a lone provider) the first chunk go out with the have query: one write,
// and two round trips less. A wrong or absurd hint costs only that, and a
// provider that lacks the hinted last group still serves what it holds.
func TestDownloadSizeHint(t *testing.T) {
	data := content(1<<20+5, 42)
	srv := newTestStore(t)
	h := addBlob(t, srv, data)
	size := int64(len(data))
	for _, c := range []struct {
		hint   int64
		writes int32 // have (+ probe + first chunk), probe, one get
	}{
		{0, 3},
		{size, 1},
		{size - 3, 1}, // the same last group: it proves the real size
		{size + 1<<20, 3},
		{1, 3},
		{MaxBlobSize + 1, 3}, // ignored
	} {
		var writes atomic.Int32
		p := withFault(prov(t, "p", srv), func(_ int, c net.Conn) io.ReadWriteCloser {
			return countWrites{c, &writes}
		})
		cl := newTestStore(t)
		n, err := cl.Download(context.Background(), h, []Provider{p}, DownloadOptions{SizeHint: c.hint})
		if err != nil || n != size {
			t.Fatalf("hint %d: %d, %v", c.hint, n, err)
		}
		checkBlob(t, cl, h, data)
		if writes.Load() != c.writes {
			t.Errorf("hint %d: %d writes, want %d", c.hint, writes.Load(), c.writes)
		}
	}

	// A partial holder without the last group, hinted: it waits for the
	// full provider to prove the size, then serves its groups.
	big := content(6<<20, 43)
	full := newTestStore(t)
	hb := addBlob(t, full, big)
	part := newTestStore(t)
	slow := prov(t, "slow", full)
	slow.opts.Limit = NewPeerLimit(ServeLimits{UploadRate: 4e6})
	dctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	part.Download(dctx, hb, []Provider{slow}, DownloadOptions{ChunkBytes: 256 << 10})
	cancel()
	if rec := rangesOf(t, part, hb); len(rec) == 0 || rec.Has(numGroups(uint64(len(big)))-1) {
		t.Fatalf("partial holder's record %v: want some groups, not the last", rec)
	}
	third := newTestStore(t)
	pp, fp := prov(t, "partial", part), prov(t, "full", full)
	fp.opts.Limit = NewPeerLimit(ServeLimits{UploadRate: 20e6})
	var last Progress
	if _, err := third.Download(context.Background(), hb, []Provider{pp, fp}, DownloadOptions{SizeHint: int64(len(big)), Progress: func(p Progress) { last = p }}); err != nil {
		t.Fatal(err)
	}
	checkBlob(t, third, hb, big)
	if pr := provOf(last.Providers, "partial"); pr.Bytes == 0 || pr.State == "failed" || pr.State == "banned" {
		t.Fatalf("the hinted partial holder served nothing: %+v", last.Providers)
	}
}

// TestDownloadOneProviderNoRefetch: with one provider and small chunks, every
// byte crosses the stream once (no end-game duplicate of its own work while
// its last buffers are still being written), and the outboard the receiver
// assembled from coalesced parent writes is byte for byte the provider's.
func TestDownloadOneProviderNoRefetch(t *testing.T) {
	data := content(9<<20+12345, 33)
	srv := newTestStore(t)
	h := addBlob(t, srv, data)
	p := prov(t, "only", srv)
	cl := newTestStore(t)
	// A slow link makes each response take longer than the end game's
	// 50 ms patience, so a released-too-late task would be duplicated.
	p.opts = ServeOptions{Limit: NewPeerLimit(ServeLimits{UploadRate: 40e6})}
	n, err := cl.Download(context.Background(), h, []Provider{p}, DownloadOptions{ChunkBytes: 1 << 20, Pipeline: 2})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("download: %d, %v", n, err)
	}
	checkBlob(t, cl, h, data)
	// Parents (64 bytes per group), the path above each chunk and frame
	// headers come on top of the data; a duplicated chunk would add 1 MiB.
	if got, limit := p.read.Load(), int64(len(data))*101/100+16<<10; got > limit {
		t.Fatalf("the client read %d bytes for a %d-byte blob (limit %d): work was fetched twice", got, len(data), limit)
	}
	want, err := outboardOf(srv, h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := outboardOf(cl, h)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the downloaded outboard (%d bytes) differs from the provider's (%d bytes)", len(got), len(want))
	}
}
