package blobsync

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dwebkit/dweb/internal/wireio"
	"github.com/fxamacker/cbor/v2"
)

// ChunkRange is a range of chunk-group indexes [Start, End): group i covers
// bytes [i*ChunkGroupSize, (i+1)*ChunkGroupSize) of the blob.
type ChunkRange struct {
	Start, End uint64
}

// Request asks a server for a blob. Ranges nil means the whole blob; else
// the server sends the parents and groups that cover the ranges (sorted,
// disjoint, non-empty; groups past the blob's end select nothing). See
// docs/protocol.md, "Blobs".
type Request struct {
	Hash   Hash
	Ranges []ChunkRange
	// Have asks which ranges the server holds instead of asking for bytes
	// (Ranges must then be nil); see Have.
	Have bool
	// Children, if not nil, makes Hash name a collection and asks for
	// ranges of the blobs it lists, one section each, in one response
	// (Ranges must then be nil): 1..MaxChildren children with strictly
	// increasing indexes, at most maxRanges ranges in all.
	Children []ChildRanges
	// Delta, if not nil, asks for the blobs Delta.Target, concatenated, as
	// a delta against the blobs Delta.Base (Hash must be Target[0]; Ranges
	// nil); see delta.go and docs/protocol.md, "Chunk-run deltas".
	Delta *DeltaRequest
}

// DeltaRequest names a run of new chunks and the run of old chunks it
// replaced: 1..MaxDeltaChunks hashes each, in file order. With Runs, the
// target and the base are one chunk list each, and the answer is the new
// list, the hashes of the chunks it rebuilds left out, followed by those
// chunks' runs as deltas (listdelta.go).
type DeltaRequest struct {
	Base, Target []Hash
	Runs         bool
}

// ChildRanges selects ranges of the blob at position Index of a
// collection's entries (Collection.Entries order). Ranges nil means the
// whole blob; else as Request.Ranges.
type ChildRanges struct {
	Index  uint64
	Ranges []ChunkRange
}

// MaxChildren is the most children one request may name.
const MaxChildren = 512

// Wire limits, checked before any allocation.
const (
	maxRequestFrame  = 16 << 10 // request: hash and up to maxRanges ranges
	maxResponseFrame = 16 << 10 // response header (a have answer lists up to maxRanges ranges)
	maxRanges        = 512
)

// Response status codes; docs/protocol.md lists them. They map to errors in
// statusErr and nowhere else.
const (
	statusOK          = 0
	statusNotFound    = 1 // not held, or not allowed: deliberately the same
	statusBadRequest  = 2
	statusUnsupported = 3 // a feature this server lacks (none in v1)
	statusMissing     = 4 // the server holds the blob only in part, not every requested group
	statusNoBase      = 5 // a delta's base is not held (or not shared): fetch the target whole
)

// Request operations (wire key 3).
const (
	opGet      = 0 // send the stream of the ranges (absent key)
	opHave     = 1 // answer which ranges are held
	opChildren = 2 // send ranges of blobs a collection lists
	opDelta    = 3 // send blobs as a delta against others (delta.go)
	opListRuns = 4 // send a chunk list and its new runs as deltas (listdelta.go)
)

type wireRange struct {
	_     struct{} `cbor:",toarray"`
	Start uint64
	End   uint64
}

type wireRequest struct {
	Hash     []byte      `cbor:"1,keyasint"`
	Ranges   []wireRange `cbor:"2,keyasint,omitzero"` // nil: absent (whole blob); empty: present, selects nothing
	Op       uint64      `cbor:"3,keyasint,omitempty"`
	Children []wireChild `cbor:"4,keyasint,omitempty"` // op children
	Base     [][]byte    `cbor:"5,keyasint,omitempty"` // op delta: the base run's hashes
	Target   [][]byte    `cbor:"6,keyasint,omitempty"` // op delta: the target run's hashes
}

// wireChild is [index, ranges]; an empty ranges array means the whole blob.
type wireChild struct {
	_      struct{} `cbor:",toarray"`
	Index  uint64
	Ranges []wireRange
}

type wireResponse struct {
	Status uint64      `cbor:"1,keyasint"`
	Size   uint64      `cbor:"2,keyasint,omitempty"`
	Msg    string      `cbor:"3,keyasint,omitempty"`
	Ranges []wireRange `cbor:"4,keyasint,omitempty"` // have answer: the held groups
	Count  uint64      `cbor:"5,keyasint,omitempty"` // children answer: the sections that follow
	Index  uint64      `cbor:"6,keyasint,omitempty"` // a child section's header: the entry it answers
}

var (
	wireEnc cbor.EncMode
	wireDec cbor.DecMode
)

func init() {
	var err error
	if wireEnc, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	if wireDec, err = (cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  5, // request: map, children, child, ranges, range
		MaxArrayElements: maxRanges,
		MaxMapPairs:      16,
	}).DecMode(); err != nil {
		panic(err)
	}
}

func statusErr(status uint64, msg string) error {
	switch status {
	case statusOK:
		return nil
	case statusNotFound:
		return ErrNotFound
	case statusBadRequest:
		return fmt.Errorf("%w: peer says bad request: %s", ErrProtocol, truncate(msg, 200))
	case statusUnsupported:
		return fmt.Errorf("%w: peer says unsupported: %s", ErrProtocol, truncate(msg, 200))
	case statusMissing:
		return fmt.Errorf("%w: peer holds only part of the blob, not every requested group", ErrNotFound)
	case statusNoBase:
		// Only a delta request's answer may say no-base (readDeltaResponse).
		return fmt.Errorf("%w: peer says no base to a request that names none", ErrProtocol)
	default:
		return fmt.Errorf("%w: unknown status %d", ErrProtocol, status)
	}
}

// writeFrame writes v as one frame: a 4-byte big-endian length, then v in
// deterministic CBOR.
func writeFrame(w io.Writer, v any) error {
	b, err := wireEnc.Marshal(v)
	if err != nil {
		return fmt.Errorf("blobsync: encode frame: %w", err)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	if _, err := w.Write(append(hdr[:], b...)); err != nil {
		return fmt.Errorf("blobsync: write frame: %w", err)
	}
	return nil
}

// readFrame reads one frame of at most max bytes into v, its buffer
// growing with the bytes that arrive (wireio.ReadN). It returns io.EOF
// only if r ends cleanly before the frame starts.
func readFrame(r io.Reader, max int, what string, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("blobsync: read %s: %w", what, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > uint32(max) {
		return fmt.Errorf("%w: %w", ErrProtocol, &LimitError{What: what, Limit: int64(max), Got: int64(n)})
	}
	b, err := wireio.ReadN(r, int(n))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("blobsync: read %s: %w", what, err)
	}
	if err := wireDec.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrProtocol, what, err)
	}
	return nil
}

func (r *wireRequest) decode() (Request, error) {
	var req Request
	if len(r.Hash) != len(req.Hash) {
		return req, fmt.Errorf("%w: request hash is %d bytes, want %d", ErrProtocol, len(r.Hash), len(req.Hash))
	}
	copy(req.Hash[:], r.Hash)
	if r.Children != nil && r.Op != opChildren {
		return req, fmt.Errorf("%w: children in a request of op %d", ErrProtocol, r.Op)
	}
	if (r.Base != nil || r.Target != nil) && r.Op != opDelta && r.Op != opListRuns {
		return req, fmt.Errorf("%w: delta runs in a request of op %d", ErrProtocol, r.Op)
	}
	switch r.Op {
	case opGet:
	case opHave:
		if r.Ranges != nil {
			return req, fmt.Errorf("%w: a have request carries ranges", ErrProtocol)
		}
		req.Have = true
	case opChildren:
		if r.Ranges != nil {
			return req, fmt.Errorf("%w: a children request carries ranges of the collection", ErrProtocol)
		}
		if len(r.Children) == 0 || len(r.Children) > MaxChildren {
			return req, fmt.Errorf("%w: a children request names %d children, want 1..%d", ErrProtocol, len(r.Children), MaxChildren)
		}
		req.Children = make([]ChildRanges, len(r.Children))
		total := 0
		for i, c := range r.Children {
			if i > 0 && c.Index <= r.Children[i-1].Index {
				return req, fmt.Errorf("%w: child %d: index %d not above %d", ErrProtocol, i, c.Index, r.Children[i-1].Index)
			}
			if total += len(c.Ranges); total > maxRanges {
				return req, fmt.Errorf("%w: a children request carries more than %d ranges", ErrProtocol, maxRanges)
			}
			rs, err := decodeRanges(c.Ranges)
			if err != nil {
				return req, fmt.Errorf("child %d: %w", i, err)
			}
			if len(rs) == 0 {
				rs = nil // whole blob
			}
			req.Children[i] = ChildRanges{Index: c.Index, Ranges: rs}
		}
	case opDelta, opListRuns:
		if r.Ranges != nil {
			return req, fmt.Errorf("%w: a delta request carries ranges", ErrProtocol)
		}
		d := &DeltaRequest{Runs: r.Op == opListRuns}
		if d.Runs && (len(r.Base) != 1 || len(r.Target) != 1) {
			return req, fmt.Errorf("%w: a list-runs request names %d base and %d target lists, want 1 each", ErrProtocol, len(r.Base), len(r.Target))
		}
		var err error
		if d.Base, err = decodeHashes(r.Base, "base"); err != nil {
			return req, err
		}
		if d.Target, err = decodeHashes(r.Target, "target"); err != nil {
			return req, err
		}
		if d.Target[0] != req.Hash {
			return req, fmt.Errorf("%w: a delta request's hash is not its first target", ErrProtocol)
		}
		req.Delta = d
	default:
		return req, fmt.Errorf("%w: unknown request op %d", ErrProtocol, r.Op)
	}
	if r.Ranges != nil {
		rs, err := decodeRanges(r.Ranges)
		if err != nil {
			return req, err
		}
		req.Ranges = rs
	}
	return req, nil
}

// decodeHashes checks a delta run: 1..MaxDeltaChunks hashes of 32 bytes.
func decodeHashes(w [][]byte, what string) ([]Hash, error) {
	if len(w) == 0 || len(w) > MaxDeltaChunks {
		return nil, fmt.Errorf("%w: a delta %s of %d chunks, want 1..%d", ErrProtocol, what, len(w), MaxDeltaChunks)
	}
	hs := make([]Hash, len(w))
	for i, b := range w {
		if len(b) != len(hs[i]) {
			return nil, fmt.Errorf("%w: delta %s hash %d is %d bytes, want %d", ErrProtocol, what, i, len(b), len(hs[i]))
		}
		copy(hs[i][:], b)
	}
	return hs, nil
}

// decodeRanges checks that ranges are non-empty, sorted and disjoint.
func decodeRanges(w []wireRange) ([]ChunkRange, error) {
	rs := make([]ChunkRange, len(w))
	var prev uint64
	for i, wr := range w {
		if wr.Start >= wr.End || (i > 0 && wr.Start < prev) {
			return nil, fmt.Errorf("%w: request range %d [%d,%d) empty, unsorted or overlapping", ErrProtocol, i, wr.Start, wr.End)
		}
		prev = wr.End
		rs[i] = ChunkRange{Start: wr.Start, End: wr.End}
	}
	return rs, nil
}

func encodeRequest(req Request) wireRequest {
	w := wireRequest{Hash: req.Hash[:]}
	if req.Have {
		w.Op = opHave
	}
	if req.Ranges != nil {
		w.Ranges = make([]wireRange, 0, len(req.Ranges))
	}
	for _, r := range req.Ranges {
		w.Ranges = append(w.Ranges, wireRange{Start: r.Start, End: r.End})
	}
	if req.Delta != nil {
		w.Op = opDelta
		if req.Delta.Runs {
			w.Op = opListRuns
		}
		for _, h := range req.Delta.Base {
			w.Base = append(w.Base, h[:])
		}
		for _, h := range req.Delta.Target {
			w.Target = append(w.Target, h[:])
		}
	}
	if req.Children != nil {
		w.Op = opChildren
		w.Children = make([]wireChild, len(req.Children))
		for i, c := range req.Children {
			w.Children[i] = wireChild{Index: c.Index, Ranges: []wireRange{}}
			for _, r := range c.Ranges {
				w.Children[i].Ranges = append(w.Children[i].Ranges, wireRange{Start: r.Start, End: r.End})
			}
		}
	}
	return w
}

// encodeRanges converts a range set to its wire form, at most maxRanges
// ranges (the first ones: a have answer may understate, never overstate).
func encodeRanges(rs RangeSet) []wireRange {
	out := make([]wireRange, 0, min(len(rs), maxRanges))
	for _, c := range rs[:min(len(rs), maxRanges)] {
		out = append(out, wireRange{Start: c.Start, End: c.End})
	}
	return out
}

// wholeBlob reports whether ranges ask for every group of a blob of size
// bytes (nil does).
func wholeBlob(ranges []ChunkRange, size uint64) bool {
	if ranges == nil {
		return true
	}
	return len(ranges) == 1 && ranges[0].Start == 0 && ranges[0].End >= numGroups(size)
}

// watchCtx makes blocking I/O on rw fail once ctx is done, if rw has
// SetDeadline (net.Conn, quic-go streams). Otherwise the caller must close rw
// to unblock a cancelled call.
func watchCtx(ctx context.Context, rw any) (stop func() bool) {
	d, ok := rw.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() { d.SetDeadline(time.Unix(1, 0)) })
}
