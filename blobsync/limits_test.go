package blobsync

import (
	"context"
	"testing"
	"time"
)

// TestServeUploadRate: a peer limited to 4 MB/s needs about 1 s for 4 MB,
// whichever of its streams asks.
func TestServeUploadRate(t *testing.T) {
	srv := newTestStore(t)
	data := content(4e6, 7)
	h := addBlob(t, srv, data)
	lim := NewPeerLimiter(ServeLimits{UploadRate: 4e6, MaxRequests: 1})
	pl, release := lim.Acquire("peer")
	defer release()
	p1, p2 := prov(t, "s1", srv), prov(t, "s2", srv)
	p1.opts.Limit, p2.opts.Limit = pl, pl
	cl := newTestStore(t)
	start := time.Now()
	if _, err := cl.Download(context.Background(), h, []Provider{p1, p2}, DownloadOptions{ChunkBytes: 256 << 10}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 800*time.Millisecond || d > 3*time.Second {
		t.Fatalf("4 MB at 4 MB/s over two streams of one peer took %v", d)
	}
	checkBlob(t, cl, h, data)
}

func TestPeerLimiterRefcount(t *testing.T) {
	lim := NewPeerLimiter(ServeLimits{UploadRate: 1e6})
	a, ra := lim.Acquire("x")
	b, rb := lim.Acquire("x")
	if a != b {
		t.Fatal("two streams of one peer got different limits")
	}
	ra()
	ra()
	rb()
	if len(lim.peers) != 0 {
		t.Fatalf("limiter keeps %d peers after their streams ended", len(lim.peers))
	}
}
