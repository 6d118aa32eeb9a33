package blobsync

import (
	"encoding/binary"
	"fmt"
	"io"
)

// The whole-blob stream ("combined" encoding) is what lukechampine.com's
// bao.Encode(dst, data, size, ChunkGroupLog, false) writes, minus its 8-byte
// length prefix (the size travels in the response header): a pre-order walk
// of the BLAKE3 tree down to 16 KiB groups, where each parent node (left CV
// || right CV, 64 bytes) comes before its two subtrees and each group's bytes
// are a leaf. A node over n bytes has a left subtree of leftSize(n) bytes.
//
// The outboard file holds the same parents in the same order, after an
// 8-byte little-endian size, so the server builds the stream by merging two
// sequential reads (outboard and data) and the receiver builds the outboard
// by writing the parents it verified.

// encoder writes a blob's combined stream from its data and outboard readers
// with bounded memory (one group buffer).
type encoder struct {
	buf [ChunkGroupSize]byte
}

// encode writes the combined stream of a blob of size bytes to w. data yields
// the blob's bytes from its start; outboard yields its outboard after the
// 8-byte header (nil when size <= ChunkGroupSize). done, if not nil, is
// checked between groups so a cancelled server stops promptly.
func (e *encoder) encode(w io.Writer, data, outboard io.Reader, size uint64, done func() error) error {
	return e.node(w, data, outboard, size, done)
}

func (e *encoder) node(w io.Writer, data, outboard io.Reader, n uint64, done func() error) error {
	if n <= ChunkGroupSize {
		if done != nil {
			if err := done(); err != nil {
				return err
			}
		}
		g := e.buf[:n]
		if _, err := io.ReadFull(data, g); err != nil {
			return fmt.Errorf("%w: read data: %v", ErrCorrupt, err)
		}
		_, err := w.Write(g)
		return err
	}
	p := e.buf[:parentSize]
	if _, err := io.ReadFull(outboard, p); err != nil {
		return fmt.Errorf("%w: read outboard: %v", ErrCorrupt, err)
	}
	if _, err := w.Write(p); err != nil {
		return err
	}
	mid := leftSize(n)
	if err := e.node(w, data, outboard, mid, done); err != nil {
		return err
	}
	return e.node(w, data, outboard, n-mid, done)
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
