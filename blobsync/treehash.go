package blobsync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"

	"lukechampine.com/blake3/guts"
)

// Hashing a blob in parallel over its BLAKE3 tree.
//
// The blob is cut into blocks of importBlock bytes, a power of two and a
// whole number of chunk groups. Every block that lies whole inside the
// blob is a node of the BLAKE3 tree (BLAKE3 spec §2.1: a left subtree is
// the largest power of two of chunks below the node's size, so aligned
// power-of-two runs are subtrees), and so is the last, shorter block (the
// right edge splits the same way); only the root flag of a blob that is a
// single block depends on the blob's length. So each block is hashed on
// its own, by whichever worker reads it, down to its 16 KiB groups, with
// its parents kept as a segment of the outboard; the parents above the
// blocks (one per block but one) are computed at the end from the
// blocks' chaining values, and the outboard is written in Bao's pre-order
// (docs/protocol.md) by interleaving them with the segments. The root is
// the plain BLAKE3 hash, the outboard byte for byte what bao.Encode with
// 16 KiB groups writes (tests check both).
//
// A file added by reference (AddFileRef) is hashed from a read-only
// mapping of it (treeSource.mem, mapFile) where the system has one: the
// workers hash the page cache's own pages instead of copying each block
// into a buffer with pread, which cost more CPU than the hashing (0.2 s
// against 0.18 s per GiB, docs/BENCHMARKS.md). A file truncated while it
// is mapped faults (SIGBUS) on the pages past its new end; the workers run
// with debug.SetPanicOnFault and turn such a fault into the same error as
// a short ReadAt. Only a source without a data callback is mapped: bytes
// that are also copied must be hashed from the copy's own buffer, which
// another process cannot change between the hash and the write.
//
// Memory: one block buffer per worker (from a mapping: only for a last
// block that ends inside a group), 32 bytes per block for the chaining
// values (1 GiB: 32 KiB; 1 TiB: 32 MiB), and the segments, 1/256 of the
// blob, in memory up to maxOutboardBuf and in a scratch file beside the
// store's files beyond. The parents above the blocks are recomputed
// from the chaining values as the outboard is written (O(blocks × depth)
// parent compressions, a few per block).

// importBlock is the bytes one worker reads, hashes and writes at a time
// (a power of two, at least ChunkGroupSize). Tests make it small so that
// small blobs have many blocks.
var importBlock uint64 = 1 << 20

// importWorkers returns how many workers hash a blob of nb blocks: four
// per core, so that the cores hash while other workers wait for the disk
// (and the disk sees several writes at once), at most 16.
func importWorkers(nb uint64) int {
	w := min(max(4*runtime.GOMAXPROCS(0), 2), 16)
	return int(min(uint64(w), max(nb, 1)))
}

// streamWorkers hash a stream: one reads the next block while the others
// hash and write theirs; a stream arrives far slower than one core hashes,
// so more would only hold more block buffers.
const streamWorkers = 3

// treeSource yields a blob's bytes: ra (random access: files, byte
// slices), read by the workers in parallel, of size bytes; or r
// (sequential: an upload), read one block at a time, whose end ends the
// blob, and which may not give more than limit bytes. mem, with ra, is
// ra's size bytes mapped into memory (mapFile), which the workers hash in
// place when there is no data callback; a fault touching it fails the
// hash like a short read (see hashTree).
type treeSource struct {
	ra    io.ReaderAt
	size  int64
	r     io.Reader
	limit int64
	mem   []byte
}

// blockHook, when not nil, is called by the worker that hashed block k,
// after hashing it; mapped tells whether it hashed from src.mem. Tests
// set it to change the source mid-hash.
var blockHook func(k uint64, mapped bool)

// treeHash is the result of hashTree.
type treeHash struct {
	root  Hash
	size  uint64
	block uint64
	cvs   [][8]uint32 // each block's chaining value
	segs  *segStore   // each block's parents, pre-order, at k*segLen(block)
}

// hashTree reads the blob from src once, hashing its blocks on
// importWorkers workers, and hands each block's bytes to data (nil: none)
// with its byte offset, from the worker that hashed it, so data is called
// concurrently and out of order. scratch is the directory for the
// segments' scratch file. On error nothing is left behind (the caller
// removes what data wrote). The result's close removes its scratch file.
//
// With src.mem (and data nil) the workers hash slices of src.mem, copying
// only a last block that ends inside a chunk group; a fault reading it (a
// mapped file truncated meanwhile) fails the hash with an error wrapping
// io.ErrUnexpectedEOF, as a short ReadAt does, and does not crash. A file
// changed in place but not in size is hashed as whatever bytes the workers
// saw: the caller checks size and mtime before and after (AddFileRef).
func hashTree(ctx context.Context, src treeSource, scratch string, data func(b []byte, off int64) error) (*treeHash, error) {
	if data != nil || src.ra == nil || src.size <= 0 || int64(len(src.mem)) != src.size {
		src.mem = nil
	}
	block := importBlock
	t := &treeRun{ctx: ctx, src: src, block: block, data: data,
		segs: &segStore{dir: scratch, limit: int64(maxOutboardBuf)}}
	nb := uint64(0)
	if src.ra != nil {
		if src.size < 0 || src.size > MaxBlobSize {
			return nil, &LimitError{What: "blob", Limit: MaxBlobSize, Got: src.size}
		}
		nb = max(1, (uint64(src.size)+block-1)/block)
		t.nb, t.size = nb, uint64(src.size)
		t.cvs = make([][8]uint32, nb)
	} else if src.limit < 0 || src.limit > MaxBlobSize {
		t.src.limit = MaxBlobSize
	}
	var wg sync.WaitGroup
	workers := importWorkers(nb)
	if src.ra == nil {
		workers = streamWorkers
	}
	for range workers {
		wg.Go(t.work)
	}
	wg.Wait()
	if t.err != nil {
		t.segs.close()
		return nil, t.err
	}
	th := &treeHash{size: t.size, block: block, cvs: t.cvs[:t.nb], segs: t.segs}
	var cv [8]uint32
	if t.nb == 1 {
		n := t.first
		n.Flags |= guts.FlagRoot
		cv = guts.ChainingValue(n)
	} else {
		th.node(0, th.size, &cv, nil)
	}
	cvToBytes(th.root[:], &cv)
	return th, nil
}

// treeRun is one hashTree call's shared state.
type treeRun struct {
	ctx   context.Context
	src   treeSource
	block uint64
	data  func([]byte, int64) error

	mu    sync.Mutex
	next  uint64 // the next block to claim
	nb    uint64 // ra: the blocks; r: the blocks read so far
	ended bool   // r: the source has ended
	size  uint64 // r: the bytes read so far; ra: the size
	cvs   [][8]uint32
	first guts.Node // block 0's top node: the root if it is the only block
	segs  *segStore
	err   error
	fail  atomic.Bool
}

func (t *treeRun) setErr(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.mu.Unlock()
	t.fail.Store(true)
}

// errShrank is the error of a source that ended before its size.
func errShrank(size int64) error {
	return fmt.Errorf("the source ended before its %d bytes (did it shrink?): %w", size, io.ErrUnexpectedEOF)
}

// claim returns the next block to hash and its n bytes, at the front of
// b, which has room for whole chunk groups: buf, read into, or a slice of
// src.mem (buf is then allocated only for a last block that ends inside
// a group, copied into it); ok is false when there is none left (or the
// run failed).
func (t *treeRun) claim(buf *[]byte) (k uint64, b []byte, n int, ok bool) {
	if t.fail.Load() {
		return 0, nil, 0, false
	}
	if err := t.ctx.Err(); err != nil {
		t.setErr(err)
		return 0, nil, 0, false
	}
	if t.src.ra != nil {
		t.mu.Lock()
		k = t.next
		if k >= t.nb {
			t.mu.Unlock()
			return 0, nil, 0, false
		}
		t.next++
		t.mu.Unlock()
		off := k * t.block
		n = int(min(t.block, uint64(t.src.size)-off))
		if t.src.mem != nil {
			b = t.src.mem[off : off+uint64(n)]
			if n%ChunkGroupSize == 0 {
				return k, b, n, true
			}
			copy(t.buf(buf), b)
			return k, *buf, n, true
		}
		if m, err := t.src.ra.ReadAt(t.buf(buf)[:n], int64(off)); m < n {
			if errors.Is(err, io.EOF) {
				err = errShrank(t.src.size)
			}
			t.setErr(err)
			return 0, nil, 0, false
		}
		return k, *buf, n, true
	}
	// A stream: one reader at a time, in order.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended || t.err != nil {
		return 0, nil, 0, false
	}
	n, err := io.ReadFull(t.src.r, t.buf(buf))
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		t.ended = true
		if n == 0 && t.nb > 0 {
			return 0, nil, 0, false
		}
	case err != nil:
		t.err = err
		t.fail.Store(true)
		return 0, nil, 0, false
	}
	if t.size+uint64(n) > uint64(t.src.limit) {
		t.err = &LimitError{What: "blob", Limit: t.src.limit, Got: int64(t.size) + int64(n)}
		t.fail.Store(true)
		return 0, nil, 0, false
	}
	k = t.nb
	t.nb++
	t.size += uint64(n)
	t.cvs = append(t.cvs, [8]uint32{})
	return k, *buf, n, true
}

// buf returns the worker's block buffer, allocating it on first use.
func (t *treeRun) buf(buf *[]byte) []byte {
	if *buf == nil {
		*buf = alignedBuf(int(t.block))[:t.block]
	}
	return *buf
}

// work hashes and hands on blocks until none is left.
func (t *treeRun) work() {
	if mem := t.src.mem; mem != nil {
		// A fault reading the mapping (its file was truncated) panics
		// instead of killing the process; recover it into an error.
		// Faults elsewhere are bugs and panic on.
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			start := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
			f, ok := r.(interface{ Addr() uintptr })
			if !ok || f.Addr() < start || f.Addr()-start >= uintptr(len(mem)) {
				panic(r)
			}
			t.setErr(fmt.Errorf("a fault reading byte %d of its mapping (a read error, or the file shrank): %w", f.Addr()-start, errShrank(t.src.size)))
		}()
	}
	var buf []byte
	seg := make([]byte, segLen(t.block))
	for {
		k, b, n, ok := t.claim(&buf)
		if !ok {
			return
		}
		node, rest := blockNode(b, uint64(n), k*t.block, seg)
		used := seg[:len(seg)-len(rest)]
		t.mu.Lock()
		t.cvs[k] = guts.ChainingValue(node)
		if k == 0 {
			t.first = node
		}
		err := t.segs.writeAt(used, int64(k*segLen(t.block)))
		t.mu.Unlock()
		if err == nil && t.data != nil {
			err = t.data(b[:n], int64(k*t.block))
		}
		if blockHook != nil {
			blockHook(k, t.src.mem != nil)
		}
		if err != nil {
			t.setErr(err)
			return
		}
	}
}

// segLen is the length of a whole block's segment: its parents.
func segLen(block uint64) uint64 { return (block/ChunkGroupSize - 1) * parentSize }

// blockNode hashes the n bytes of buf, which start at byte start of the
// blob, as one subtree down to its groups (buf has room for whole
// groups). It writes the subtree's parents in pre-order to the front of
// seg and returns the subtree's top node (without the root flag) and
// what is left of seg.
func blockNode(buf []byte, n, start uint64, seg []byte) (guts.Node, []byte) {
	if n <= ChunkGroupSize {
		return guts.CompressBuffer((*[ChunkGroupSize]byte)(buf[:ChunkGroupSize]), int(n), &guts.IV, start/ChunkSize, 0), seg
	}
	p, seg := seg[:parentSize], seg[parentSize:]
	mid := leftSize(n)
	l, seg := blockNode(buf[:mid], mid, start, seg)
	r, seg := blockNode(buf[mid:], n-mid, start+mid, seg)
	lcv, rcv := guts.ChainingValue(l), guts.ChainingValue(r)
	cvToBytes(p[:32], &lcv)
	cvToBytes(p[32:], &rcv)
	return guts.ParentNode(lcv, rcv, &guts.IV, 0), seg
}

// node computes the chaining value of the node over [start, start+n)
// into cv, setting the root flag when it is the whole blob.
func (th *treeHash) node(start, n uint64, cv *[8]uint32, emit func(p []byte, block int64) error) error {
	if n <= th.block {
		*cv = th.cvs[start/th.block]
		if emit != nil {
			return emit(nil, int64(start/th.block))
		}
		return nil
	}
	var p [parentSize]byte
	var l, r [8]uint32
	mid := leftSize(n)
	// The parent comes first in pre-order, but needs its children's
	// chaining values: compute them, emit it, then walk the children
	// again to emit theirs. Each level repeats the walk below it, so the
	// cost is O(blocks × depth), with no memory.
	th.node(start, mid, &l, nil)
	th.node(start+mid, n-mid, &r, nil)
	cvToBytes(p[:32], &l)
	cvToBytes(p[32:], &r)
	var flags uint32
	if start == 0 && n == th.size {
		flags = guts.FlagRoot
	}
	*cv = guts.ChainingValue(guts.ParentNode(l, r, &guts.IV, flags))
	if emit != nil {
		if err := emit(p[:], -1); err != nil {
			return err
		}
		if err := th.node(start, mid, &l, emit); err != nil {
			return err
		}
		return th.node(start+mid, n-mid, &r, emit)
	}
	return nil
}

// writeOutboard writes the blob's outboard to w: the 8-byte little-endian
// size, then every parent in pre-order (nothing at all for a blob of one
// group).
func (th *treeHash) writeOutboard(w io.Writer) error {
	if th.size <= ChunkGroupSize {
		return nil
	}
	var hdr [outboardHeader]byte
	binary.LittleEndian.PutUint64(hdr[:], th.size)
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	segs := th.segs.reader()
	sl := segLen(th.block)
	buf := make([]byte, sl)
	nb := int64(len(th.cvs))
	emit := func(p []byte, k int64) error {
		if p != nil {
			_, err := w.Write(p)
			return err
		}
		n := sl
		if k == nb-1 {
			last := th.size - uint64(k)*th.block
			n = (numGroups(last) - 1) * parentSize
		}
		// Every block but the last has a whole segment, so the
		// segments lie end to end in block order.
		if _, err := io.ReadFull(segs, buf[:n]); err != nil {
			return fmt.Errorf("blobsync: read outboard segment %d: %w", k, err)
		}
		_, err := w.Write(buf[:n])
		return err
	}
	if nb == 1 {
		return emit(nil, 0)
	}
	var cv [8]uint32
	return th.node(0, th.size, &cv, emit)
}

// close removes the scratch file, if any.
func (th *treeHash) close() { th.segs.close() }

// segStore holds the blocks' segments: in memory up to limit bytes, then
// in a scratch file in dir (a ".part" name, so OpenStore removes one a
// crash left behind). Its caller serialises writeAt.
type segStore struct {
	dir   string
	limit int64
	mem   []byte
	f     *os.File
}

func (s *segStore) writeAt(p []byte, off int64) error {
	end := off + int64(len(p))
	if s.f == nil && end <= s.limit {
		if int64(len(s.mem)) < end {
			if int64(cap(s.mem)) < end {
				m := make([]byte, end, max(end, min(2*int64(cap(s.mem)), s.limit)))
				copy(m, s.mem)
				s.mem = m
			}
			s.mem = s.mem[:end]
		}
		copy(s.mem[off:], p)
		return nil
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "seg-*.obao.part")
		if err != nil {
			return fmt.Errorf("blobsync: outboard scratch file: %w", err)
		}
		s.f = f
		if _, err := f.WriteAt(s.mem, 0); err != nil {
			return fmt.Errorf("blobsync: outboard scratch file: %w", err)
		}
		s.mem = nil
	}
	if _, err := s.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("blobsync: outboard scratch file: %w", err)
	}
	return nil
}

// reader reads the segments from the start.
func (s *segStore) reader() io.Reader {
	if s.f == nil {
		return bytes.NewReader(s.mem)
	}
	return bufio.NewReaderSize(io.NewSectionReader(s.f, 0, 1<<62), 64<<10)
}

func (s *segStore) close() {
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
		s.f = nil
	}
	s.mem = nil
}
