package blobsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dwebkit/dweb/internal/ctxio"
	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
)

// Content-defined chunking. A file above ChunkThreshold bytes is cut where
// a rolling hash of the last 64 bytes matches a mask, so the cut points
// move with the content: an edit changes the chunks it touches (and at
// most the one after), and an insertion or deletion does not shift every
// later chunk, as fixed-size blocks (Syncthing's 128 KiB) would. This is
// the idea of LBFS (Muthitacharoen et al., SOSP 2001) as rsync, restic,
// borg and casync use it; FastCDC (Xia et al., USENIX ATC 2016) is a
// faster cut-point test with the same property.
//
// The cutting is github.com/restic/chunker (Rabin fingerprints over a
// 64-byte window, restic's production chunker, kept by the restic
// project). It was chosen over github.com/jotfs/fastcdc-go v0.2.0, whose
// NewChunker XORs its seed into a package-level table on every call: two
// files chunked at once (two uploads, a test under -race) race on that
// table. The Rabin loop costs about 2.5 ns per byte on one core of the
// development machine (about 400 MB/s; CPU profile of dweb bench dedup),
// so AddFileChunked runs below AddFile (docs/BENCHMARKS.md).
//
// Every node cuts with the same polynomial (chunkPol), so the same file
// added by two members, or by one member twice, makes the same chunks and
// the store keeps one copy of each. A fixed polynomial lets an observer of
// chunk sizes fingerprint known content; chunks travel inside group
// tunnels only, and blobs are named by their hash anyway.
const (
	// ChunkThreshold: files of at most this many bytes stay one blob; larger
	// ones are chunked.
	ChunkThreshold = 4 << 20
	// ChunkMin and ChunkMax bound a chunk's size in bytes; the last chunk
	// of a file may be shorter than ChunkMin. The mean, for random data,
	// is about ChunkMin + 2^chunkAvgBits (1.25 MiB): a cut is looked for
	// only after ChunkMin bytes, then is found with probability 2^-20 per
	// byte, and forced at ChunkMax.
	ChunkMin     = 256 << 10
	ChunkMax     = 4 << 20
	chunkAvgBits = 20
)

// chunkPol is the irreducible polynomial of degree 53 every node's chunker
// uses (restic's tests use it; TestChunkPolIrreducible checks it).
const chunkPol = chunker.Pol(0x3DA3358B4DC173)

// ChunkedFile is a file stored as chunks (AddFileChunked).
type ChunkedFile struct {
	Hash   Hash  // BLAKE3-256 of the whole file, as b3sum prints it
	Size   int64 // bytes
	List   Hash  // the chunk-list blob (chunklist.go)
	Chunks []ChunkRef
	// Stored is how many bytes of chunks this call added to the store:
	// those it did not hold already (0 for a file added before).
	Stored int64
}

// newChunker returns dweb's chunker over r (chunkPol, ChunkMin..ChunkMax,
// mean about 1.25 MiB).
func newChunker(r io.Reader) *chunker.Chunker {
	c := chunker.NewWithBoundaries(r, chunkPol, ChunkMin, ChunkMax)
	c.SetAverageBits(chunkAvgBits)
	return c
}

// AddFileChunked stores the file at path as content-defined chunks, each
// its own blob, and a chunk list naming them, reading the file once: the
// whole file's BLAKE3 is computed in the same pass. A chunk the store
// already holds (from another file, or an earlier version of this one) is
// not stored again. Memory stays bounded: one ChunkMax buffer and the
// chunker's 512 KiB read buffer. The file must be a regular file of at
// least one byte and at most MaxBlobSize bytes; if it changes while being
// read, the result describes the bytes read (the chunks and the whole
// hash always agree). Chunks stored before an error stay in the store,
// unreferenced, for GC.
func (s *Store) AddFileChunked(ctx context.Context, path string) (ChunkedFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return ChunkedFile{}, fmt.Errorf("blobsync: add file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ChunkedFile{}, fmt.Errorf("blobsync: add file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return ChunkedFile{}, fmt.Errorf("blobsync: add file %s: not a regular file (%v)", path, fi.Mode().Type())
	}
	if fi.Size() > MaxBlobSize {
		return ChunkedFile{}, &LimitError{What: "file " + path, Limit: MaxBlobSize, Got: fi.Size()}
	}
	cf, err := s.addChunked(ctx, f)
	if err != nil {
		return ChunkedFile{}, fmt.Errorf("blobsync: add file %s: %w", path, err)
	}
	return cf, nil
}

// AddReaderChunked stores the bytes r yields as AddReader does when they
// are at most ChunkThreshold bytes (one blob: the result's List is zero,
// Chunks empty), and as content-defined chunks and a chunk list, as
// AddFileChunked, when they are more: an upload of unknown length (the
// Save app's, the C ABI's bytes) chunked as it streams in, read once.
// At most ChunkThreshold+1 bytes are buffered to decide. More than limit
// bytes (limit <= 0 or over MaxBlobSize: MaxBlobSize) is a *LimitError;
// r's error is returned wrapped. After an error nothing names what was
// read, but chunks stored before it stay in the store, unreferenced, for
// GC (as AddFileChunked's).
func (s *Store) AddReaderChunked(ctx context.Context, r io.Reader, limit int64) (ChunkedFile, error) {
	if limit <= 0 || limit > MaxBlobSize {
		limit = MaxBlobSize
	}
	first := make([]byte, min(limit, ChunkThreshold)+1)
	n, err := io.ReadFull(ctxio.NewReader(ctx, r), first)
	switch {
	case (err == io.EOF || err == io.ErrUnexpectedEOF) && n <= ChunkThreshold:
		h, size, err := s.AddReader(ctx, bytes.NewReader(first[:n]), limit)
		if err != nil {
			return ChunkedFile{}, err
		}
		return ChunkedFile{Hash: h, Size: size, Stored: size}, nil
	case err == io.EOF || err == io.ErrUnexpectedEOF, err == nil:
		if int64(n) > limit {
			return ChunkedFile{}, &LimitError{What: "blob", Limit: limit, Got: int64(n)}
		}
	default:
		return ChunkedFile{}, fmt.Errorf("blobsync: add: %w", err)
	}
	src := &limitedReader{r: io.MultiReader(bytes.NewReader(first[:n]), ctxio.NewReader(ctx, r)), left: limit}
	cf, err := s.addChunked(ctx, src)
	if err != nil {
		return ChunkedFile{}, fmt.Errorf("blobsync: add: %w", err)
	}
	return cf, nil
}

// limitedReader yields r's bytes and fails with a *LimitError past left
// of them (io.LimitReader would end the stream quietly instead).
type limitedReader struct {
	r    io.Reader
	left int64
	read int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.read > l.left {
		return 0, &LimitError{What: "blob", Limit: l.left, Got: l.read}
	}
	return n, err
}

// addChunked cuts r into chunks, stores each and the chunk list.
func (s *Store) addChunked(ctx context.Context, r io.Reader) (ChunkedFile, error) {
	whole := blake3.New()
	ch := newChunker(io.TeeReader(r, whole))
	buf := make([]byte, ChunkMax)
	var cf ChunkedFile
	for {
		if err := ctx.Err(); err != nil {
			return ChunkedFile{}, err
		}
		c, err := ch.Next(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ChunkedFile{}, err
		}
		h := HashBytes(c.Data)
		held, err := s.Has(h)
		if err != nil {
			return ChunkedFile{}, err
		}
		if !held {
			if _, err := s.AddBytes(ctx, c.Data); err != nil {
				return ChunkedFile{}, err
			}
			cf.Stored += int64(len(c.Data))
		}
		cf.Chunks = append(cf.Chunks, ChunkRef{Hash: h, Size: int64(len(c.Data))})
		cf.Size += int64(len(c.Data))
	}
	whole.Sum(cf.Hash[:0])
	l := ChunkList{Chunks: cf.Chunks}
	enc, err := l.Encode()
	if err != nil {
		return ChunkedFile{}, err
	}
	if cf.List, err = s.AddBytes(ctx, enc); err != nil {
		return ChunkedFile{}, err
	}
	return cf, nil
}

// ReadChunkList returns the chunk list stored as blob h: ErrNotFound if
// the store does not hold it, ErrBadChunkList if it does not decode.
func (s *Store) ReadChunkList(h Hash) (*ChunkList, error) {
	b, err := s.ReadAll(h, MaxChunkListSize)
	if err != nil {
		return nil, err
	}
	l, err := DecodeChunkList(b)
	if err != nil {
		return nil, fmt.Errorf("chunk list %s: %w", h, err)
	}
	return l, nil
}

// HasChunks reports whether the store holds the chunk list h and every
// chunk it names (Has): a chunked file that can be assembled without the
// network. Chunks held by reference into one file (ExportChunkedRef) cost
// one stat of it, not one per chunk.
func (s *Store) HasChunks(h Hash) (bool, error) {
	l, err := s.ReadChunkList(h)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	refs := refChecker{}
	for _, c := range l.Chunks {
		e, err := s.getEntry(c.Hash)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if refs.changed(e) {
			return false, nil
		}
	}
	return true, nil
}
