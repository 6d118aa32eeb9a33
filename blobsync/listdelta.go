package blobsync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// List-runs deltas (request op 4; docs/protocol.md, "Chunk-run deltas"):
// one request names a new chunk list and the old one the receiver holds,
// and one answer carries the new list as a delta against the old, with
// the hashes of the chunks it rebuilds left out (zeros), followed by the
// runs of those chunks as deltas against the old chunks they replaced.
// The receiver rebuilds each run, hashes its chunks, fills their hashes
// into the list and checks the list's BLAKE3 against its name before it
// stores anything: the list's hash covers every chunk's hash and size, so
// nothing unverified is stored, and a 32-byte hash per new chunk, a
// response header and a round trip per run no longer move.

// minZeroRun is the shortest run of zero bytes in a literal that
// zeroOps sends as a zeros op (2 bytes) instead.
const minZeroRun = 16

// rebuiltRun is a run of new chunks rebuilt from a list-runs answer: the
// chunks, their hashes filled in, and their bytes concatenated.
type rebuiltRun struct {
	Chunks []ChunkRef
	Data   []byte
}

// serveListRuns answers a list-runs request whose lists serveDelta read
// (oldB, the base, and nextB, the target; each at most MaxDeltaRun bytes,
// within its MaxDeltaServes slot): lists that do not decode are a bad
// request, else writeListRuns answers.
func (s *Store) serveListRuns(w io.Writer, oldB, nextB []byte, allow func(Hash) bool) error {
	next, err := DecodeChunkList(nextB)
	if err == nil {
		var old *ChunkList
		if old, err = DecodeChunkList(oldB); err == nil {
			return s.writeListRuns(w, oldB, nextB, old, next, allow)
		}
	}
	return writeFrame(w, wireResponse{Status: statusBadRequest, Msg: err.Error()})
}

// writeListRuns writes a list-runs answer for lists old and next (oldB and
// nextB encoded): the target list as a delta against the base list, the
// chunks of the runs it derives zeroed out, then each such run's delta in
// list order. A run is derived when the store holds (and may share) both
// its sides and the derived runs' new bytes stay within MaxDeltaRun in
// all, the most the receiver holds before the list verifies; the others
// keep their hashes and the receiver fetches them as before. It holds the
// two lists, then one run pair at a time.
func (s *Store) writeListRuns(w io.Writer, oldB, nextB []byte, old, next *ChunkList, allow func(Hash) bool) error {
	inOld := make(map[Hash]bool, len(old.Chunks))
	for _, c := range old.Chunks {
		inOld[c.Hash] = true
	}
	var pairs [][2][]Hash // each derived run's target and base hashes
	blank := bytes.Clone(nextB)
	var total int64
	for _, r := range findDeltaRuns(old, next, func(i int) bool { return !inOld[next.Chunks[i].Hash] }) {
		cs, bs := next.Chunks[r.I:r.J], old.Chunks[r.A:r.B]
		n := runBytes(cs)
		if total+n > MaxDeltaRun || !s.holdsRun(cs, allow) || !s.holdsRun(bs, allow) {
			continue
		}
		total += n
		pairs = append(pairs, [2][]Hash{runHashes(cs), runHashes(bs)})
		for i := r.I; i < r.J; i++ {
			clear(blank[chunkListHeader+i*chunkRefSize:][:len(Hash{})])
		}
	}
	if err := writeFrame(w, wireResponse{Status: statusOK, Size: uint64(len(blank))}); err != nil {
		return err
	}
	if err := writeDelta(w, zeroOps(deltaOps(oldB, blank, deltaSkip(oldB, blank)))); err != nil {
		return err
	}
	for _, p := range pairs {
		target, _, err := s.readRun(p[0], allow)
		if err != nil {
			return fmt.Errorf("blobsync: serve list runs: %w", err) // ends the stream: the receiver tries another provider
		}
		base, _, err := s.readRun(p[1], allow)
		if err != nil {
			return fmt.Errorf("blobsync: serve list runs: %w", err)
		}
		if err := writeDelta(w, deltaOps(base, target, 0)); err != nil {
			return err
		}
	}
	return nil
}

// holdsRun reports whether the store holds every chunk of cs complete and
// may share it.
func (s *Store) holdsRun(cs []ChunkRef, allow func(Hash) bool) bool {
	for _, c := range cs {
		if allow != nil && !allow(c.Hash) {
			return false
		}
		if n, err := s.Size(c.Hash); err != nil || n != c.Size {
			return false
		}
	}
	return true
}

// zeroOps splits the literals of ops around runs of at least minZeroRun
// zero bytes (a list-runs answer's left-out hashes), each then a zeros
// op, as long as the ops stay within maxDeltaOps.
func zeroOps(ops []deltaOp) []deltaOp {
	out := make([]deltaOp, 0, len(ops))
	for k, op := range ops {
		lit := op.Lit
		if lit == nil {
			out = append(out, op)
			continue
		}
		for len(lit) > 0 {
			zs, ze := zeroRun(lit)
			// The literal before, the zeros, what follows, and the ops after this one.
			if ze == 0 || len(out)+3+len(ops)-k-1 > maxDeltaOps {
				out = append(out, deltaOp{Lit: lit})
				break
			}
			if zs > 0 {
				out = append(out, deltaOp{Lit: lit[:zs]})
			}
			out = append(out, deltaOp{Len: int64(ze - zs), Zeros: true})
			lit = lit[ze:]
		}
	}
	return out
}

// zeroRun returns the first run [start, end) of at least minZeroRun zero
// bytes in b, or 0, 0.
func zeroRun(b []byte) (int, int) {
	for i := 0; i < len(b); {
		if b[i] != 0 {
			i++
			continue
		}
		j := i
		for j < len(b) && b[j] == 0 {
			j++
		}
		if j-i >= minZeroRun {
			return i, j
		}
		i = j
	}
	return 0, 0
}

// applyListRuns reads a list-runs answer's body from r: the new chunk
// list (size bytes) as a delta against oldB (old, decoded), in which
// every chunk with a zero hash is derived, then, for each maximal run of
// derived chunks in list order, its delta against the old chunks it
// replaced (findDeltaRuns, as the server found them), whose bytes
// readBase returns. It fills in each derived chunk's hash from its
// rebuilt bytes and returns the list's encoding and the runs. It does
// not check the list against its hash: the caller does, before storing.
// Errors wrap ErrCorrupt for an answer that breaks the format or its
// limits (a list that does not decode, a derived chunk outside a run the
// receiver finds, derived runs over MaxDeltaRun bytes in all, a bad
// delta); a body cut short gives io.ErrUnexpectedEOF; readBase's errors
// are returned as they are.
func applyListRuns(r deltaReader, oldB []byte, old *ChunkList, size int64, readBase func([]ChunkRef) ([]byte, error)) ([]byte, []rebuiltRun, error) {
	listB, err := applyDelta(r, oldB, size)
	if err != nil {
		return nil, nil, err
	}
	next, err := DecodeChunkList(listB)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: list-runs list: %w", ErrCorrupt, err)
	}
	derived := func(i int) bool { return next.Chunks[i].Hash.IsZero() }
	runs := findDeltaRuns(old, next, derived)
	covered, total := 0, int64(0)
	for _, rn := range runs {
		covered += rn.J - rn.I
		total += runBytes(next.Chunks[rn.I:rn.J])
	}
	zeros := 0
	for i := range next.Chunks {
		if derived(i) {
			zeros++
		}
	}
	if zeros != covered || total > MaxDeltaRun {
		return nil, nil, fmt.Errorf("%w: list-runs list derives %d chunks, %d in runs of %d bytes (at most %d)", ErrCorrupt, zeros, covered, total, MaxDeltaRun)
	}
	out := make([]rebuiltRun, 0, len(runs))
	for _, rn := range runs {
		base, err := readBase(old.Chunks[rn.A:rn.B])
		if err != nil {
			return nil, nil, err
		}
		cs := next.Chunks[rn.I:rn.J]
		data, err := applyDelta(r, base, runBytes(cs))
		if err != nil {
			return nil, nil, err
		}
		var off int64
		for k := range cs {
			cs[k].Hash = HashBytes(data[off : off+cs[k].Size])
			copy(listB[chunkListHeader+(rn.I+k)*chunkRefSize:], cs[k].Hash[:])
			off += cs[k].Size
		}
		out = append(out, rebuiltRun{Chunks: cs, Data: data})
	}
	return listB, out, nil
}

// fetchListRuns asks providers in turn for chunk list h and its runs
// against the held list oldH (old, decoded) in one list-runs answer,
// checks the list, its derived hashes filled in, against h, and only then
// stores the rebuilt chunks and the list. It returns the runs stored, or
// false when no provider gave a good answer: one without the base (5),
// busy (5), or older (bad request) is skipped; a bad answer is returned
// as ErrCorrupt (no more deltas from anyone for this file).
func (s *Store) fetchListRuns(ctx context.Context, h, oldH Hash, old *ChunkList, providers []Provider, log func(p Provider, err error)) ([]rebuiltRun, bool, error) {
	oldB, err := s.ReadAll(oldH, MaxDeltaRun)
	if err != nil {
		return nil, false, err
	}
	d := DeltaRequest{Base: []Hash{oldH}, Target: []Hash{h}, Runs: true}
	for _, p := range providers {
		var listB []byte
		var runs []rebuiltRun
		err := askDelta(ctx, p, d, func(br *bufio.Reader, resp wireResponse) error {
			if resp.Size > MaxDeltaRun {
				return fmt.Errorf("%w: %w", ErrCorrupt, &LimitError{What: "list-runs list", Limit: MaxDeltaRun, Got: int64(min(resp.Size, 1<<62))})
			}
			var err error
			listB, runs, err = applyListRuns(br, oldB, old, int64(resp.Size), s.readLocalRun)
			return err
		})
		if err == nil && HashBytes(listB) != h {
			err = fmt.Errorf("%w: chunk list from a list-runs answer hashes to %s, want %s", ErrCorrupt, HashBytes(listB), h)
		}
		if err != nil {
			log(p, err)
			if errors.Is(err, ErrCorrupt) {
				return nil, false, err
			}
			if ctx.Err() != nil {
				return nil, false, ctx.Err()
			}
			continue
		}
		for _, rn := range runs {
			if err := s.storeRun(ctx, rn.Chunks, rn.Data); err != nil {
				return nil, false, err
			}
		}
		if got, err := s.AddBytes(ctx, listB); err != nil || got != h {
			return nil, false, fmt.Errorf("blobsync: store chunk list %s: %v (stored as %s)", h, err, got)
		}
		return runs, true, nil
	}
	return nil, false, nil
}
