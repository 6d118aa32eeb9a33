package blobsync

// Fuzz targets for the client side of the blob protocol: whatever a lying
// or broken peer sends back must be refused with a classified error, never
// passed on unverified, and never panic. The server side is fuzzed by
// FuzzServeRequest (fetch_test.go).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"lukechampine.com/blake3/bao"
)

// fuzzBlobSize is the blob of FuzzRangeStream: 13 groups, the last one
// short and not a whole number of chunks, so the tree is uneven.
const fuzzBlobSize = 200<<10 + 7

// recordConn is a client's end of a stream that keeps a copy of every byte
// the client reads: the exact answer bytes of a real server, for seeds.
type recordConn struct {
	net.Conn
	got bytes.Buffer
}

func (c *recordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.got.Write(p[:n])
	return n, err
}

// take returns the bytes read since the last take.
func (c *recordConn) take() []byte {
	b := bytes.Clone(c.got.Bytes())
	c.got.Reset()
	return b
}

// frame returns v as one wire frame, as writeFrame sends it.
func frame(tb testing.TB, v any) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := writeFrame(&b, v); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// flip returns a copy of b with one bit of the byte at i flipped.
func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x10
	return c
}

// FuzzHaveAnswer feeds arbitrary bytes to the client as a server's answer
// to a have query (readHave, as Have and the downloader use it). It must
// never panic. An accepted answer gives a size of at most MaxBlobSize and a
// RangeSet that keeps the type's invariant (sorted, disjoint, non-adjacent,
// non-empty ranges), ends at or before numGroups(size) and holds no group
// the answer did not list (an answer may understate, never overstate); the
// client read exactly the answer's frame, so the stream can carry the next
// request. A refused answer fails with ErrProtocol, ErrNotFound or
// io.ErrUnexpectedEOF. Seeds: a real server's answers (complete blobs, not
// found) and hand-built frames for partial holders and malformed answers.
func FuzzHaveAnswer(f *testing.F) {
	srv := newTestStore(f)
	conn, _ := servePipe(f, srv, nil)
	rc := &recordConn{Conn: conn}
	for _, n := range []int{0, 1, ChunkGroupSize, ChunkGroupSize + 1, fuzzBlobSize} {
		h := addBlob(f, srv, content(n, 50))
		if _, _, err := readHave(rc, rc, h); err != nil {
			f.Fatalf("have on a %d-byte blob: %v", n, err)
		}
		f.Add(rc.take())
	}
	if _, _, err := readHave(rc, rc, HashBytes([]byte("absent"))); !errors.Is(err, ErrNotFound) {
		f.Fatalf("have on an absent blob: %v", err)
	}
	f.Add(rc.take())

	ok := func(size uint64, rs ...wireRange) []byte {
		return frame(f, wireResponse{Status: statusOK, Size: size, Ranges: rs})
	}
	var most []wireRange
	for i := range uint64(maxRanges) {
		most = append(most, wireRange{Start: 2 * i, End: 2*i + 1})
	}
	good := ok(fuzzBlobSize, wireRange{Start: 0, End: 3}, wireRange{Start: 5, End: 9})
	for _, b := range [][]byte{
		good,
		ok(fuzzBlobSize, wireRange{Start: 0, End: 2}, wireRange{Start: 2, End: 4}),     // adjacent: merged
		ok(fuzzBlobSize, wireRange{Start: 10, End: 20}, wireRange{Start: 30, End: 40}), // past the end: clipped
		ok(fuzzBlobSize, wireRange{Start: 5, End: 9}, wireRange{Start: 0, End: 3}),     // unsorted
		ok(fuzzBlobSize, wireRange{Start: 0, End: 4}, wireRange{Start: 3, End: 6}),     // overlapping
		ok(fuzzBlobSize, wireRange{Start: 4, End: 4}),                                  // empty range
		ok(0),                                  // no ranges held
		ok(1<<30, most...),                     // 512 ranges
		ok(1<<62, wireRange{Start: 0, End: 1}), // over MaxBlobSize
		frame(f, wireResponse{Status: statusMissing, Msg: "ranges not held; ask with have"}),
		frame(f, wireResponse{Status: statusBadRequest, Msg: "bad"}),
		frame(f, wireResponse{Status: 99}),
		append(good, good...), // a second frame follows: not read
		good[:len(good)-1],    // truncated body
		{0, 0, 0, 0},          // empty frame
		{0xff, 0xff, 0xff, 0xff},
		{0, 0, 0, 1, 0xa0}, // an empty map: status 0, size 0
		{},
	} {
		f.Add(b)
	}

	var h Hash
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		size, rs, err := readHave(io.Discard, r, h)
		if err != nil {
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrNotFound) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("readHave error %v is not ErrProtocol, ErrNotFound or io.ErrUnexpectedEOF", err)
			}
			return
		}
		if size > uint64(MaxBlobSize) {
			t.Fatalf("accepted size %d over MaxBlobSize", size)
		}
		if !rs.valid() {
			t.Fatalf("held ranges %v not sorted, disjoint and non-empty", rs)
		}
		for i := 1; i < len(rs); i++ {
			if rs[i].Start == rs[i-1].End {
				t.Fatalf("held ranges %v: adjacent ranges not merged", rs)
			}
		}
		if len(rs) > 0 && rs[len(rs)-1].End > numGroups(size) {
			t.Fatalf("held ranges %v end past the blob's %d groups", rs, numGroups(size))
		}
		n := int(binary.BigEndian.Uint32(b))
		if read := len(b) - r.Len(); read != 4+n {
			t.Fatalf("read %d bytes, the answer's frame is %d", read, 4+n)
		}
		var resp wireResponse
		if err := wireDec.Unmarshal(b[4:4+n], &resp); err != nil {
			t.Fatalf("accepted answer does not decode: %v", err)
		}
		var listed RangeSet
		for _, c := range resp.Ranges {
			listed = listed.Add(ChunkRange{c.Start, c.End})
		}
		for _, c := range rs {
			if !listed.Contains(c) {
				t.Fatalf("held ranges %v claim %v, which the answer %v does not list", rs, c, resp.Ranges)
			}
		}
	})
}

// fuzzStream is a ReadWriteCloser whose reads come from a fixed answer and
// whose writes (the client's requests) are dropped.
type fuzzStream struct{ *bytes.Reader }

func (fuzzStream) Write(p []byte) (int, error) { return len(p), nil }
func (fuzzStream) Close() error                { return nil }

// recordSink records every group and parent the verifier hands on, as
// copies. With lending set it also lends the verifier a fresh group buffer
// (as groupSink does), and checks that a whole group comes back in exactly
// the memory lent for it.
type recordSink struct {
	lending bool
	lent    []byte
	lentAt  uint64
	groups  []recordedGroup
	parents []recordedParent
	errs    []string
}

type recordedGroup struct {
	start uint64
	b     []byte
}

type recordedParent struct {
	index uint64
	b     []byte
}

func (s *recordSink) parent(i uint64, p []byte) error {
	s.parents = append(s.parents, recordedParent{i, bytes.Clone(p)})
	return nil
}

func (s *recordSink) group(start uint64, g []byte) error {
	if s.lending && len(g) == ChunkGroupSize {
		if s.lent == nil || &g[0] != &s.lent[0] || start != s.lentAt {
			s.errs = append(s.errs, fmt.Sprintf("group at %d not in the buffer lent for it (lent at %d)", start, s.lentAt))
		}
		s.lent = nil
	}
	s.groups = append(s.groups, recordedGroup{start, bytes.Clone(g)})
	return nil
}

// lendingSink is a recordSink that is also a groupLender.
type lendingSink struct{ *recordSink }

func (s lendingSink) lend(start uint64) ([]byte, error) {
	s.lent, s.lentAt = make([]byte, ChunkGroupSize), start
	return s.lent, nil
}

// fuzzRange derives a non-empty range of a blob's g groups from x: the low
// 32 bits pick the start, the high 32 bits the length. fuzzRangeSeed is its
// inverse for start < end <= g.
func fuzzRange(x, g uint64) ChunkRange {
	start := uint64(uint32(x)) % g
	return ChunkRange{start, start + 1 + (x>>32)%(g-start)}
}

func fuzzRangeSeed(start, end uint64) uint64 { return start | (end-start-1)<<32 }

// FuzzRangeStream feeds arbitrary bytes to the client as a server's answer
// to a ranged request (rangeConn.readRanges, as the downloader uses it) for
// a known 200 KiB blob. The request's ranges are the union of two ranges
// derived from the uint64s a and b (see fuzzRange); lend makes the sink
// lend the verifier its group buffers. It must never panic, and:
//
//   - every group handed to the sink is the blob's bytes at that offset,
//     in a requested group, in stream order, and every parent handed on is
//     the outboard's parent at that index: nothing unverified is passed on;
//   - if readRanges returns nil, the sink got exactly the requested groups,
//     the body was the real server's stream for those ranges, and the client
//     read exactly the header and that body (a pipelined next response stays
//     aligned);
//   - otherwise the error is ErrCorrupt, ErrProtocol, ErrNotFound or
//     io.ErrUnexpectedEOF.
//
// Seeds: a real server's answers (Serve over net.Pipe) for one, several and
// all groups, and copies with a flipped bit, a cut or a wrong size.
//
// The seeds are up to 400 KiB, and the fuzzer minimizes each new interesting
// input for up to -fuzzminimizetime (default 60s), which stalls a worker
// that long; for short runs bound it, e.g. -fuzzminimizetime 200x.
func FuzzRangeStream(f *testing.F) {
	data := content(fuzzBlobSize, 51)
	srv := newTestStore(f)
	h := addBlob(f, srv, data)
	size, groups := uint64(len(data)), numGroups(uint64(len(data)))
	ob, _ := bao.EncodeBuf(data, ChunkGroupLog, true)
	outboard := ob[outboardHeader:] // the parents, in pre-order

	conn, _ := servePipe(f, srv, nil)
	rc := &recordConn{Conn: conn}
	cc := newRangeConn(rc)
	answer := func(ranges []ChunkRange) []byte {
		if err := cc.request(h, ranges); err != nil {
			f.Fatal(err)
		}
		if err := cc.readRanges(new(verifier), h, size, ranges, &recordSink{}); err != nil {
			f.Fatalf("real answer for %v: %v", ranges, err)
		}
		return rc.take()
	}
	hdr := int(responseHeaderLen(size))
	for i, r := range [][2]ChunkRange{
		{{0, groups}, {0, groups}},
		{{0, 1}, {0, 1}},
		{{groups - 1, groups}, {groups - 1, groups}},
		{{5, 8}, {5, 8}},
		{{1, 3}, {9, 11}},
		{{0, 2}, {2, 4}},
	} {
		a, b := fuzzRangeSeed(r[0].Start, r[0].End), fuzzRangeSeed(r[1].Start, r[1].End)
		ranges := []ChunkRange(RangeSet(nil).Add(r[0]).Add(r[1]))
		ans := answer(ranges)
		f.Add(a, b, i%2 == 1, ans)
		if i == 0 {
			f.Add(a, b, true, flip(ans, hdr+3))         // root parent
			f.Add(a, b, false, flip(ans, hdr+64*4+100)) // first group
			f.Add(a, b, true, flip(ans, len(ans)-1))    // last group
			f.Add(a, b, false, ans[:len(ans)-10])       // cut
			f.Add(a, b, false, append(ans, ans...))     // a second answer follows
			wrong := frame(f, wireResponse{Status: statusOK, Size: size + 1})
			f.Add(a, b, false, append(wrong, ans[hdr:]...)) // a size that is not the verified one
		}
	}
	f.Add(uint64(0), uint64(0), false, frame(f, wireResponse{Status: statusMissing, Msg: "ranges not held; ask with have"}))
	f.Add(uint64(0), uint64(0), false, []byte{})

	f.Fuzz(func(t *testing.T, a, b uint64, lend bool, stream []byte) {
		ranges := []ChunkRange(RangeSet(nil).Add(fuzzRange(a, groups)).Add(fuzzRange(b, groups)))
		r := bytes.NewReader(stream)
		c := newRangeConn(fuzzStream{r})
		rec := &recordSink{lending: lend}
		var out sink = rec
		if lend {
			out = lendingSink{rec}
		}
		err := c.readRanges(new(verifier), h, size, ranges, out)
		for _, e := range rec.errs {
			t.Error(e)
		}
		want := RangeSet(ranges)
		for i, g := range rec.groups {
			k := g.start / ChunkGroupSize
			switch {
			case g.start%ChunkGroupSize != 0 || g.start >= size:
				t.Fatalf("group at byte %d is not a group of the %d-byte blob", g.start, size)
			case i > 0 && g.start <= rec.groups[i-1].start:
				t.Fatalf("group at %d after group at %d", g.start, rec.groups[i-1].start)
			case !want.Has(k):
				t.Fatalf("group %d handed on, ranges %v do not hold it", k, ranges)
			case !bytes.Equal(g.b, data[g.start:min(g.start+ChunkGroupSize, size)]):
				t.Fatalf("group %d handed on is not the blob's bytes (%d bytes)", k, len(g.b))
			}
		}
		for i, p := range rec.parents {
			switch {
			case p.index >= groups-1:
				t.Fatalf("parent %d handed on, the blob has %d", p.index, groups-1)
			case i > 0 && p.index <= rec.parents[i-1].index:
				t.Fatalf("parent %d after parent %d", p.index, rec.parents[i-1].index)
			case !bytes.Equal(p.b, outboard[parentSize*p.index:parentSize*(p.index+1)]):
				t.Fatalf("parent %d handed on is not the outboard's", p.index)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrNotFound) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("readRanges error %v is not ErrCorrupt, ErrProtocol, ErrNotFound or io.ErrUnexpectedEOF", err)
			}
			return
		}
		var got RangeSet
		for _, g := range rec.groups {
			got = got.Add(ChunkRange{g.start / ChunkGroupSize, g.start/ChunkGroupSize + 1})
		}
		if !reflect.DeepEqual(got, want) || uint64(len(rec.groups)) != want.Groups() {
			t.Fatalf("readRanges accepted the answer but handed on groups %v, want %v", got, want)
		}
		var body bytes.Buffer
		if err := new(encoder).encode(&body, newFwdReader(bytes.NewReader(data), 0), newFwdReader(bytes.NewReader(outboard), 0), size, ranges, nil); err != nil {
			t.Fatal(err)
		}
		n := 4 + int(binary.BigEndian.Uint32(stream))
		if read := len(stream) - r.Len() - c.br.Buffered(); read != n+body.Len() {
			t.Fatalf("read %d bytes of the answer, want a %d-byte header and a %d-byte body", read, n, body.Len())
		}
		if !bytes.Equal(stream[n:n+body.Len()], body.Bytes()) {
			t.Fatal("readRanges accepted a body that is not the server's stream")
		}
	})
}

// FuzzRequestDecode decodes arbitrary bytes as a request frame's body (the
// server's wireDec and wireRequest.decode). It must never panic. A request
// that decodes has a 32-byte hash, sorted, disjoint, non-empty ranges (at
// most maxRanges) and no ranges if it is a have query; encoded again with
// encodeRequest it fits one request frame and decodes to an equal Request,
// so the client can say everything the server understands. Seeds: requests
// as the client encodes them and malformed ones.
func FuzzRequestDecode(f *testing.F) {
	h := HashBytes([]byte("abc"))
	var most []ChunkRange
	for i := range uint64(maxRanges) {
		most = append(most, ChunkRange{2 * i, 2*i + 1})
	}
	for _, req := range []Request{
		{Hash: h},
		{Hash: h, Have: true},
		{Hash: h, Ranges: []ChunkRange{{0, 1}}},
		{Hash: h, Ranges: []ChunkRange{{0, 3}, {3, 5}, {9, 1 << 40}}},
		{Hash: h, Ranges: most},
		{Hash: h, Ranges: []ChunkRange{}}, // present and empty: selects nothing
		{Hash: h, Children: []ChildRanges{{Index: 0}, {Index: 3, Ranges: []ChunkRange{{1, 2}}}, {Index: 1 << 40}}},
		{Hash: h, Delta: &DeltaRequest{Base: []Hash{h, h}, Target: []Hash{h}}},
		{Hash: h, Delta: &DeltaRequest{Base: make([]Hash, MaxDeltaChunks), Target: append([]Hash{h}, make([]Hash, MaxDeltaChunks-1)...)}},
	} {
		b, err := wireEnc.Marshal(encodeRequest(req))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, w := range []wireRequest{
		{Hash: h[:], Op: opHave, Ranges: []wireRange{{Start: 0, End: 1}}}, // have with ranges
		{Hash: h[:], Op: 7}, // unknown op
		{Hash: h[:5]},       // short hash
		{Hash: h[:], Ranges: []wireRange{{Start: 4, End: 6}, {Start: 0, End: 2}}}, // unsorted
		{Hash: h[:], Ranges: []wireRange{{Start: 0, End: 4}, {Start: 3, End: 6}}}, // overlapping
		{Hash: h[:], Ranges: []wireRange{{Start: 2, End: 2}}},                     // empty range
		{Hash: h[:], Ranges: make([]wireRange, maxRanges+1)},                      // too many
	} {
		b, err := wireEnc.Marshal(w)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xa2, 0x01, 0x41, 0x00, 0x01, 0x41, 0x00})             // duplicate key
	f.Add([]byte("\xa2\x01X 00000000000000000000000000000000\x02\x80")) // {1: hash, 2: []}: once re-encoded as the whole blob
	f.Add([]byte{0xa0})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		var w wireRequest
		if err := wireDec.Unmarshal(b, &w); err != nil {
			return
		}
		req, err := w.decode()
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("decode error %v is not ErrProtocol", err)
			}
			return
		}
		if !RangeSet(req.Ranges).valid() || len(req.Ranges) > maxRanges {
			t.Fatalf("decoded ranges %v: not sorted, disjoint and non-empty, or more than %d", req.Ranges, maxRanges)
		}
		if req.Have && req.Ranges != nil {
			t.Fatalf("decoded a have request with ranges %v", req.Ranges)
		}
		b2, err := wireEnc.Marshal(encodeRequest(req))
		if err != nil {
			t.Fatalf("decoded request %+v does not encode: %v", req, err)
		}
		if len(b2) > maxRequestFrame {
			t.Fatalf("decoded request encodes to %d bytes, over the %d-byte frame limit", len(b2), maxRequestFrame)
		}
		var w2 wireRequest
		if err := wireDec.Unmarshal(b2, &w2); err != nil {
			t.Fatalf("re-encoded request does not unmarshal: %v", err)
		}
		req2, err := w2.decode()
		if err != nil || !reflect.DeepEqual(req, req2) {
			t.Fatalf("round trip: decoded %+v (ranges %#v), re-encoded %x, decoded again %+v (ranges %#v), %v", req, req.Ranges, b2, req2, req2.Ranges, err)
		}
	})
}

// fuzzChildSizes are the entries of FuzzChildrenAnswer's collection: empty,
// small, exactly one group, and one with a tree (two groups).
var fuzzChildSizes = []int{0, 1, 700, 5000, ChunkGroupSize, ChunkGroupSize + 1}

// textContent returns n bytes of printable text, different for each seed:
// blob bytes that stay readable (and small) in corpus files.
func textContent(n int, seed int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "blob %d line %d\n", seed, i)
	}
	return b.Bytes()[:n]
}

// fuzzChildren returns the entries of c that bits selects (bit i: entry
// i); no bit set selects every entry.
func fuzzChildren(c *Collection, bits uint64) []int {
	var idx []int
	for i := range c.Entries {
		if bits&(1<<i) != 0 {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		for i := range c.Entries {
			idx = append(idx, i)
		}
	}
	return idx
}

// FuzzChildrenAnswer feeds arbitrary bytes to the client as a provider's
// answer to a children request: the batch reader of a collection download
// (batchRun.read, with its header, section and blob readers and the
// verifier), storing into a real store. The request asks for the entries
// of a six-entry collection that sel picks (fuzzChildren). It must never
// panic, and:
//
//   - a blob is stored only for an entry the answer completed, and then
//     with exactly that entry's bytes; every other entry leaves nothing in
//     the store, no part file either: nothing unverified is kept;
//   - the task's progress (next) counts the entries dealt with, in
//     request order: each stored or left (its section not found), the
//     rest still pending;
//   - without an error every entry was dealt with; an error is ErrProtocol,
//     ErrCorrupt, ErrNotFound or io.ErrUnexpectedEOF, and a header frame
//     that declares more than the response limit is refused as a
//     *LimitError before its body is read.
//
// Seeds and the checked-in corpus: a real server's answers (Serve over
// net.Pipe) for every entry, one entry, a few, with one child not allowed,
// and for a collection it does not hold; and copies broken in telling
// places.
func FuzzChildrenAnswer(f *testing.F) {
	srv, cl := newTestStore(f), newTestStore(f)
	c := &Collection{}
	blobs := map[Hash][]byte{}
	for i, n := range fuzzChildSizes {
		b := textContent(n, i)
		h := addBlob(f, srv, b)
		blobs[h] = b
		c.Put(Entry{Name: fmt.Sprintf("c%d", i), Hash: h, Size: int64(n)})
	}
	enc, err := c.Encode()
	if err != nil {
		f.Fatal(err)
	}
	coll := addBlob(f, srv, enc)
	denied := c.Entries[3].Hash

	// answer is the real server's answer to a children request for the
	// entries sel picks, of collection h.
	answer := func(h Hash, sel uint64, allow func(Hash) bool) []byte {
		conn, _ := servePipe(f, srv, allow)
		rc := &recordConn{Conn: conn}
		cc := newRangeConn(rc)
		idx := fuzzChildren(c, sel)
		children := make([]ChildRanges, len(idx))
		for i, ei := range idx {
			children[i] = ChildRanges{Index: uint64(ei)}
		}
		go cc.requestChildren(h, children)
		if err := cc.readChildrenHeader(len(idx)); err != nil {
			if h == coll {
				f.Fatal(err)
			}
			return rc.take()
		}
		for _, ei := range idx {
			size, ok, err := cc.readChildHeader(uint64(ei))
			if err != nil {
				f.Fatal(err)
			}
			if ok {
				if err := new(verifier).verify(cc.br, c.Entries[ei].Hash, size, nil, discardSink{}, nil); err != nil {
					f.Fatal(err)
				}
			}
		}
		return rc.take()
	}
	all := answer(coll, 0, nil)
	fuzzcorpus.Add(f, uint64(0), all)
	fuzzcorpus.Add(f, uint64(1<<5), answer(coll, 1<<5, nil))
	fuzzcorpus.Add(f, uint64(0b010110), answer(coll, 0b010110, nil))
	fuzzcorpus.Add(f, uint64(0), answer(coll, 0, func(h Hash) bool { return h != denied }))
	fuzzcorpus.Add(f, uint64(0), answer(HashBytes([]byte("not held")), 0, nil))
	hdr := 4 + int(binary.BigEndian.Uint32(all))
	second := hdr + 4 + int(binary.BigEndian.Uint32(all[hdr:]))
	f.Add(uint64(0), all[:len(all)-1])                                                            // the last group cut
	f.Add(uint64(0), flip(all, len(all)-1))                                                       // the last group
	f.Add(uint64(0), flip(all, hdr+6))                                                            // a section's index
	f.Add(uint64(1), all)                                                                         // more sections than asked for
	f.Add(uint64(0), append(bytes.Clone(all), all...))                                            // another answer follows: not read
	f.Add(uint64(0), append(frame(f, wireResponse{Status: statusOK, Count: 6}), all[second:]...)) // the first section missing
	f.Add(uint64(1), append(frame(f, wireResponse{Status: statusOK, Count: 1}), frame(f, wireResponse{Status: statusOK, Size: 5})...))
	f.Add(uint64(1), append(frame(f, wireResponse{Status: statusOK, Count: 1}), frame(f, wireResponse{Status: statusOK, Size: 1 << 62})...))
	f.Add(uint64(0), []byte{0, 0, 0x40, 1}) // a header over the limit
	f.Add(uint64(0), []byte{})

	opts := DownloadOptions{}
	opts.defaults()
	f.Fuzz(func(t *testing.T, sel uint64, b []byte) {
		idx := fuzzChildren(c, sel)
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		rep := newReporter(opts, coll, len(idx))
		run := &batchRun{s: cl, coll: coll, c: c, opts: &opts, rep: rep, cancel: cancel,
			state: map[int]entryState{}, remaining: len(idx), inflight: map[*batchTask]struct{}{}, banned: map[string]bool{}}
		task := &batchTask{entries: idx}
		stall := time.NewTimer(time.Hour)
		defer stall.Stop()
		err := run.read(ctx, newRangeConn(fuzzStream{bytes.NewReader(b)}), new(verifier), task, rep.provider("p"), stall)

		// Empty the store for the next input; what is found there is
		// checked below.
		defer func() {
			for _, e := range c.Entries {
				if _, found, _ := cl.rawEntry(e.Hash); found {
					if err := cl.Delete(e.Hash); err != nil {
						t.Fatal(err)
					}
				}
			}
			if left := dirFiles(t, cl); len(left) != 0 {
				t.Fatalf("files left in the store: %v", left)
			}
		}()
		for i, ei := range idx {
			e := c.Entries[ei]
			st := run.state[ei]
			switch {
			case i < task.next && st != entryStored && st != entryLeft:
				t.Fatalf("entry %d counted as dealt with (next %d) but neither stored nor left", ei, task.next)
			case i >= task.next && st != entryPending:
				t.Fatalf("entry %d past next %d is not pending", ei, task.next)
			}
			re, found, rerr := cl.rawEntry(e.Hash)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if st != entryStored {
				if found {
					t.Fatalf("entry %d not stored, but the store holds %s (state %d)", ei, e.Hash, re.State)
				}
				continue
			}
			got, rerr := cl.ReadAll(e.Hash, MaxCollectionSize)
			if !found || re.State != stateComplete || rerr != nil || !bytes.Equal(got, blobs[e.Hash]) {
				t.Fatalf("entry %d stored, but the store's blob is not its bytes (%v)", ei, rerr)
			}
		}
		if err == nil {
			if task.next != len(idx) {
				t.Fatalf("answer accepted after %d of %d entries", task.next, len(idx))
			}
			return
		}
		if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotFound) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("read error %v is not ErrProtocol, ErrCorrupt, ErrNotFound or io.ErrUnexpectedEOF", err)
		}
		if len(b) >= 4 && binary.BigEndian.Uint32(b) > maxResponseFrame && !errors.As(err, new(*LimitError)) {
			t.Fatalf("header of %d bytes over the limit refused with %v, want a *LimitError", binary.BigEndian.Uint32(b), err)
		}
	})
}

// FuzzApplyDelta: a provider's delta body (delta.go), applied to a base of
// 0..4 KiB for a target of the fuzzed size. Whatever it sends, applyDelta
// returns exactly size bytes or an error that wraps ErrCorrupt or
// io.ErrUnexpectedEOF, and a delta made by deltaOps rebuilds its target
// and reads to its end.
func FuzzApplyDelta(f *testing.F) {
	base := content(4096, 5)
	for _, t := range [][]byte{
		append(append(bytes.Clone(base[:1000]), "changed"...), base[1500:]...),
		append([]byte("head"), base...),
		append(bytes.Clone(base), "tail"...),
		[]byte("all new"),
	} {
		var b bytes.Buffer
		writeDelta(&b, deltaOps(base, t, deltaSkip(base, t)))
		f.Add(b.Bytes(), uint16(len(base)), uint32(len(t)))
	}
	var zb bytes.Buffer
	zt := append(append(bytes.Clone(base[:100]), make([]byte, 32)...), base[132:]...)
	writeDelta(&zb, zeroOps(deltaOps(base, zt, 0)))
	f.Add(zb.Bytes(), uint16(len(base)), uint32(len(zt)))
	f.Add([]byte{deltaZeros, 32, deltaLiteral, 1, 'x'}, uint16(0), uint32(33))
	f.Add([]byte{deltaCopy, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, uint16(100), uint32(50))
	f.Add([]byte{deltaLiteral, 0xff, 0xff, 0xff, 0xff, 0x0f}, uint16(0), uint32(1<<20))
	f.Fuzz(func(t *testing.T, body []byte, baseLen uint16, size uint32) {
		b := base[:min(int(baseLen), len(base))]
		r := bytes.NewReader(body)
		out, err := applyDelta(r, b, int64(size))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("applyDelta error %v is neither ErrCorrupt nor io.ErrUnexpectedEOF", err)
			}
			return
		}
		if int64(len(out)) != int64(size) {
			t.Fatalf("applyDelta returned %d bytes for a %d-byte target", len(out), size)
		}
		// What deltaOps makes of base and out rebuilds out.
		var d bytes.Buffer
		writeDelta(&d, deltaOps(b, out, deltaSkip(b, out)))
		again, err := applyDelta(&d, b, int64(len(out)))
		if err != nil || !bytes.Equal(again, out) || d.Len() != 0 {
			t.Fatalf("deltaOps round trip: %v (%d bytes left)", err, d.Len())
		}
		// And so do those ops with their zeros split out (zeroOps).
		writeDelta(&d, zeroOps(deltaOps(b, out, deltaSkip(b, out))))
		again, err = applyDelta(&d, b, int64(len(out)))
		if err != nil || !bytes.Equal(again, out) || d.Len() != 0 {
			t.Fatalf("zeroOps round trip: %v (%d bytes left)", err, d.Len())
		}
	})
}

// FuzzApplyListRuns: a provider's list-runs answer (listdelta.go) against
// an old list of four 1 KiB chunks the receiver holds. Whatever it sends,
// applyListRuns returns a list that decodes, without a zero hash, whose
// rebuilt chunks hash to what it names, or an error that wraps ErrCorrupt
// or io.ErrUnexpectedEOF; the answer a store writes for a 5-byte
// insertion rebuilds the new list exactly.
func FuzzApplyListRuns(f *testing.F) {
	srv := newTestStore(f)
	ctx := context.Background()
	data := content(4096, 6)
	cut := func(b []byte, sizes ...int) (*ChunkList, []byte) {
		l := &ChunkList{}
		for _, n := range sizes {
			h, err := srv.AddBytes(ctx, b[:n])
			if err != nil {
				f.Fatal(err)
			}
			l.Chunks = append(l.Chunks, ChunkRef{Hash: h, Size: int64(n)})
			b = b[n:]
		}
		enc, err := l.Encode()
		if err != nil {
			f.Fatal(err)
		}
		return l, enc
	}
	old, oldB := cut(data, 1024, 1024, 1024, 1024)
	next, nextB := cut(append([]byte("hello"), data...), 1029, 1024, 1024, 1024)
	var ans bytes.Buffer
	if err := srv.writeListRuns(&ans, oldB, nextB, old, next, nil); err != nil {
		f.Fatal(err)
	}
	resp, err := readResponse(&ans)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ans.Bytes(), uint32(resp.Size))
	f.Add([]byte{deltaCopy, 0, 9, deltaZeros, 32, deltaCopy, 41, 0x83, 0x01}, uint32(len(oldB)))
	readBase := func(cs []ChunkRef) ([]byte, error) { return srv.readLocalRun(cs) }
	list, _, err := applyListRuns(bytes.NewReader(ans.Bytes()), oldB, old, int64(resp.Size), readBase)
	if err != nil || !bytes.Equal(list, nextB) {
		f.Fatalf("a store's list-runs answer: %v, list equal %v", err, bytes.Equal(list, nextB))
	}
	f.Fuzz(func(t *testing.T, body []byte, size uint32) {
		list, runs, err := applyListRuns(bytes.NewReader(body), oldB, old, int64(size), readBase)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("applyListRuns error %v is neither ErrCorrupt nor io.ErrUnexpectedEOF", err)
			}
			return
		}
		l, err := DecodeChunkList(list)
		if err != nil {
			t.Fatalf("applyListRuns returned a list that does not decode: %v", err)
		}
		for i, c := range l.Chunks {
			if c.Hash.IsZero() {
				t.Fatalf("chunk %d keeps a zero hash", i)
			}
		}
		for _, rn := range runs {
			if err := verifyRun(rn.Chunks, rn.Data); err != nil {
				t.Fatal(err)
			}
		}
	})
}
