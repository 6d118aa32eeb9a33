package blobsync

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// lendSink lends the verifier one large buffer, as groupSink lends its
// write buffer, and records the groups it was handed.
type lendSink struct {
	buf    []byte
	at     uint64 // byte offset of buf[0] in the blob
	starts []uint64
}

func (s *lendSink) parent(uint64, []byte) error { return nil }

func (s *lendSink) lend(start uint64) ([]byte, error) { return s.buf[start-s.at:], nil }

func (s *lendSink) group(start uint64, g []byte) error {
	if &g[0] != &s.buf[start-s.at] {
		return errors.New("group not read in place")
	}
	s.starts = append(s.starts, start)
	return nil
}

// countReader counts the Read calls made on it.
type countReader struct {
	r     io.Reader
	calls int
}

func (c *countReader) Read(p []byte) (int, error) {
	c.calls++
	return c.r.Read(p)
}

// TestVerifySiblingsInOneRead: with a lender, the verifier reads two
// sibling groups in one call (a 1 MiB blob's 64 groups in 32 reads beside
// the parents') and hands over each, in place, only once it verified; a
// bad second sibling leaves the first handed over and the second not; a
// stream that ends inside the second sibling still yields the first; and
// a range request that skips a sibling never reads past the stream.
func TestVerifySiblingsInOneRead(t *testing.T) {
	const size = 1 << 20
	data := content(size, 11)
	h, ob, err := ComputeOutboard(bytes.NewReader(data), size)
	if err != nil {
		t.Fatal(err)
	}
	var stream bytes.Buffer
	if err := WriteStream(&stream, bytes.NewReader(data), ob, size); err != nil {
		t.Fatal(err)
	}
	groups := size / ChunkGroupSize
	parents := groups - 1
	run := func(s []byte, ranges []ChunkRange) (*lendSink, *countReader, error) {
		sink := &lendSink{buf: make([]byte, size)}
		cr := &countReader{r: bytes.NewReader(s)}
		return sink, cr, new(verifier).verify(cr, h, size, ranges, sink, nil)
	}

	sink, cr, err := run(stream.Bytes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sink.buf, data) || len(sink.starts) != groups {
		t.Fatalf("%d groups handed over, bytes equal %v", len(sink.starts), bytes.Equal(sink.buf, data))
	}
	if want := parents + groups/2; cr.calls > want {
		t.Fatalf("%d reads for %d parents and %d groups, want at most %d", cr.calls, parents, groups, want)
	}

	// Group 1 (the second of the first pair) is bad: group 0 is handed
	// over, group 1 is not. Its bytes sit after the parents above it.
	bad := bytes.Clone(stream.Bytes())
	off := 0
	for n := uint64(size); n > ChunkGroupSize; n = leftSize(n) {
		off += parentSize
	}
	bad[off+ChunkGroupSize+100] ^= 1
	sink, _, err = run(bad, nil)
	if !errors.Is(err, ErrCorrupt) || len(sink.starts) != 1 || sink.starts[0] != 0 {
		t.Fatalf("bad second sibling: %v, groups handed over %v; want ErrCorrupt after group 0 only", err, sink.starts)
	}

	// The stream ends inside group 1: group 0 still counts.
	sink, _, err = run(stream.Bytes()[:off+ChunkGroupSize+500], nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(sink.starts) != 1 {
		t.Fatalf("stream cut in the second sibling: %v, groups %v; want unexpected EOF after group 0", err, sink.starts)
	}

	// Ranges that take group 2 but not its sibling 3, then group 5: the
	// stream holds no bytes of 3, and the verifier reads none.
	ranges := []ChunkRange{{2, 3}, {5, 6}}
	var rs bytes.Buffer
	enc := new(encoder)
	if err := enc.encode(&rs, newFwdReader(bytes.NewReader(data), ioBufSize), newFwdReader(bytes.NewReader(ob[outboardHeader:]), 64<<10), size, ranges, nil); err != nil {
		t.Fatal(err)
	}
	sink = &lendSink{buf: make([]byte, size)}
	r := bytes.NewReader(rs.Bytes())
	if err := new(verifier).verify(r, h, size, ranges, sink, nil); err != nil {
		t.Fatal(err)
	}
	if r.Len() != 0 || len(sink.starts) != 2 || sink.starts[0] != 2*ChunkGroupSize || sink.starts[1] != 5*ChunkGroupSize {
		t.Fatalf("ranges: %d bytes left unread, groups %v", r.Len(), sink.starts)
	}
}
