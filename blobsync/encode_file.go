package blobsync

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"
)

// The file path of the encoder: a blob whose bytes sit in a file (its own
// data file, a pack's slice, a referenced file) is served without the copy
// through a read buffer. The stream is assembled in the encoder's batch
// buffer: each parent is copied there from the outboard, and each group's
// place is left free and then filled by one vectored read (preadv on
// Linux) per run of groups that are contiguous in the file, straight from
// the page cache. A batch larger than the serve loop's write buffer goes
// to the stream in one write, without passing through that buffer.
//
// On the sender of a 1 GiB blob this saves one memory copy of every byte
// (docs/BENCHMARKS.md, "The sender reads into its write buffer").

// batchSize is the encoder's batch buffer: a batch is flushed when the
// next group or parent does not fit, so each full batch holds at least
// ioBufSize bytes and goes to the stream in one write.
const batchSize = ioBufSize + ChunkGroupSize + parentSize

// batchPool holds batch buffers (*[batchSize]byte) between serving
// streams, so a server answering many short streams does not allocate
// 272 KiB for each.
var batchPool = sync.Pool{New: func() any { return new([batchSize]byte) }}

// slot is a part of the batch buffer still to be read from the file: n
// bytes at out[at:] from blob offset off.
type slot struct {
	at, n int
	off   int64
}

// fileBatch is the batch state of one encodeFile call: the streamOut of
// the file path.
type fileBatch struct {
	e    *encoder
	f    *os.File
	base int64 // the blob's offset in f (a pack's slice), 0 otherwise
	size uint64
	bw   *bufio.Writer
	fill int
}

// encodeFile writes the stream of a blob of size bytes held in f from
// offset base, for ranges (nil: the whole blob), as encode does with a
// reader. bw is the serve loop's buffered writer; when e.direct, the
// writer under it, is set, a batch of at least ioBufSize bytes is written
// there after bw is flushed. A file shorter than base+size, or that
// cannot be read, ends the stream with ErrCorrupt before the batch that
// needed the missing bytes is written.
func (e *encoder) encodeFile(bw *bufio.Writer, f *os.File, base int64, outboard *fwdReader, size uint64, ranges []ChunkRange, done func() error) error {
	if e.out == nil {
		e.out = batchPool.Get().(*[batchSize]byte)[:]
	}
	b := &fileBatch{e: e, f: f, base: base, size: size, bw: bw}
	e.slots = e.slots[:0]
	if err := walkStream(b, outboard, 0, size, ranges, done); err != nil {
		return err
	}
	return b.flush()
}

// release returns the encoder's batch buffer, if it took one from
// batchPool, to it; the encoder may be used again after.
func (e *encoder) release() {
	if len(e.out) == batchSize {
		batchPool.Put((*[batchSize]byte)(e.out))
	}
	e.out = nil
	clear(e.iov)
	e.iov = e.iov[:0]
}

// skipData: a group left out is simply not read.
func (b *fileBatch) skipData(uint64) error { return nil }

// group leaves n bytes of the batch for the group at blob offset start,
// joined to the previous slot when it ends where this one starts in both
// the batch and the file (sibling groups).
func (b *fileBatch) group(start, n uint64) error {
	e := b.e
	if b.fill+int(n) > len(e.out) {
		if err := b.flush(); err != nil {
			return err
		}
	}
	off := int64(start)
	if k := len(e.slots) - 1; k >= 0 {
		if s := &e.slots[k]; s.at+s.n == b.fill && s.off+int64(s.n) == off {
			s.n += int(n)
			b.fill += int(n)
			return nil
		}
	}
	e.slots = append(e.slots, slot{at: b.fill, n: int(n), off: off})
	b.fill += int(n)
	return nil
}

func (b *fileBatch) parent(outboard *fwdReader) error {
	e := b.e
	if b.fill+parentSize > len(e.out) {
		if err := b.flush(); err != nil {
			return err
		}
	}
	if _, err := io.ReadFull(outboard, e.out[b.fill:b.fill+parentSize]); err != nil {
		return fmt.Errorf("%w: read outboard: %v", ErrCorrupt, err)
	}
	b.fill += parentSize
	return nil
}

// flush reads the batch's slots from the file, one vectored read per run
// of slots contiguous in the file, and writes the batch.
func (b *fileBatch) flush() error {
	e := b.e
	for i := 0; i < len(e.slots); {
		j := i + 1
		for j < len(e.slots) && e.slots[j].off == e.slots[j-1].off+int64(e.slots[j-1].n) {
			j++
		}
		e.iov = e.iov[:0]
		for _, s := range e.slots[i:j] {
			e.iov = append(e.iov, e.out[s.at:s.at+s.n])
		}
		if err := preadFull(b.f, e.iov, b.base+e.slots[i].off); err != nil {
			return fmt.Errorf("%w: read data at %d of %d bytes: %v", ErrCorrupt, e.slots[i].off, b.size, err)
		}
		i = j
	}
	e.slots = e.slots[:0]
	out := e.out[:b.fill]
	b.fill = 0
	if len(out) == 0 {
		return nil
	}
	if e.direct != nil && len(out) >= ioBufSize {
		if err := b.bw.Flush(); err != nil {
			return err
		}
		_, err := e.direct.Write(out)
		return err
	}
	_, err := b.bw.Write(out)
	return err
}

// readAtFull fills each of bufs in turn from f at off with ReadAt: the
// fallback of preadFull.
func readAtFull(f *os.File, bufs [][]byte, off int64) error {
	for _, p := range bufs {
		n, err := f.ReadAt(p, off)
		if n < len(p) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		off += int64(n)
	}
	return nil
}
