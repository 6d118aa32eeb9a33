package blobsync

import (
	"errors"
	"fmt"
	"io"
)

// verifier checks a blob's combined stream (see encode.go) against its
// hash, one chunk group at a time, before a byte of the group is passed on.
// It keeps a stack of the chaining values still expected, so its memory is
// one 16 KiB group buffer plus O(log size). A verifier is reusable but not
// safe for concurrent use.
type verifier struct {
	buf   [ChunkGroupSize]byte
	stack []expect
}

// expect is a subtree whose chaining value is known but not yet checked.
type expect struct {
	cv    [8]uint32
	start uint64 // first byte of the subtree in the blob
	n     uint64 // bytes in the subtree
	root  bool   // the top of the tree: BLAKE3's ROOT flag applies
}

// progressStep is how often (in verified bytes) verify calls its progress
// function; it is also called once at the end.
const progressStep = 1 << 20

// verify reads the combined stream of a blob of size bytes named root from r.
// It checks each parent node and each chunk group against the chaining value
// its parent (or root) promised, and only then writes the group's bytes to
// data and the parent (in pre-order: the outboard's layout, without its
// header) to outboard, which may be nil. progress, if not nil, gets the
// verified byte count at least every MiB and at the end.
//
// It returns an error wrapping ErrCorrupt at the first group or parent that
// does not match, io.ErrUnexpectedEOF if r ends early, or the error of a
// writer or of progress. It reads exactly encodedSize(size) bytes.
func (v *verifier) verify(r io.Reader, root Hash, size uint64, data, outboard io.Writer, progress func(done uint64) error) error {
	if size > uint64(MaxBlobSize) {
		return &LimitError{What: "blob size", Limit: MaxBlobSize, Got: int64(min(size, 1<<62))}
	}
	v.stack = append(v.stack[:0], expect{cv: bytesToCV(root[:]), n: size, root: true})
	var done, reported uint64
	for len(v.stack) > 0 {
		e := v.stack[len(v.stack)-1]
		v.stack = v.stack[:len(v.stack)-1]
		if e.n > ChunkGroupSize {
			p := v.buf[:parentSize]
			if _, err := io.ReadFull(r, p); err != nil {
				return streamErr(err, e.start, size)
			}
			if parentCV(p, e.root) != e.cv {
				return fmt.Errorf("%w: parent node over bytes %d-%d", ErrCorrupt, e.start, e.start+e.n)
			}
			if outboard != nil {
				if _, err := outboard.Write(p); err != nil {
					return err
				}
			}
			mid := leftSize(e.n)
			v.stack = append(v.stack,
				expect{cv: bytesToCV(p[32:64]), start: e.start + mid, n: e.n - mid},
				expect{cv: bytesToCV(p[:32]), start: e.start, n: mid})
			continue
		}
		g := v.buf[:e.n]
		if _, err := io.ReadFull(r, g); err != nil {
			return streamErr(err, e.start, size)
		}
		if groupCV(&v.buf, int(e.n), e.start/ChunkSize, e.root) != e.cv {
			return fmt.Errorf("%w: chunk group %d (bytes %d-%d)", ErrCorrupt, e.start/ChunkGroupSize, e.start, e.start+e.n)
		}
		if _, err := data.Write(g); err != nil {
			return err
		}
		done += e.n
		if progress != nil && (done-reported >= progressStep || done == size) {
			reported = done
			if err := progress(done); err != nil {
				return err
			}
		}
	}
	return nil
}

func streamErr(err error, at, size uint64) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("blobsync: blob stream broke near byte %d of %d: %w", at, size, err)
}
