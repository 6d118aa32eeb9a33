package blobsync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// TestDownloadChunkedOnlyMissing: a receiver of a new version of a file
// fetches only the chunks it lacks: an edit of 1000 bytes in the middle
// moves at most the edited chunk and its neighbour, counted on the wire.
func TestDownloadChunkedOnlyMissing(t *testing.T) {
	ctx := context.Background()
	srv, cl := newTestStore(t), newTestStore(t)
	v0 := content(chunkedFixture, 3)
	cf0 := addChunked(t, srv, v0)
	p := prov(t, "srv", srv)
	var last Progress
	res, err := cl.DownloadChunked(ctx, cf0.List, cf0.Size, []Provider{p}, DownloadOptions{Progress: func(pr Progress) { last = pr }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched != len(cf0.Chunks) || res.FetchedBytes != cf0.Size || res.Size != cf0.Size {
		t.Fatalf("first download: %+v, want all %d chunks", res, len(cf0.Chunks))
	}
	if !last.Finished || last.Done != cf0.Size || last.Total != cf0.Size {
		t.Fatalf("last progress %+v", last)
	}
	exportChunked(t, cl, cf0, v0)

	v1 := bytes.Clone(v0)
	for i := range 1000 {
		v1[len(v1)/2+i] ^= 0x5a
	}
	cf1 := addChunked(t, srv, v1)
	before := p.read.Load()
	res, err = cl.DownloadChunked(ctx, cf1.List, cf1.Size, []Provider{p}, DownloadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wire := p.read.Load() - before
	if res.Fetched < 1 || res.Fetched > 2 || res.FetchedBytes > 2*ChunkMax {
		t.Fatalf("second download: %+v", res)
	}
	// The chunks' bytes plus the list and framing (outboards, headers).
	if lim := res.FetchedBytes + res.FetchedBytes/50 + 64<<10; wire > lim {
		t.Fatalf("second download moved %d bytes on the wire for %d bytes of chunks", wire, res.FetchedBytes)
	}
	exportChunked(t, cl, cf1, v1)

	// A size that does not match the list is refused before any chunk
	// moves.
	if _, err := cl.DownloadChunked(ctx, cf1.List, cf1.Size+1, []Provider{p}, DownloadOptions{}); !errors.Is(err, ErrBadChunkList) {
		t.Fatalf("DownloadChunked with a wrong size = %v", err)
	}
}

// TestDownloadChunkedLiar: a provider that flips a byte of every stream is
// caught at its first bad group and asked for nothing after; the chunks
// come from the honest provider and assemble to the file.
func TestDownloadChunkedLiar(t *testing.T) {
	srvA, srvB, cl := newTestStore(t), newTestStore(t), newTestStore(t)
	v := content(chunkedFixture, 4)
	cf := addChunked(t, srvA, v)
	addChunked(t, srvB, v)
	const flip = 100 << 10
	var flipped, openedAfter atomic.Bool
	liar := withFault(prov(t, "liar", srvA), func(_ int, c net.Conn) io.ReadWriteCloser {
		if flipped.Load() {
			openedAfter.Store(true)
		}
		return &flipAt{Conn: c, off: flip, flipped: &flipped}
	})
	honest := prov(t, "honest", srvB)
	var last Progress
	// One chunk at a time, so the ban is seen before the next chunk starts.
	res, err := cl.DownloadChunked(context.Background(), cf.List, cf.Size, []Provider{liar, honest}, DownloadOptions{Concurrency: 1, Progress: func(p Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched != len(cf.Chunks) {
		t.Fatalf("fetched %d of %d chunks", res.Fetched, len(cf.Chunks))
	}
	exportChunked(t, cl, cf, v)
	l := provOf(last.Providers, "liar")
	if l.State != "banned" || !strings.Contains(l.Err, "failed verification") {
		t.Fatalf("liar state %+v", l)
	}
	// Once it has sent a bad byte it is not opened again, for this chunk
	// or a later one.
	if !flipped.Load() || openedAfter.Load() {
		t.Fatalf("liar flipped a byte: %v; opened after: %v", flipped.Load(), openedAfter.Load())
	}
}
