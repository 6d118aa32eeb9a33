package blobsync

import (
	"errors"
	"fmt"
	"io"
)

// verifier checks a blob's stream (see encode.go) against its hash, one
// chunk group at a time, before a byte of the group is passed on. It keeps a
// stack of the chaining values still expected, so its memory is one 16 KiB
// group buffer plus O(log size). A verifier is reusable but not safe for
// concurrent use.
type verifier struct {
	buf   [ChunkGroupSize]byte
	stack []expect
}

// expect is a subtree whose chaining value is known but not yet checked.
type expect struct {
	cv    [8]uint32
	start uint64 // first byte of the subtree in the blob
	n     uint64 // bytes in the subtree
	pidx  uint64 // pre-order index of the subtree's top parent in the outboard
	root  bool   // the top of the tree: BLAKE3's ROOT flag applies
}

// sink receives what the verifier has verified.
type sink interface {
	// parent gets a verified parent node (64 bytes) and its pre-order index
	// in the outboard (byte offset outboardHeader + 64*index).
	parent(index uint64, p []byte) error
	// group gets a verified chunk group and its byte offset in the blob.
	group(start uint64, g []byte) error
}

// groupLender is a sink that lends the verifier the memory to read a
// whole group into, saving a copy: lend returns at least ChunkGroupSize
// bytes for the group at byte offset start (the groups after it may
// follow in the rest), or nil to use the verifier's own buffer. The
// verifier then calls group with exactly the first ChunkGroupSize bytes
// if, and only if, the group verified; when it read the next group of the
// stream into the next ChunkGroupSize bytes (two sibling groups, one read:
// half the stream's read calls), it calls group with those too if that
// group verified, and otherwise leaves them.
type groupLender interface {
	lend(start uint64) ([]byte, error)
}

// seqSink writes a whole blob's verified groups and parents in stream order:
// data gets the blob's bytes, outboard (may be nil) the outboard's parents.
type seqSink struct {
	data, outboard io.Writer
}

func (s seqSink) parent(_ uint64, p []byte) error {
	if s.outboard == nil {
		return nil
	}
	_, err := s.outboard.Write(p)
	return err
}

func (s seqSink) group(_ uint64, g []byte) error {
	_, err := s.data.Write(g)
	return err
}

// progressStep is how often (in verified bytes) verify calls its progress
// function; it is also called once at the end.
const progressStep = 1 << 20

// verify reads the stream of a blob of size bytes named root from r, for
// ranges (nil: the whole blob; else sorted, disjoint, as sent in the
// request). It checks each parent node and each chunk group against the
// chaining value its parent (or root) promised, and only then hands it to
// out. progress, if not nil, gets the verified byte count at least every MiB
// and once at the end.
//
// It returns an error wrapping ErrCorrupt at the first group or parent that
// does not match, io.ErrUnexpectedEOF if r ends early, or the error of out or
// of progress. It reads exactly the stream's length, never more.
func (v *verifier) verify(r io.Reader, root Hash, size uint64, ranges []ChunkRange, out sink, progress func(done uint64) error) error {
	if size > uint64(MaxBlobSize) {
		return &LimitError{What: "blob size", Limit: MaxBlobSize, Got: int64(min(size, 1<<62))}
	}
	v.stack = append(v.stack[:0], expect{cv: bytesToCV(root[:]), n: size, root: true})
	var done, reported uint64
	called := false
	for len(v.stack) > 0 {
		e := v.stack[len(v.stack)-1]
		v.stack = v.stack[:len(v.stack)-1]
		if ranges != nil && !intersects(ranges, e.start, e.n) {
			continue
		}
		if e.n > ChunkGroupSize {
			p := v.buf[:parentSize]
			if _, err := io.ReadFull(r, p); err != nil {
				return streamErr(err, e.start, size)
			}
			if parentCV(p, e.root) != e.cv {
				return fmt.Errorf("%w: parent node over bytes %d-%d", ErrCorrupt, e.start, e.start+e.n)
			}
			if err := out.parent(e.pidx, p); err != nil {
				return err
			}
			mid := leftSize(e.n)
			v.stack = append(v.stack,
				expect{cv: bytesToCV(p[32:64]), start: e.start + mid, n: e.n - mid, pidx: e.pidx + numGroups(mid)},
				expect{cv: bytesToCV(p[:32]), start: e.start, n: mid, pidx: e.pidx + 1})
			continue
		}
		arr := &v.buf
		var pair []byte                // this group's room and its sibling's, read at once
		var next *[ChunkGroupSize]byte // the sibling's
		if l, ok := out.(groupLender); ok && e.n == ChunkGroupSize {
			b, err := l.lend(e.start)
			if err != nil {
				return err
			}
			if len(b) >= ChunkGroupSize {
				arr = (*[ChunkGroupSize]byte)(b)
			}
			if len(b) >= 2*ChunkGroupSize && v.nextIsSibling(e, ranges) {
				pair = b[:2*ChunkGroupSize]
				next = (*[ChunkGroupSize]byte)(pair[ChunkGroupSize:])
			}
		}
		g := arr[:e.n]
		var rerr error
		if next != nil {
			// One read for both: the sibling's bytes follow in the stream
			// and in the lent buffer. A stream that breaks inside the
			// sibling still yields this group.
			var n int
			n, rerr = io.ReadFull(r, pair)
			if n < ChunkGroupSize {
				return streamErr(rerr, e.start, size)
			}
		} else if _, err := io.ReadFull(r, g); err != nil {
			return streamErr(err, e.start, size)
		}
		if err := v.pass(arr, e, out); err != nil {
			return err
		}
		done += e.n
		if next != nil {
			if rerr != nil {
				return streamErr(rerr, e.start+e.n, size)
			}
			e = v.stack[len(v.stack)-1]
			v.stack = v.stack[:len(v.stack)-1]
			if err := v.pass(next, e, out); err != nil {
				return err
			}
			done += e.n
		}
		if progress != nil && done-reported >= progressStep {
			reported, called = done, true
			if err := progress(done); err != nil {
				return err
			}
		}
	}
	if progress != nil && (!called || reported != done) {
		return progress(done)
	}
	return nil
}

// nextIsSibling reports whether the subtree the verifier takes after
// group e is a whole group that the stream sends right after e's bytes:
// next on the stack, starting where e ends, and not skipped by ranges.
func (v *verifier) nextIsSibling(e expect, ranges []ChunkRange) bool {
	if len(v.stack) == 0 {
		return false
	}
	nx := v.stack[len(v.stack)-1]
	return nx.n == ChunkGroupSize && nx.start == e.start+e.n && (ranges == nil || intersects(ranges, nx.start, nx.n))
}

// pass checks group e, read into arr, against the chaining value its
// parent promised and hands it to out.
func (v *verifier) pass(arr *[ChunkGroupSize]byte, e expect, out sink) error {
	if groupCV(arr, int(e.n), e.start/ChunkSize, e.root) != e.cv {
		return fmt.Errorf("%w: chunk group %d (bytes %d-%d)", ErrCorrupt, e.start/ChunkGroupSize, e.start, e.start+e.n)
	}
	return out.group(e.start, arr[:e.n])
}

func streamErr(err error, at, size uint64) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("blobsync: blob stream broke near byte %d of %d: %w", at, size, err)
}
