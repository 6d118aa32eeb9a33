package blobsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// collFixture is a collection of blobs held by one or more stores.
type collFixture struct {
	c     *Collection
	h     Hash
	blobs map[Hash][]byte
}

// makeCollection adds blobs of the given sizes to every store in srvs
// (except entries listed in skip[store index]), builds their collection and
// adds it to every store.
func makeCollection(t *testing.T, sizes []int, srvs []*Store, skip map[int][]int) *collFixture {
	t.Helper()
	f := &collFixture{c: &Collection{}, blobs: map[Hash][]byte{}}
	for i, n := range sizes {
		b := content(n, uint64(1000+i))
		h := HashBytes(b)
		f.blobs[h] = b
		f.c.Put(Entry{Name: fmt.Sprintf("f%04d", i), Hash: h, Size: int64(n)})
	}
	for si, s := range srvs {
		lacks := map[string]bool{}
		for _, i := range skip[si] {
			lacks[fmt.Sprintf("f%04d", i)] = true
		}
		for _, e := range f.c.Entries {
			if !lacks[e.Name] {
				addBlob(t, s, f.blobs[e.Hash])
			}
		}
	}
	enc, err := f.c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range srvs {
		f.h = addBlob(t, s, enc)
	}
	if len(srvs) == 0 {
		f.h = HashBytes(enc)
	}
	return f
}

// TestChildrenRequest: one request for whole blobs and ranges of several
// entries of a collection; a section per child, in order, each verified
// against the entry's hash; a child not held or not allowed gets a
// not-found section and the stream goes on.
func TestChildrenRequest(t *testing.T) {
	srv := newTestStore(t)
	sizes := []int{0, 1, 16384, 16385, 100000, 1<<20 + 3, 5000}
	f := makeCollection(t, sizes, []*Store{srv}, nil)
	// Entry 6 is removed from the server's store: it must answer not found.
	lost := f.c.Entries[6].Hash
	if err := srv.Delete(lost); err != nil {
		t.Fatal(err)
	}
	denied := f.c.Entries[2].Hash
	conn, _ := servePipe(t, srv, func(h Hash) bool { return h != denied })
	rc := newRangeConn(conn)
	children := []ChildRanges{
		{Index: 0}, {Index: 1}, {Index: 2}, {Index: 3},
		{Index: 4, Ranges: []ChunkRange{{1, 3}}},
		{Index: 5, Ranges: []ChunkRange{{0, 1}, {60, 65}}},
		{Index: 6},
	}
	go rc.requestChildren(f.h, children)
	if err := rc.readChildrenHeader(len(children)); err != nil {
		t.Fatal(err)
	}
	v := new(verifier)
	for _, c := range children {
		e := f.c.Entries[c.Index]
		size, ok, err := rc.readChildHeader(c.Index)
		if err != nil {
			t.Fatalf("child %d: %v", c.Index, err)
		}
		wantOK := e.Hash != denied && e.Hash != lost
		if ok != wantOK {
			t.Fatalf("child %d: section has a body: %v, want %v", c.Index, ok, wantOK)
		}
		if !ok {
			continue
		}
		if size != uint64(e.Size) {
			t.Fatalf("child %d: size %d, want %d", c.Index, size, e.Size)
		}
		var got bytesSink
		if err := v.verify(rc.br, e.Hash, size, c.Ranges, &got, nil); err != nil {
			t.Fatalf("child %d: %v", c.Index, err)
		}
		var want []byte
		data := f.blobs[e.Hash]
		if c.Ranges == nil {
			want = data
		}
		for _, r := range c.Ranges {
			want = append(want, data[r.Start*ChunkGroupSize:min(r.End*ChunkGroupSize, uint64(len(data)))]...)
		}
		if !bytes.Equal(got.b.Bytes(), want) {
			t.Fatalf("child %d: %d bytes verified, not the requested ones (%d)", c.Index, got.b.Len(), len(want))
		}
	}
	// The stream carries another request after it.
	if _, held, err := rc.have(f.c.Entries[3].Hash, nil); err != nil || !held.Contains(ChunkRange{0, 2}) {
		t.Fatalf("have after the children answer: %v %v", held, err)
	}
}

// TestChildrenRequestRefusals: a collection not held is not found; a blob
// that is not a collection, and an index past the entries, are bad
// requests that end the stream.
func TestChildrenRequestRefusals(t *testing.T) {
	srv := newTestStore(t)
	f := makeCollection(t, []int{10, 20}, []*Store{srv}, nil)
	notColl := addBlob(t, srv, []byte("not a collection"))
	cases := []struct {
		name string
		coll Hash
		idx  uint64
		want error
	}{
		{"collection not held", HashBytes([]byte("nobody")), 0, ErrNotFound},
		{"not a collection", notColl, 0, ErrProtocol},
		{"index past the entries", f.h, 2, ErrProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, done := servePipe(t, srv, nil)
			rc := newRangeConn(conn)
			go rc.requestChildren(tc.coll, []ChildRanges{{Index: tc.idx}})
			if err := rc.readChildrenHeader(1); !errors.Is(err, tc.want) {
				t.Fatalf("answer: %v, want %v", err, tc.want)
			}
			if tc.want == ErrProtocol {
				conn.Close()
				if err := <-done; !errors.Is(err, ErrProtocol) {
					t.Fatalf("Serve = %v, want ErrProtocol", err)
				}
			}
		})
	}
	// Malformed children lists never reach the store.
	for _, req := range []wireRequest{
		{Hash: f.h[:], Op: opChildren},
		{Hash: f.h[:], Op: opChildren, Children: []wireChild{{Index: 1}, {Index: 1}}},
		{Hash: f.h[:], Op: opChildren, Children: []wireChild{{Index: 0, Ranges: []wireRange{{Start: 2, End: 2}}}}},
		{Hash: f.h[:], Op: opChildren, Ranges: []wireRange{{Start: 0, End: 1}}, Children: []wireChild{{Index: 0}}},
		{Hash: f.h[:], Op: opGet, Children: []wireChild{{Index: 0}}},
	} {
		if _, err := req.decode(); !errors.Is(err, ErrProtocol) {
			t.Errorf("decode %+v = %v, want ErrProtocol", req, err)
		}
	}
}

// TestDownloadCollectionBatches: a collection of many small files and two
// large ones from two providers, one of which lacks some small files: the
// small files come in a few children requests (a few streams, not one per
// file), the rest blob by blob; everything matches its hash and the
// progress adds up.
func TestDownloadCollectionBatches(t *testing.T) {
	var sizes []int
	for i := range 120 {
		sizes = append(sizes, 1+(i*7919)%40000)
	}
	sizes = append(sizes, 3<<20+1, 2<<20)
	smallBatches(t, 16)
	a, b := newTestStore(t), newTestStore(t)
	f := makeCollection(t, sizes, []*Store{a, b}, map[int][]int{1: {3, 30, 119}})
	pa, pb := prov(t, "a", a), prov(t, "b", b)
	cl := newTestStore(t)
	c, last := downloadAll(t, cl, f, pa, pb)
	if len(c.Entries) != len(sizes) {
		t.Fatalf("%d entries, want %d", len(c.Entries), len(sizes))
	}
	checkBlob(t, cl, c.Entries[len(c.Entries)-1].Hash, f.blobs[c.Entries[len(c.Entries)-1].Hash])
	var total int64
	for _, n := range sizes {
		total += int64(n)
	}
	if !last.Finished || last.Done != total || last.Total != total || last.BlobsDone != len(sizes) || last.Blobs != len(sizes) {
		t.Fatalf("last progress %+v, want %d bytes and %d blobs", last, total, len(sizes))
	}
	// Streams: the collection itself and each large blob open one per
	// provider (or one only, when a provider's stream comes after the
	// other finished); the batches one per provider; the three files b
	// lacks at most one more download each.
	opens := int(pa.opens.Load() + pb.opens.Load())
	if opens > 2*(1+1+2)+3*2 || opens < 1+1+2 {
		t.Fatalf("%d streams opened for %d files: the small files were not batched", opens, len(sizes))
	}
	if provOf(last.Providers, "a").Bytes == 0 || provOf(last.Providers, "b").Bytes == 0 {
		t.Fatalf("a provider did no work: %+v", last.Providers)
	}
	if sum := provOf(last.Providers, "a").Bytes + provOf(last.Providers, "b").Bytes; sum != total {
		t.Fatalf("providers credited with %d bytes in all, want %d: %+v", sum, total, last.Providers)
	}
}

// downloadAll runs DownloadCollection of f from provs into cl, checks that
// every entry is held with the right bytes, and returns the collection and
// the last progress event.
func downloadAll(t *testing.T, cl *Store, f *collFixture, provs ...Provider) (*Collection, Progress) {
	t.Helper()
	var mu sync.Mutex
	var last Progress
	c, err := cl.DownloadCollection(context.Background(), f.h, provs, DownloadOptions{Progress: func(p Progress) {
		mu.Lock()
		last = p
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range c.Entries {
		got, err := cl.ReadAll(e.Hash, 8<<20)
		if err != nil || !bytes.Equal(got, f.blobs[e.Hash]) {
			t.Fatalf("entry %s: %v", e.Name, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return c, last
}

// smallBatches cuts children requests at n children for the test.
func smallBatches(t *testing.T, n int) {
	old := batchMaxChildren
	batchMaxChildren = n
	t.Cleanup(func() { batchMaxChildren = old })
}

// TestDownloadCollectionBatchLiar: a provider that corrupts its children
// answers is banned at its first bad group; every file still arrives,
// verified, from the honest one.
func TestDownloadCollectionBatchLiar(t *testing.T) {
	var sizes []int
	for i := range 80 {
		sizes = append(sizes, 20000+i)
	}
	smallBatches(t, 10)
	honest, liar := newTestStore(t), newTestStore(t)
	f := makeCollection(t, sizes, []*Store{honest, liar}, nil)
	ph, pl := prov(t, "honest", honest), prov(t, "liar", liar)
	// The liar's streams flip a byte 100 KiB in: past the collection's
	// own small answer, inside a children answer.
	pl.fault = func(n int, c net.Conn) io.ReadWriteCloser { return &flipAt{Conn: c, off: 100 << 10} }
	cl := newTestStore(t)
	_, last := downloadAll(t, cl, f, pl, ph)
	if st := provOf(last.Providers, "liar").State; st != "banned" {
		t.Fatalf("liar state %q, want banned (%+v)", st, last.Providers)
	}
}

// TestDownloadCollectionBatchEndGame: a slow provider's batches are
// duplicated by the fast one once no batch is left to hand out, so the
// slow one does not hold up the end; every blob is counted once.
func TestDownloadCollectionBatchEndGame(t *testing.T) {
	var sizes []int
	for i := range 40 {
		sizes = append(sizes, 100000+i)
	}
	smallBatches(t, 10)
	fast, slow := newTestStore(t), newTestStore(t)
	f := makeCollection(t, sizes, []*Store{fast, slow}, nil)
	pf, ps := prov(t, "fast", fast), prov(t, "slow", slow)
	// 500 KB/s: the two batches the slow provider takes at the start (about
	// 2 MB) would take it 4 s.
	ps.opts = ServeOptions{Limit: NewPeerLimit(ServeLimits{UploadRate: 500e3})}
	cl := newTestStore(t)
	t0 := time.Now()
	_, last := downloadAll(t, cl, f, ps, pf)
	var total int64
	for _, n := range sizes {
		total += int64(n)
	}
	slowBytes, fastBytes := provOf(last.Providers, "slow").Bytes, provOf(last.Providers, "fast").Bytes
	if slowBytes+fastBytes != total || last.Done != total || last.BlobsDone != len(sizes) {
		t.Fatalf("progress %+v: want %d bytes and %d blobs, each counted once", last, total, len(sizes))
	}
	// Without the end game the slow provider's share alone takes 4 s.
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("the download took %v: the slow provider held it up", d)
	}
	if slowBytes > 1<<20 {
		t.Fatalf("the slow provider delivered %d bytes: its batches were not taken over (fast %d)", slowBytes, fastBytes)
	}
}

// TestDownloadBatch: the listed entries of a collection come in children
// requests; one the receiver holds is skipped, one the provider lacks and
// one whose blob another entry names are returned for the blob-by-blob
// path; an index outside the collection is an error.
func TestDownloadBatch(t *testing.T) {
	sizes := []int{100, 20000, 70000, 300000, 5, 64000}
	srv := newTestStore(t)
	f := makeCollection(t, sizes, []*Store{srv}, map[int][]int{0: {3}})
	// A second entry naming entry 1's blob.
	e1 := f.c.Entries[1]
	f.c.Put(Entry{Name: "twin", Hash: e1.Hash, Size: e1.Size})
	enc, err := f.c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	coll := addBlob(t, srv, enc)
	cl := newTestStore(t)
	addBlob(t, cl, f.blobs[f.c.Entries[4].Hash]) // held already
	var all []int
	for i := range f.c.Entries {
		all = append(all, i)
	}
	if _, err := cl.DownloadBatch(context.Background(), coll, f.c, []int{0, len(f.c.Entries)}, nil, DownloadOptions{}); err == nil {
		t.Fatal("an index past the entries was accepted")
	}
	var last Progress
	left, err := cl.DownloadBatch(context.Background(), coll, f.c, all, []Provider{prov(t, "a", srv)}, DownloadOptions{Progress: func(p Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	twin, ok := find(f.c.Entries, "twin")
	if !ok {
		t.Fatal("the collection has no entry named twin")
	}
	if want := []int{3, twin}; fmt.Sprint(left) != fmt.Sprint(want) {
		t.Fatalf("left %v, want %v (the entry the provider lacks, the twin)", left, want)
	}
	for i, e := range f.c.Entries {
		if i == 3 {
			continue
		}
		got, err := cl.ReadAll(e.Hash, 1<<20)
		if err != nil || !bytes.Equal(got, f.blobs[e.Hash]) {
			t.Fatalf("entry %s: %v", e.Name, err)
		}
	}
	if !last.Finished || last.BlobsDone != len(f.c.Entries)-2 {
		t.Fatalf("last progress %+v", last)
	}
}

// TestEmptyRangesRequest: a request with a present but empty range list
// selects nothing (docs/protocol.md): the answer is a header and an empty
// body, and the stream carries the next request. (The client once dropped
// the empty list and so asked for the whole blob.)
func TestEmptyRangesRequest(t *testing.T) {
	srv := newTestStore(t)
	data := content(100000, 77)
	h := addBlob(t, srv, data)
	conn, _ := servePipe(t, srv, nil)
	conn.SetDeadline(time.Now().Add(5 * time.Second)) // a whole-blob answer would block the pipe
	rc := newRangeConn(conn)
	go rc.request(h, []ChunkRange{})
	var got bytesSink
	if err := rc.readRanges(new(verifier), h, uint64(len(data)), []ChunkRange{}, &got); err != nil || got.b.Len() != 0 {
		t.Fatalf("empty ranges: %d bytes, %v", got.b.Len(), err)
	}
	if _, held, err := rc.have(h, nil); err != nil || !held.Contains(ChunkRange{0, numGroups(uint64(len(data)))}) {
		t.Fatalf("have after the empty answer: %v %v", held, err)
	}
}

// TestBatchesSplitForProviders: one provider gets the largest batches
// (fewest round trips); several get at least n × batchPipeline × 2, down
// to 16 entries or 1 MiB each, so that each has work from the start.
func TestBatchesSplitForProviders(t *testing.T) {
	c := &Collection{}
	var idx []int
	for i := range 320 {
		c.Entries = append(c.Entries, Entry{Name: fmt.Sprintf("f%04d", i), Size: 100_000})
		idx = append(idx, i)
	}
	count := func(n int) (nb, largest int) {
		bs := batches(c, idx, n, batchMaxBytes)
		seen := 0
		for _, b := range bs {
			largest = max(largest, len(b))
			seen += len(b)
		}
		if seen != len(idx) {
			t.Fatalf("%d providers: batches hold %d entries, want %d", n, seen, len(idx))
		}
		return len(bs), largest
	}
	if n, _ := count(1); n != 2 { // 16 MiB each: 167 and 153 entries
		t.Errorf("one provider: %d batches, want 2", n)
	}
	if n, largest := count(3); n < 12 || largest > 27 {
		t.Errorf("three providers: %d batches of up to %d entries, want 12 or more of at most 27", n, largest)
	}
	// The floors: 40 entries of 1 KB for 8 providers make batches of 16
	// entries; of 100 KB, batches of 1 MiB (10 entries).
	tiny := &Collection{}
	for i := range 40 {
		tiny.Entries = append(tiny.Entries, Entry{Name: fmt.Sprintf("t%02d", i), Size: 1000})
	}
	if bs := batches(tiny, idx[:40], 8, batchMaxBytes); len(bs) != 3 || len(bs[0]) != 16 {
		t.Errorf("40 entries of 1 KB, 8 providers: %d batches, the first of %d", len(bs), len(bs[0]))
	}
	if bs := batches(c, idx[:40], 8, batchMaxBytes); len(bs) != 4 || len(bs[0]) != 10 {
		t.Errorf("40 entries of 100 KB, 8 providers: %d batches, the first of %d", len(bs), len(bs[0]))
	}
}

// TestDownloadCollectionBatchesShared: 60 small files from three providers
// at 4 MB/s each: every provider sends a share of the children batches.
func TestDownloadCollectionBatchesShared(t *testing.T) {
	var sizes []int
	for i := range 60 {
		sizes = append(sizes, 100_000+i)
	}
	var srvs []*Store
	for range 3 {
		srvs = append(srvs, newTestStore(t))
	}
	f := makeCollection(t, sizes, srvs, nil)
	var provs []Provider
	for i, s := range srvs {
		p := prov(t, string(rune('a'+i)), s)
		p.opts = ServeOptions{Limit: NewPeerLimit(ServeLimits{UploadRate: 4e6})}
		provs = append(provs, p)
	}
	_, last := downloadAll(t, newTestStore(t), f, provs...)
	for _, p := range last.Providers {
		if p.Bytes < 500_000 {
			t.Errorf("provider %s sent %d bytes of 6 MB: %+v", p.ID, p.Bytes, last.Providers)
		}
	}
}
