package blobsync

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// ChunkedDownload says what DownloadChunked moved.
type ChunkedDownload struct {
	Chunks       int   // distinct chunks the list names
	Fetched      int   // of those, chunks downloaded (the others were held)
	FetchedBytes int64 // bytes of the chunks downloaded
	Size         int64 // the file's size: the sum of the list's chunk sizes
}

// DownloadChunked fetches the chunked file whose chunk list is blob list
// (a collection entry's Chunks; size is the entry's Size, or -1 if
// unknown): first the list, then only the chunks the store does not hold.
// Each chunk is a blob downloaded as Download does it: split across
// providers, every 16 KiB group verified before it is stored, a lying
// provider banned at its first bad group, an interrupted chunk resumed
// from its verified ranges; a provider banned for one chunk is not asked
// for the chunks that start after. At most opts.Concurrency chunks download at
// once. Progress events cover the file: Total is the list's size, Done
// counts held chunks as resumed bytes; Collection names the list.
//
// DownloadChunked does not assemble the file or check the whole-file
// hash: ExportChunked and OpenChunked do, when the bytes are read. Errors:
// ErrBadChunkList (wrapped) for a list that does not decode, or whose
// size is not size; the first chunk's download error (ErrNoProviders, ...)
// stops the others, whose verified ranges stay recorded.
func (s *Store) DownloadChunked(ctx context.Context, list Hash, size int64, providers []Provider, opts DownloadOptions) (ChunkedDownload, error) {
	opts.defaults()
	var res ChunkedDownload
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
	// Each distinct chunk once: a file may repeat a chunk (runs of equal
	// bytes).
	seen := make(map[Hash]bool, len(l.Chunks))
	var chunks []ChunkRef
	for _, c := range l.Chunks {
		if !seen[c.Hash] {
			seen[c.Hash] = true
			chunks = append(chunks, c)
		}
	}
	res.Chunks = len(chunks)
	rep := newReporter(opts, list, len(chunks))
	defer rep.finish()
	var total int64
	for _, c := range chunks {
		total += c.Size
	}
	rep.setTotal(total)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	var fetched, fetchedBytes atomic.Int64
	for i, c := range chunks {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		if ok, err := s.Has(c.Hash); err == nil && ok {
			<-sem
			rep.blobDone(c.Hash, c.Size, c.Size, true)
			continue
		}
		// A provider that sent a bad group of an earlier chunk gets no
		// more of this file's chunks.
		provs := slices.DeleteFunc(slices.Clone(providers), func(p Provider) bool { return rep.banned(p.ID()) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n, err := s.download(ctx, c.Hash, c.Size, provs, &opts, rep)
			if err == nil && n != c.Size {
				err = fmt.Errorf("%w: chunk %d (%s) is %d bytes, the list says %d", ErrCorrupt, i, c.Hash, n, c.Size)
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
