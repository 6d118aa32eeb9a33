package blobsync

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"
)

// The whole-blob stream ("combined" encoding) is what lukechampine.com's
// bao.Encode(dst, data, size, ChunkGroupLog, false) writes, minus its 8-byte
// length prefix (the size travels in the response header): a pre-order walk
// of the BLAKE3 tree down to 16 KiB groups, where each parent node (left CV
// || right CV, 64 bytes) comes before its two subtrees and each group's bytes
// are a leaf. A node over n bytes has a left subtree of leftSize(n) bytes.
//
// A ranged stream is the same walk restricted to the nodes whose groups
// intersect the requested ranges (bao's slice encoding, with ranges of
// groups): a subtree that holds no requested group is left out entirely.
//
// The outboard file holds the same parents in the same order, after an
// 8-byte little-endian size, so the server builds the stream by merging two
// forward-only reads (outboard and data) and the receiver of a whole blob
// builds the outboard by writing the parents it verified.

// encoder writes a blob's stream from its data and outboard with bounded
// memory (one group buffer).
type encoder struct {
	buf [ChunkGroupSize]byte

	// The file path (encode_file.go): the batch buffer, its slots still
	// to be read, the vectored read's buffers, and direct, the writer
	// under the serve loop's buffered writer (nil: batches go through
	// the buffered writer).
	out    []byte
	slots  []slot
	iov    [][]byte
	direct io.Writer
}

// encode writes the stream of a blob of size bytes for ranges (nil: the
// whole blob) to w. data yields the blob's bytes from its start; outboard
// yields its outboard after the 8-byte header (nil when size <=
// ChunkGroupSize). done, if not nil, is checked before each group so a
// cancelled server stops promptly.
func (e *encoder) encode(w io.Writer, data, outboard *fwdReader, size uint64, ranges []ChunkRange, done func() error) error {
	return walkStream(&readerOut{w: w, data: data, buf: &e.buf}, outboard, 0, size, ranges, done)
}

// streamOut is what walkStream puts the stream into.
type streamOut interface {
	// skipData passes over n bytes of the blob's data that the stream
	// leaves out.
	skipData(n uint64) error
	// group puts the group of n bytes at blob offset start.
	group(start, n uint64) error
	// parent puts the next parent, read from outboard.
	parent(outboard *fwdReader) error
}

// walkStream walks the subtree over n bytes at blob offset start in the
// stream's order (pre-order, subtrees that hold none of ranges left out),
// putting its parents and groups into out.
func walkStream(out streamOut, outboard *fwdReader, start, n uint64, ranges []ChunkRange, done func() error) error {
	if ranges != nil && !intersects(ranges, start, n) {
		if err := out.skipData(n); err != nil {
			return err
		}
		if n > ChunkGroupSize {
			if err := outboard.skip(parentSize * (numGroups(n) - 1)); err != nil {
				return fmt.Errorf("%w: skip outboard: %v", ErrCorrupt, err)
			}
		}
		return nil
	}
	if n <= ChunkGroupSize {
		if done != nil {
			if err := done(); err != nil {
				return err
			}
		}
		return out.group(start, n)
	}
	if err := out.parent(outboard); err != nil {
		return err
	}
	mid := leftSize(n)
	if err := walkStream(out, outboard, start, mid, ranges, done); err != nil {
		return err
	}
	return walkStream(out, outboard, start+mid, n-mid, ranges, done)
}

// readerOut writes the stream to w, the groups from the data reader.
type readerOut struct {
	w    io.Writer
	data *fwdReader
	buf  *[ChunkGroupSize]byte
}

func (r *readerOut) skipData(n uint64) error {
	if err := r.data.skip(n); err != nil {
		return fmt.Errorf("%w: skip data: %v", ErrCorrupt, err)
	}
	return nil
}

func (r *readerOut) group(_, n uint64) error {
	// The group goes out straight from the reader's buffer (no copy).
	g, err := r.data.Peek(int(n))
	if err != nil {
		return fmt.Errorf("%w: read data: %v", ErrCorrupt, err)
	}
	if _, err := r.w.Write(g); err != nil {
		return err
	}
	_, err = r.data.Discard(int(n))
	return err
}

func (r *readerOut) parent(outboard *fwdReader) error {
	p := r.buf[:parentSize]
	if _, err := io.ReadFull(outboard, p); err != nil {
		return fmt.Errorf("%w: read outboard: %v", ErrCorrupt, err)
	}
	_, err := r.w.Write(p)
	return err
}

// intersects reports whether the subtree over bytes [start, start+n) holds a
// group of the sorted, disjoint ranges.
func intersects(ranges []ChunkRange, start, n uint64) bool {
	lo := start / ChunkGroupSize
	hi := lo + numGroups(n)
	i := sort.Search(len(ranges), func(i int) bool { return ranges[i].End > lo })
	return i < len(ranges) && ranges[i].Start < hi
}

// fwdReader is a buffered forward-only reader that can skip ahead, seeking
// when the source allows it instead of reading the skipped bytes.
type fwdReader struct {
	*bufio.Reader
	src  io.Reader
	pool *sync.Pool // where the buffer goes back (pooledFwdReader)
}

// newFwdReader buffers r with size bytes, at least one chunk group (the
// encoder peeks whole groups).
func newFwdReader(r io.Reader, size int) *fwdReader {
	return &fwdReader{Reader: bufio.NewReaderSize(r, max(size, ChunkGroupSize)), src: r}
}

// fwdPools hold the buffered readers of pooledFwdReader, by buffer size.
// A sender serving a collection's small files used to allocate a buffer
// per blob (100 KB for a 100 KB file: 200 MB of garbage for 2000 of them).
var fwdPools = [...]struct {
	size int
	pool sync.Pool
}{{size: ChunkGroupSize}, {size: 64 << 10}, {size: ioBufSize}}

// pooledFwdReader is newFwdReader with a buffer of the smallest pooled
// size that holds size bytes (at most ioBufSize), taken from a pool:
// release it when done.
func pooledFwdReader(r io.Reader, size int) *fwdReader {
	for i := range fwdPools {
		p := &fwdPools[i]
		if size <= p.size || i == len(fwdPools)-1 {
			if br, ok := p.pool.Get().(*bufio.Reader); ok {
				br.Reset(r)
				return &fwdReader{Reader: br, src: r, pool: &p.pool}
			}
			return &fwdReader{Reader: bufio.NewReaderSize(r, p.size), src: r, pool: &p.pool}
		}
	}
	panic("unreachable")
}

// release returns a pooled reader's buffer; r is not used after. A
// reader from newFwdReader (or nil) is left to the garbage collector.
func (r *fwdReader) release() {
	if r == nil || r.pool == nil {
		return
	}
	r.Reader.Reset(nil)
	r.pool.Put(r.Reader)
	r.Reader, r.pool = nil, nil
}

func (r *fwdReader) skip(n uint64) error {
	b := uint64(r.Buffered())
	s, ok := r.src.(io.Seeker)
	if n <= b || !ok {
		for n > 0 {
			k := min(n, 1<<30)
			if _, err := r.Discard(int(k)); err != nil {
				return err
			}
			n -= k
		}
		return nil
	}
	r.Discard(int(b))
	if _, err := s.Seek(int64(n-b), io.SeekCurrent); err != nil {
		return err
	}
	r.Reset(r.src)
	return nil
}

// readOutboardHeader reads and checks the 8-byte size header of an outboard.
func readOutboardHeader(r io.Reader, size uint64) error {
	var b [outboardHeader]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("%w: outboard header: %v", ErrCorrupt, err)
	}
	if got := binary.LittleEndian.Uint64(b[:]); got != size {
		return fmt.Errorf("%w: outboard says size %d, entry says %d", ErrCorrupt, got, size)
	}
	return nil
}
