package blobsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// chunkBatchBytes is about how many bytes of chunks one children request
// of a chunk list asks for. A batch is committed, and its bytes reported
// in Progress, when its answer has been read, and a batch cut off
// mid-answer is fetched again: so a smaller batch shows progress sooner
// and loses less to an interruption, a larger one pays fewer commits.
// Variable only so tests can change it.
var chunkBatchBytes int64 = 4 << 20

// ChunkedDownload says what DownloadChunked moved.
type ChunkedDownload struct {
	Chunks       int   // distinct chunks the list names
	Fetched      int   // of those, chunks downloaded (the others were held)
	FetchedBytes int64 // bytes of the chunks downloaded
	Size         int64 // the file's size: the sum of the list's chunk sizes
	// Of Fetched: the runs and chunks rebuilt from deltas against
	// opts.DeltaBase, and the chunks' bytes (not the bytes that moved).
	DeltaRuns, DeltaChunks int
	DeltaBytes             int64
	// ListDelta: the chunk list itself came as a delta.
	ListDelta bool
}

// DownloadChunked fetches the chunked file whose chunk list is blob list
// (a collection entry's Chunks; size is the entry's Size, or -1 if
// unknown): first the list, then only the chunks the store does not hold.
// Missing chunks come in children requests of the list (many chunks per
// request, taken by providers as they ask for work, committed in batches),
// as DownloadCollection fetches small blobs; a chunk held in part, or one
// the batches did not bring, is downloaded as Download does a blob (split
// across providers, resumed from its verified ranges), at most
// opts.Concurrency at once. Every 16 KiB group is verified before it is
// stored; a provider that sends a bad one is banned and asked for nothing
// more of the file. Progress events cover the file: Total is the list's size, Done
// counts held chunks as resumed bytes; Collection names the list.
//
// With opts.DeltaBase (an earlier version's chunk list, held), the list
// and its runs of new chunks are first asked for in one answer as deltas
// against the old version (listdelta.go), the rebuilt chunks' hashes
// derived and the list checked against its hash before anything is
// stored; from a provider that predates that answer, the list and each
// run of missing chunks are asked for as deltas one by one
// (chunkdelta.go), each chunk checked against its BLAKE3. A run no
// provider gives that way, or that a provider gets wrong, is fetched
// whole as above.
//
// DownloadChunked does not assemble the file or check the whole-file
// hash: ExportChunked and OpenChunked do, when the bytes are read. Errors:
// ErrBadChunkList (wrapped) for a list that does not decode, or whose
// size is not size; the first chunk's download error (ErrNoProviders, ...)
// stops the others, whose verified ranges stay recorded.
func (s *Store) DownloadChunked(ctx context.Context, list Hash, size int64, providers []Provider, opts DownloadOptions) (ChunkedDownload, error) {
	opts.defaults()
	var res ChunkedDownload
	logf := func(p Provider, err error) {
		opts.Logger.Debug("blobsync: chunk-run delta", "provider", p.ID(), "list", list, "err", err)
	}
	var base *ChunkList
	derived := map[Hash]bool{} // chunks a list-runs answer brought
	if !opts.NoDelta && !opts.DeltaBase.IsZero() && opts.DeltaBase != list {
		if b, err := s.ReadChunkList(opts.DeltaBase); err == nil {
			base = b
			if held, _ := s.Has(list); !held {
				// The list and its new runs in one answer; from a peer
				// that predates it, the list alone, then each run below.
				runs, ok, err := s.fetchListRuns(ctx, list, opts.DeltaBase, base, providers, logf)
				for _, rn := range runs {
					res.DeltaRuns++
					for _, c := range rn.Chunks {
						derived[c.Hash] = true
					}
				}
				switch {
				case ok:
					res.ListDelta = true
				case errors.Is(err, ErrCorrupt):
					base = nil // a lying provider: no more deltas for this file
				case ctx.Err() != nil:
					return res, ctx.Err()
				default:
					res.ListDelta = s.fetchListDelta(ctx, list, opts.DeltaBase, providers, logf)
				}
			}
		}
	}
	lrep := newReporter(DownloadOptions{}, Hash{}, 1)
	if _, err := s.download(ctx, list, 0, providers, &opts, lrep); err != nil {
		return res, fmt.Errorf("blobsync: download chunk list %s: %w", list, err)
	}
	l, err := s.ReadChunkList(list)
	if err != nil {
		return res, fmt.Errorf("blobsync: download chunked file: %w", err)
	}
	res.Size = l.Size()
	if size >= 0 && res.Size != size {
		return res, fmt.Errorf("blobsync: download chunked file: %w: chunk list %s adds up to %d bytes, the entry says %d", ErrBadChunkList, list, res.Size, size)
	}
	// The list as the collection the children requests index into (the
	// server answers a chunk list's children in list order), and each
	// distinct chunk once: a file may repeat a chunk (runs of equal bytes).
	c := &Collection{Entries: make([]Entry, len(l.Chunks))}
	seen := make(map[Hash]bool, len(l.Chunks))
	var distinct, batch, each []int
	for i, ch := range l.Chunks {
		c.Entries[i] = Entry{Name: fmt.Sprintf("chunk %d", i), Hash: ch.Hash, Size: ch.Size}
		if !seen[ch.Hash] {
			seen[ch.Hash] = true
			distinct = append(distinct, i)
		}
	}
	res.Chunks = len(distinct)
	rep := newReporter(opts, list, len(distinct))
	defer rep.finish()
	var fetched, fetchedBytes atomic.Int64
	var total int64
	for _, i := range distinct {
		total += l.Chunks[i].Size
	}
	rep.setTotal(total)
	for _, i := range distinct {
		ch := l.Chunks[i]
		e, found, err := s.rawEntry(ch.Hash)
		switch {
		case err != nil:
			return res, err
		case found && e.State == stateComplete && derived[ch.Hash]:
			res.DeltaChunks++
			res.DeltaBytes += ch.Size
			fetched.Add(1)
			fetchedBytes.Add(ch.Size)
			rep.blobDone(ch.Hash, ch.Size, ch.Size, false)
		case found && e.State == stateComplete:
			rep.blobDone(ch.Hash, ch.Size, ch.Size, true)
		case found:
			each = append(each, i) // partial: resumes from its verified ranges
		default:
			batch = append(batch, i)
		}
	}
	// With an earlier version held, each run of missing chunks the
	// list-runs answer did not bring is asked for as a delta against the
	// old chunks it replaced; what no provider gives that way is fetched
	// whole below.
	if base != nil && len(batch) > 0 && len(providers) > 0 {
		absent := make(map[Hash]bool, len(batch))
		for _, i := range batch {
			absent[l.Chunks[i].Hash] = true
		}
		for _, r := range findDeltaRuns(base, l, func(i int) bool { return absent[l.Chunks[i].Hash] }) {
			cs := l.Chunks[r.I:r.J]
			ok, err := s.fetchRunDelta(ctx, cs, base.Chunks[r.A:r.B], providers, rep, logf)
			if err != nil && ctx.Err() != nil {
				return res, ctx.Err()
			}
			if ok {
				res.DeltaRuns++
				for _, c := range cs {
					if absent[c.Hash] {
						absent[c.Hash] = false
						res.DeltaChunks++
						res.DeltaBytes += c.Size
						fetched.Add(1)
						fetchedBytes.Add(c.Size)
						rep.blobDone(c.Hash, c.Size, c.Size, false)
					}
				}
			}
			if errors.Is(err, ErrCorrupt) {
				break // a lying provider: the rest come whole
			}
		}
		batch = slices.DeleteFunc(batch, func(i int) bool { return !absent[l.Chunks[i].Hash] })
	}
	// Missing chunks go in children requests, many per request and their
	// commits batched, as a collection's small blobs do: one download per
	// chunk would pay a request round trip and a commit of its own per
	// ~1 MiB. What the batches did not bring, and partial chunks, are
	// downloaded one by one, which also says why one cannot be had.
	if len(batch) > 0 && len(providers) > 0 {
		var left []int
		left, providers = s.downloadBatches(ctx, list, c, batch, chunkBatchBytes, true, providers, &opts, rep)
		got := make(map[int]bool, len(batch))
		for _, i := range batch {
			got[i] = true
		}
		for _, i := range left {
			got[i] = false
		}
		for i, ok := range got {
			if ok {
				fetched.Add(1)
				fetchedBytes.Add(l.Chunks[i].Size)
			}
		}
		each = append(each, left...)
		slices.Sort(each)
	} else {
		each = append(each, batch...)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, i := range each {
		ch := l.Chunks[i]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		// A provider that sent a bad group of an earlier chunk gets no
		// more of this file's chunks.
		provs := slices.DeleteFunc(slices.Clone(providers), func(p Provider) bool { return rep.banned(p.ID()) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n, err := s.download(ctx, ch.Hash, ch.Size, provs, &opts, rep)
			if err == nil && n != ch.Size {
				err = fmt.Errorf("%w: chunk %d (%s) is %d bytes, the list says %d", ErrCorrupt, i, ch.Hash, n, ch.Size)
			}
			if err != nil {
				once.Do(func() { first = fmt.Errorf("blobsync: download chunked file (list %s): %w", list, err); cancel() })
				return
			}
			fetched.Add(1)
			fetchedBytes.Add(n)
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	res.Fetched, res.FetchedBytes = int(fetched.Load()), fetchedBytes.Load()
	return res, first
}

// banned reports whether provider id sent bad data in this download.
func (r *reporter) banned(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ps := r.provs[id]
	return ps != nil && ps.state == "banned"
}
