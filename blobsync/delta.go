package blobsync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// A chunk-run delta rebuilds a run of a new version's chunks from a run of
// an older version's chunks that the receiver holds (docs/protocol.md,
// "Chunk-run deltas"). Its body is a sequence of ops, each a kind byte
// and unsigned LEB128 varints (encoding/binary's Uvarint, at most 10
// bytes):
//
//	0 copy     offset, length: bytes of the base
//	1 literal  length, then that many bytes
//	2 zeros    length: that many zero bytes (sent only in a list-runs
//	           answer, where it stands for a hash the receiver derives;
//	           listdelta.go)
//
// The ops, applied in order, write the target from its first byte to its
// last; the body ends when the target's announced size is written. A
// provider makes at most four ops (deltaOps): a literal header of a chunk
// list, a copy of the common prefix, the changed middle as a literal and a
// copy of the common suffix.
const (
	// MaxDeltaRun is the most bytes a delta's target, or its base, may
	// have: the receiver holds both in memory to rebuild and verify the
	// target. A longer run of missing chunks is fetched whole.
	MaxDeltaRun = 32 << 20
	// MaxDeltaChunks is the most chunks a delta request names on each side
	// (at ChunkMin bytes each, MaxDeltaRun; it keeps the request well
	// within its 16 KiB frame).
	MaxDeltaChunks = 128
	// maxDeltaOps bounds the ops of one delta body.
	maxDeltaOps = 64

	deltaCopy    = 0
	deltaLiteral = 1
	deltaZeros   = 2
)

// ErrNoBase is a delta request's answer from a provider that does not hold
// (or may not share) every chunk of the base run: the receiver fetches the
// target chunks whole.
var ErrNoBase = errors.New("blobsync: provider does not hold the delta's base")

// deltaOp is one op of a delta: a copy of base[Off:Off+Len], Lit, or
// with Zeros, Len zero bytes.
type deltaOp struct {
	Off, Len int64
	Lit      []byte
	Zeros    bool
}

// deltaOps returns the ops that make target from base: the first skip
// bytes of target as a literal (a chunk list's header, whose count changes
// with an insertion), then the common prefix and suffix of the rest as
// copies and what lies between as one literal. It reads each byte at most
// twice and allocates nothing but the op list.
func deltaOps(base, target []byte, skip int) []deltaOp {
	var ops []deltaOp
	if skip > 0 && skip <= len(base) && skip <= len(target) {
		ops = append(ops, deltaOp{Lit: target[:skip]})
	} else {
		skip = 0
	}
	b, t := base[skip:], target[skip:]
	p := commonPrefix(b, t)
	sfx := commonSuffix(b[p:], t[p:])
	if p > 0 {
		ops = append(ops, deltaOp{Off: int64(skip), Len: int64(p)})
	}
	if mid := t[p : len(t)-sfx]; len(mid) > 0 {
		ops = append(ops, deltaOp{Lit: mid})
	}
	if sfx > 0 {
		ops = append(ops, deltaOp{Off: int64(len(base) - sfx), Len: int64(sfx)})
	}
	return ops
}

func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for i+8 <= n && binary.LittleEndian.Uint64(a[i:]) == binary.LittleEndian.Uint64(b[i:]) {
		i += 8
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

func commonSuffix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for i+8 <= n && binary.LittleEndian.Uint64(a[len(a)-i-8:]) == binary.LittleEndian.Uint64(b[len(b)-i-8:]) {
		i += 8
	}
	for i < n && a[len(a)-i-1] == b[len(b)-i-1] {
		i++
	}
	return i
}

// writeDelta writes ops as a delta body.
func writeDelta(w io.Writer, ops []deltaOp) error {
	var hdr [1 + 2*binary.MaxVarintLen64]byte
	for _, op := range ops {
		h := hdr[:1]
		switch {
		case op.Zeros:
			hdr[0] = deltaZeros
			h = binary.AppendUvarint(h, uint64(op.Len))
		case op.Lit != nil:
			hdr[0] = deltaLiteral
			h = binary.AppendUvarint(h, uint64(len(op.Lit)))
		default:
			hdr[0] = deltaCopy
			h = binary.AppendUvarint(binary.AppendUvarint(h, uint64(op.Off)), uint64(op.Len))
		}
		if _, err := w.Write(h); err != nil {
			return err
		}
		if op.Lit != nil {
			if _, err := w.Write(op.Lit); err != nil {
				return err
			}
		}
	}
	return nil
}

// deltaReader is what applyDelta reads: a bufio.Reader or a bytes.Reader.
type deltaReader interface {
	io.Reader
	io.ByteReader
}

// applyDelta reads a delta body from r and returns the target it makes
// from base: exactly size bytes (0..MaxDeltaRun, which the caller knows
// from elsewhere, such as a chunk list). It reads no byte past the body.
// Errors wrap ErrCorrupt: an unknown op, more than 64 ops, a copy outside
// base, an op that would write past size, an empty op, zeros over 1 MiB; a body cut short
// gives io.ErrUnexpectedEOF. The target is not verified here: the caller
// checks its hashes.
func applyDelta(r deltaReader, base []byte, size int64) ([]byte, error) {
	if size < 0 || size > MaxDeltaRun {
		return nil, fmt.Errorf("%w: delta target of %d bytes: %w", ErrCorrupt, size, &LimitError{What: "delta target", Limit: MaxDeltaRun, Got: size})
	}
	// The buffer grows with the bytes that arrive (a literal in steps of
	// 1 MiB), so a body cut short costs what it sent, not size.
	out := make([]byte, 0, min(size, 1<<20))
	for ops := 0; int64(len(out)) < size; ops++ {
		if ops == maxDeltaOps {
			return nil, fmt.Errorf("%w: delta of more than %d ops", ErrCorrupt, maxDeltaOps)
		}
		kind, err := r.ReadByte()
		if err != nil {
			return nil, deltaEOF(err)
		}
		left := size - int64(len(out))
		switch kind {
		case deltaCopy:
			off, err := readUvarint(r)
			if err != nil {
				return nil, err
			}
			n, err := readUvarint(r)
			if err != nil {
				return nil, err
			}
			if n == 0 || n > uint64(left) || off > uint64(len(base)) || n > uint64(len(base))-off {
				return nil, fmt.Errorf("%w: delta op %d copies [%d, +%d) of a %d-byte base into the %d bytes left", ErrCorrupt, ops, off, n, len(base), left)
			}
			out = append(out, base[off:off+n]...) // n <= len(base): bounded by what the receiver holds
		case deltaLiteral, deltaZeros:
			n, err := readUvarint(r)
			if err != nil {
				return nil, err
			}
			if n == 0 || n > uint64(left) {
				return nil, fmt.Errorf("%w: delta op %d: %d bytes of kind %d, %d left", ErrCorrupt, ops, n, kind, left)
			}
			if kind == deltaZeros {
				// At most 1 MiB, as a literal's step: 64 ops of zeros
				// cost the sender little, the receiver at most 64 MiB.
				if n > 1<<20 {
					return nil, fmt.Errorf("%w: delta op %d: %d zero bytes, more than 1 MiB", ErrCorrupt, ops, n)
				}
				out = append(out, make([]byte, n)...)
				continue
			}
			for n > 0 {
				step := min(n, 1<<20)
				m := len(out)
				out = slices.Grow(out, int(step))[:m+int(step)]
				if _, err := io.ReadFull(r, out[m:]); err != nil {
					return nil, deltaEOF(err)
				}
				n -= step
			}
		default:
			return nil, fmt.Errorf("%w: delta op %d of unknown kind %d", ErrCorrupt, ops, kind)
		}
	}
	return out, nil
}

// readUvarint reads one varint of an op; an overlong one is ErrCorrupt.
func readUvarint(r io.ByteReader) (uint64, error) {
	v, err := binary.ReadUvarint(r)
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return 0, deltaEOF(err)
	default:
		return 0, fmt.Errorf("%w: delta varint: %v", ErrCorrupt, err)
	}
}

func deltaEOF(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("blobsync: read delta: %w", err)
}

// deltaSkip is the literal head deltaOps keeps for base and target: a
// chunk list's 9-byte header when both are chunk lists whose counts differ
// (an append or a cut changes the count, which would end the common prefix
// after 5 bytes), else 0.
func deltaSkip(base, target []byte) int {
	if len(base) >= chunkListHeader && len(target) >= chunkListHeader &&
		bytes.Equal(base[:4], chunkListMagic[:]) && bytes.Equal(target[:4], chunkListMagic[:]) &&
		!bytes.Equal(base[:chunkListHeader], target[:chunkListHeader]) {
		return chunkListHeader
	}
	return 0
}

// MaxDeltaServes is how many delta requests a store answers at once, from
// all peers together: each holds up to two runs of MaxDeltaRun bytes in
// memory (64 MiB), so at most 128 MiB goes to deltas however many members
// ask. A request past it is answered no-base, and the receiver fetches the
// run's chunks whole, as from a provider without the old version.
const MaxDeltaServes = 2

// serveDelta answers a delta request: a response header with the target
// run's size, then the delta body. A target not held (or not allowed) is
// answered not found, a base not held no-base, a run over MaxDeltaRun bad
// request, and a request past MaxDeltaServes at once no-base; it reads only
// the two runs, never a whole file. A list-runs request (d.Runs) is
// answered by serveListRuns once its two lists are read.
func (s *Store) serveDelta(w io.Writer, d *DeltaRequest, allow func(Hash) bool) error {
	select {
	case s.deltaSlots <- struct{}{}:
		defer func() { <-s.deltaSlots }()
	default:
		return writeFrame(w, wireResponse{Status: statusNoBase, Msg: fmt.Sprintf("busy: %d delta requests in progress", MaxDeltaServes)})
	}
	target, status, err := s.readRun(d.Target, allow)
	if status == statusNotFound || status == statusBadRequest {
		return writeFrame(w, wireResponse{Status: status, Msg: err.Error()})
	}
	base, status, err := s.readRun(d.Base, allow)
	if status == statusNotFound {
		status = statusNoBase
	}
	if status != statusOK {
		return writeFrame(w, wireResponse{Status: status, Msg: err.Error()})
	}
	if d.Runs {
		return s.serveListRuns(w, base, target, allow)
	}
	if err := writeFrame(w, wireResponse{Status: statusOK, Size: uint64(len(target))}); err != nil {
		return err
	}
	return writeDelta(w, deltaOps(base, target, deltaSkip(base, target)))
}

// readRun reads complete blobs hs, concatenated, at most MaxDeltaRun bytes
// in all; a status says why not.
func (s *Store) readRun(hs []Hash, allow func(Hash) bool) ([]byte, uint64, error) {
	var total int64
	for _, h := range hs {
		if allow != nil && !allow(h) {
			return nil, statusNotFound, errors.New("not found")
		}
		n, err := s.Size(h)
		if err != nil {
			return nil, statusNotFound, errors.New("not found")
		}
		if total += n; total > MaxDeltaRun {
			return nil, statusBadRequest, &LimitError{What: "delta run", Limit: MaxDeltaRun, Got: total}
		}
	}
	buf := make([]byte, 0, total)
	for _, h := range hs {
		b, err := s.ReadAll(h, MaxDeltaRun)
		if err != nil {
			s.log.Error("blobsync: serve delta: read run", "hash", h, "err", err)
			return nil, statusNotFound, errors.New("not found")
		}
		buf = append(buf, b...)
	}
	if int64(len(buf)) > MaxDeltaRun {
		return nil, statusBadRequest, &LimitError{What: "delta run", Limit: MaxDeltaRun, Got: int64(len(buf))}
	}
	return buf, statusOK, nil
}
