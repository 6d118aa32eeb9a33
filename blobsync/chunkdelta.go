package blobsync

import (
	"bufio"
	"context"
	"errors"
	"fmt"
)

// Chunk-run deltas: a receiver that holds an earlier version of a chunked
// file asks for each run of new chunks it lacks as a delta against the run
// of old chunks it replaced (delta.go; docs/protocol.md, "Chunk-run
// deltas"), so an edit costs about the bytes it changed, not the chunks
// around it.

// deltaRun is a run of new chunks the receiver lacks, [I, J) of the new
// list, and the old chunks [A, B) of the base list between the same
// unchanged neighbours (or the file's edge).
type deltaRun struct {
	I, J, A, B int
}

// findDeltaRuns returns, for each maximal run of chunks of the new list
// next that missing says the receiver lacks, the old run it replaced: the
// chunks of old between the run's unchanged neighbours in next (matched by hash; the
// first match of the left neighbour, then the first match of the right
// one after it), or the file's start or end where the run touches it. A
// run whose neighbours are not found in old, whose old run is empty, or
// whose either side is over MaxDeltaRun bytes or MaxDeltaChunks chunks is
// left out: its chunks are fetched whole.
func findDeltaRuns(old, next *ChunkList, missing func(i int) bool) []deltaRun {
	first := make(map[Hash]int, len(old.Chunks))
	for i := len(old.Chunks) - 1; i >= 0; i-- {
		first[old.Chunks[i].Hash] = i
	}
	var runs []deltaRun
	for i := 0; i < len(next.Chunks); {
		if !missing(i) {
			i++
			continue
		}
		j := i
		for j < len(next.Chunks) && missing(j) {
			j++
		}
		r, ok := deltaRun{I: i, J: j, A: 0, B: len(old.Chunks)}, true
		if i > 0 {
			a, found := first[next.Chunks[i-1].Hash]
			r.A, ok = a+1, found
		}
		if ok && j < len(next.Chunks) {
			r.B = -1
			for b := r.A; b < len(old.Chunks); b++ {
				if old.Chunks[b].Hash == next.Chunks[j].Hash {
					r.B = b
					break
				}
			}
			ok = r.B >= 0
		}
		if ok && r.B > r.A && j-i <= MaxDeltaChunks && r.B-r.A <= MaxDeltaChunks &&
			runBytes(next.Chunks[i:j]) <= MaxDeltaRun && runBytes(old.Chunks[r.A:r.B]) <= MaxDeltaRun {
			runs = append(runs, r)
		}
		i = j
	}
	return runs
}

func runBytes(cs []ChunkRef) int64 {
	var n int64
	for _, c := range cs {
		n += c.Size
	}
	return n
}

func runHashes(cs []ChunkRef) []Hash {
	hs := make([]Hash, len(cs))
	for i, c := range cs {
		hs[i] = c.Hash
	}
	return hs
}

// readLocalRun returns the stored chunks cs, concatenated.
func (s *Store) readLocalRun(cs []ChunkRef) ([]byte, error) {
	buf := make([]byte, 0, runBytes(cs))
	for _, c := range cs {
		b, err := s.ReadAll(c.Hash, c.Size)
		if err != nil {
			return nil, err
		}
		buf = append(buf, b...)
	}
	return buf, nil
}

// requestDelta asks provider p for target (size bytes in all) as a delta
// (-1: unknown, then the announced size up to MaxDeltaRun) against base,
// whose bytes the caller holds, and returns the target's
// bytes, not yet verified. Errors: ErrNoBase or ErrNotFound from a
// provider without the runs, ErrProtocol from one that does not know
// delta requests (an older peer: it answers bad request), ErrCorrupt for
// a body that breaks the format or its limits.
func requestDelta(ctx context.Context, p Provider, d DeltaRequest, base []byte, size int64) ([]byte, error) {
	var out []byte
	err := askDelta(ctx, p, d, func(br *bufio.Reader, resp wireResponse) error {
		switch {
		case size < 0 && resp.Size > MaxDeltaRun:
			return fmt.Errorf("%w: %w", ErrCorrupt, &LimitError{What: "delta target", Limit: MaxDeltaRun, Got: int64(min(resp.Size, 1<<62))})
		case size < 0:
			size = int64(resp.Size)
		case resp.Size != uint64(size):
			return fmt.Errorf("%w: delta target of %d bytes, the list says %d", ErrCorrupt, resp.Size, size)
		}
		var err error
		out, err = applyDelta(br, base, size)
		return err
	})
	return out, err
}

// askDelta sends delta request d to provider p and, for a status-0
// answer, has read take its body. A status answer (no base, not found)
// leaves the stream for reuse, and so does a body read to its end; a bad
// request ends it.
func askDelta(ctx context.Context, p Provider, d DeltaRequest, read func(br *bufio.Reader, resp wireResponse) error) error {
	rw, err := p.Open(ctx)
	if err != nil {
		return err
	}
	clean := false
	defer func() {
		if k, ok := rw.(keeper); ok && clean {
			k.keepOnClose()
		}
		rw.Close()
	}()
	stop := watchCtx(ctx, rw)
	defer stop()
	if err := writeFrame(rw, encodeRequest(Request{Hash: d.Target[0], Delta: &d})); err != nil {
		return err
	}
	br := bufio.NewReaderSize(rw, ioBufSize)
	resp, err := readDeltaResponse(br)
	if err != nil {
		clean = resp.Status != statusOK && resp.Status != statusBadRequest
		return err
	}
	if err := read(br, resp); err != nil {
		return err
	}
	clean = br.Buffered() == 0
	return nil
}

// deltaStats counts what deltas brought.
type deltaStats struct {
	runs, chunks int
	bytes        int64 // bytes of the chunks rebuilt
}

// fetchRunDelta rebuilds the new chunks cs from a delta against the held
// chunks base, asking providers in turn until one answers, checks every
// chunk's BLAKE3 against its hash and only then stores them (AddBytes). It
// returns false, and stores nothing, when no provider gave a good delta: a
// provider without the base, an older one, or one whose delta does not
// verify (the first such is returned as the error, for the log); the
// caller then fetches the chunks whole.
func (s *Store) fetchRunDelta(ctx context.Context, cs, base []ChunkRef, providers []Provider, rep *reporter, log func(p Provider, err error)) (bool, error) {
	baseBytes, err := s.readLocalRun(base)
	if err != nil {
		return false, err
	}
	d := DeltaRequest{Base: runHashes(base), Target: runHashes(cs)}
	size := runBytes(cs)
	for _, p := range providers {
		if rep.banned(p.ID()) {
			continue
		}
		out, err := requestDelta(ctx, p, d, baseBytes, size)
		if err == nil {
			err = verifyRun(cs, out)
		}
		if err != nil {
			log(p, err)
			if errors.Is(err, ErrCorrupt) {
				// A lying provider: no more deltas from anyone; the
				// chunks come whole, each group verified.
				return false, err
			}
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			continue
		}
		if err := s.storeRun(ctx, cs, out); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// storeRun stores the verified bytes out of chunks cs, one blob each.
func (s *Store) storeRun(ctx context.Context, cs []ChunkRef, out []byte) error {
	var off int64
	for _, c := range cs {
		h, err := s.AddBytes(ctx, out[off:off+c.Size])
		if err != nil {
			return err
		}
		if h != c.Hash {
			return fmt.Errorf("%w: stored chunk %s as %s", ErrCorrupt, c.Hash, h)
		}
		off += c.Size
	}
	return nil
}

// verifyRun checks that out is the chunks cs, in order, by their BLAKE3.
func verifyRun(cs []ChunkRef, out []byte) error {
	var off int64
	for i, c := range cs {
		if got := HashBytes(out[off : off+c.Size]); got != c.Hash {
			return fmt.Errorf("%w: chunk %d of a delta run hashes to %s, want %s", ErrCorrupt, i, got, c.Hash)
		}
		off += c.Size
	}
	return nil
}

// fetchListDelta fetches chunk list h as a delta against the held chunk
// list base (one blob each side), verified by its hash before it is
// stored. It returns false when no provider gave a good one.
func (s *Store) fetchListDelta(ctx context.Context, h, base Hash, providers []Provider, log func(p Provider, err error)) bool {
	b, err := s.ReadAll(base, MaxDeltaRun)
	if err != nil {
		return false
	}
	d := DeltaRequest{Base: []Hash{base}, Target: []Hash{h}}
	for _, p := range providers {
		out, err := requestDelta(ctx, p, d, b, -1)
		if err == nil && HashBytes(out) != h {
			err = fmt.Errorf("%w: chunk list from a delta hashes to %s, want %s", ErrCorrupt, HashBytes(out), h)
		}
		if err != nil {
			log(p, err)
			if errors.Is(err, ErrCorrupt) || ctx.Err() != nil {
				return false
			}
			continue
		}
		got, err := s.AddBytes(ctx, out)
		return err == nil && got == h
	}
	return false
}
