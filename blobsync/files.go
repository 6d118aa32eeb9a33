package blobsync

import (
	"context"
	"io"
)

// A collection entry's bytes are one blob (Entry.Hash) or, for a chunked
// entry, a chunk list and its chunks (Entry.Chunks). The methods below take
// the entry and do the right thing for either, so a caller that holds,
// fetches, exports, reads or serves files need not tell them apart.

// HasFile reports whether the store holds all of entry e's bytes: blob
// e.Hash, or for a chunked entry its chunk list and every chunk.
func (s *Store) HasFile(e Entry) (bool, error) {
	if e.Chunks.IsZero() {
		return s.Has(e.Hash)
	}
	return s.HasChunks(e.Chunks)
}

// DownloadFile fetches what the store lacks of entry e's bytes from
// providers: Download of blob e.Hash (with e.Size as its hint), or
// DownloadChunked of its chunk list and missing chunks.
func (s *Store) DownloadFile(ctx context.Context, e Entry, providers []Provider, opts DownloadOptions) error {
	if e.Chunks.IsZero() {
		opts.SizeHint = e.Size
		_, err := s.Download(ctx, e.Hash, providers, opts)
		return err
	}
	if opts.DeltaBase.IsZero() {
		opts.DeltaBase = s.DeltaBaseOf(e)
	}
	_, err := s.DownloadChunked(ctx, e.Chunks, e.Size, providers, opts)
	return err
}

// DeltaBaseOf returns the chunk list of the most recent earlier version of
// entry e (e.Versions, newest first) that the store holds whole, list and
// every chunk, and whose chunks held by reference (ExportChunkedRef) are
// still readable from their file: the base DownloadChunked asks deltas against
// (DownloadOptions.DeltaBase). Zero if there is none.
func (s *Store) DeltaBaseOf(e Entry) Hash {
	for _, v := range e.Versions {
		if v.Deleted || v.Chunks.IsZero() || v.Chunks == e.Chunks {
			continue
		}
		if ok, err := s.HasChunks(v.Chunks); err == nil && ok {
			return v.Chunks
		}
	}
	return Hash{}
}

// ExportFile writes entry e's bytes to the file dst: Export of blob e.Hash,
// or ExportChunked, which checks the whole-file hash e.Hash and size
// e.Size before dst appears (ErrWholeHash).
func (s *Store) ExportFile(ctx context.Context, e Entry, dst string) error {
	_, err := s.ExportFileMethod(ctx, e, dst)
	return err
}

// ExportFileMethod is ExportFile that returns the method it used: the
// blob's (reflink, copy_file_range, copy) or ExportAssembled.
func (s *Store) ExportFileMethod(ctx context.Context, e Entry, dst string) (ExportMethod, error) {
	if e.Chunks.IsZero() {
		return s.export(ctx, e.Hash, dst, s.exportFrom)
	}
	return ExportAssembled, s.ExportChunked(ctx, e.Hash, e.Chunks, e.Size, dst)
}

// ExportFileMove is ExportFile without the store keeping its own copy
// where it can: a file that is one blob goes through ExportMove (the
// store's data file becomes dst and the blob a reference to it; inline
// and reference-mode blobs and another file system are copied). A
// chunked file goes through ExportChunkedRef: assembled to dst, then its
// chunks that keep does not claim (those other files or versions share:
// ChunksBesides; nil keeps none) become references into dst. It returns
// the method used: ExportMoved; ExportAssembledRef for a chunked file
// whose chunks, or some of them, are now references into dst, and
// ExportAssembled when none could be; else the copy's method.
func (s *Store) ExportFileMove(ctx context.Context, e Entry, dst string, keep func(Hash) bool) (ExportMethod, error) {
	if e.Chunks.IsZero() {
		return s.ExportMove(ctx, e.Hash, dst)
	}
	r, err := s.ExportChunkedRef(ctx, e.Hash, e.Chunks, e.Size, dst, keep)
	if err != nil {
		return 0, err
	}
	if r.Referenced == 0 {
		return ExportAssembled, nil
	}
	return ExportAssembledRef, nil
}

// OpenFile returns a seekable reader over entry e's bytes and their size:
// Open of blob e.Hash, or OpenChunked (whole-file hash checked on a read
// through from the start without a seek). The caller closes it.
func (s *Store) OpenFile(ctx context.Context, e Entry) (io.ReadSeekCloser, int64, error) {
	if e.Chunks.IsZero() {
		return s.Open(e.Hash)
	}
	return s.OpenChunked(ctx, e.Hash, e.Chunks)
}

// FileBlobs calls yield with every blob entry e's bytes consist of, as far
// as the store knows them: e.Hash for a blob; for a chunked entry the
// chunk list and, when the store holds the list, each distinct chunk it
// names (a servable set, a push to another store, GC roots). It stops when
// yield returns false.
func (s *Store) FileBlobs(e Entry, yield func(Hash) bool) {
	if e.Chunks.IsZero() {
		yield(e.Hash)
		return
	}
	if !yield(e.Chunks) {
		return
	}
	l, err := s.ReadChunkList(e.Chunks)
	if err != nil {
		return
	}
	seen := make(map[Hash]bool, len(l.Chunks))
	for _, c := range l.Chunks {
		if !seen[c.Hash] {
			seen[c.Hash] = true
			if !yield(c.Hash) {
				return
			}
		}
	}
}
