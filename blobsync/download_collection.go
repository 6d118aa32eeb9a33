package blobsync

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// DownloadCollection downloads the collection blob h, then every blob it
// lists. Small blobs (at most BatchMax bytes each) not yet held go in
// children requests, up to 256 blobs or 16 MiB per request, handed to providers as
// they ask for work (see downloadBatches); the others, and any small one
// the batches did not bring, are downloaded at most Concurrency at once,
// each split across providers as Download does. Progress events cover the
// whole collection (Total is the sum of the entries' sizes, announced by
// the collection, which is itself verified). It returns the collection.
// Blobs already held are skipped; the first blob that fails stops the
// others (their verified ranges stay recorded) and its error is returned.
func (s *Store) DownloadCollection(ctx context.Context, h Hash, providers []Provider, opts DownloadOptions) (*Collection, error) {
	opts.defaults()
	crep := newReporter(DownloadOptions{}, Hash{}, 1)
	if _, err := s.download(ctx, h, 0, providers, &opts, crep); err != nil {
		return nil, err
	}
	b, err := s.ReadAll(h, MaxCollectionSize)
	if err != nil {
		return nil, err
	}
	c, err := DecodeCollection(b)
	if err != nil {
		return nil, fmt.Errorf("blobsync: download collection %s: %w", h, err)
	}
	rep := newReporter(opts, h, len(c.Entries))
	defer rep.finish()
	var total int64
	for _, e := range c.Entries {
		total += e.Size
	}
	rep.setTotal(total)

	// Small blobs first, in batches; the rest (and what the batches did not
	// bring) blob by blob, where a held blob returns at once, counted as
	// held. An entry whose blob another entry already names waits for the
	// end.
	all := make([]int, len(c.Entries))
	for i := range all {
		all[i] = i
	}
	small, each, held, dup, err := s.sortEntries(c, all, opts.BatchMax)
	if err != nil {
		return nil, err
	}
	each = append(each, held...)
	if len(small) > 0 && len(providers) > 0 {
		var left []int
		left, providers = s.downloadBatches(ctx, h, c, small, batchMaxBytes, false, providers, &opts, rep)
		slices.Sort(left)
		each = append(each, left...)
	} else {
		each = append(each, small...)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err := s.downloadEach(ctx, h, c, append(each, dup...), providers, &opts, rep); err != nil {
		return nil, err
	}
	return c, nil
}

// downloadEach downloads the entries idx of collection h (decoded as c) one
// blob per download, at most opts.Concurrency at once.
func (s *Store) downloadEach(ctx context.Context, h Hash, c *Collection, idx []int, providers []Provider, opts *DownloadOptions, rep *reporter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, i := range idx {
		e := c.Entries[i]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n, err := s.download(ctx, e.Hash, e.Size, providers, opts, rep)
			if err == nil && n != e.Size {
				err = fmt.Errorf("blobsync: collection %s entry %q: blob %s is %d bytes, the entry says %d", h, e.Name, e.Hash, n, e.Size)
			}
			if err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}
