package blobsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/dwebkit/dweb/internal/ctxio"
	"github.com/zeebo/blake3"
)

// ErrWholeHash: a chunked file's chunks, each verified against its own
// hash, assembled to bytes whose BLAKE3 is not the whole-file hash the
// collection entry gives: the chunk list does not describe that file.
var ErrWholeHash = errors.New("blobsync: assembled file does not match its hash")

// ExportChunked assembles the chunked file whose chunk list is blob list
// into the file dst (mode 0644), as Export does for a blob: through a
// ".part" temp file in dst's directory, fsynced and renamed, then the
// directory synced. It hashes the bytes as it writes them, and only if
// their BLAKE3 is whole (and their size, size, when size >= 0) does dst
// appear; otherwise the temp file is removed and the error wraps
// ErrWholeHash, naming both hashes. The list and every chunk must be held
// (ErrNotFound otherwise). A cancelled ctx stops the copy within one
// chunk.
func (s *Store) ExportChunked(ctx context.Context, whole, list Hash, size int64, dst string) error {
	l, err := s.ReadChunkList(list)
	if err != nil {
		return fmt.Errorf("blobsync: export %s: %w", whole, err)
	}
	if size >= 0 && l.Size() != size {
		return fmt.Errorf("blobsync: export %s: %w: chunk list %s adds up to %d bytes, the entry says %d", whole, ErrWholeHash, list, l.Size(), size)
	}
	return writeExport(ctx, whole, dst, func(f *os.File) error {
		hs := blake3.New()
		if _, err := io.CopyBuffer(onlyWriter{io.MultiWriter(f, hs)}, s.chunkReader(ctx, l), make([]byte, ioBufSize)); err != nil {
			return err
		}
		var got Hash
		hs.Sum(got[:0])
		if got != whole {
			return fmt.Errorf("%w: chunk list %s assembles to %s", ErrWholeHash, list, got)
		}
		return nil
	})
}

// OpenChunked returns a reader over the chunked file whose chunk list is
// blob list, and the file's size: its chunks in order, each read from the
// store (complete, verified blobs) when the position reaches it. It
// seeks (io.SeekStart, io.SeekCurrent, io.SeekEnd) within the file. Read
// from the start to the end without a seek, it also hashes what it yields
// and, at the end, returns an error wrapping ErrWholeHash instead of
// io.EOF if the bytes' BLAKE3 is not whole, so a caller that reads the
// file through learns of a list that does not describe it. A chunk the
// store lacks is an error wrapping ErrNotFound when the read reaches it.
// The caller closes it.
func (s *Store) OpenChunked(ctx context.Context, whole, list Hash) (io.ReadSeekCloser, int64, error) {
	l, err := s.ReadChunkList(list)
	if err != nil {
		return nil, 0, err
	}
	r := &chunkSeeker{ctx: ctx, s: s, l: l, starts: make([]int64, len(l.Chunks)+1), hs: blake3.New(), want: whole, cur: -1}
	for i, c := range l.Chunks {
		r.starts[i+1] = r.starts[i] + c.Size
	}
	return r, r.size(), nil
}

// chunkSeeker is OpenChunked's reader.
type chunkSeeker struct {
	ctx    context.Context
	s      *Store
	l      *ChunkList
	starts []int64 // starts[i]: the file offset of chunk i; the last is the size
	pos    int64
	cur    int // the chunk f holds open, or -1
	f      io.ReadSeekCloser
	hs     *blake3.Hasher // nil once a seek broke the sequential read
	want   Hash
}

func (r *chunkSeeker) size() int64 { return r.starts[len(r.starts)-1] }

func (r *chunkSeeker) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if r.pos >= r.size() {
		if r.hs != nil {
			var got Hash
			r.hs.Sum(got[:0])
			if got != r.want {
				return 0, fmt.Errorf("%w: chunks assemble to %s, want %s", ErrWholeHash, got, r.want)
			}
		}
		return 0, io.EOF
	}
	i := sort.Search(len(r.l.Chunks), func(i int) bool { return r.starts[i+1] > r.pos })
	c := r.l.Chunks[i]
	if r.cur != i {
		if r.f != nil {
			r.f.Close()
			r.f, r.cur = nil, -1
		}
		f, n, err := r.s.Open(c.Hash)
		if err != nil {
			return 0, fmt.Errorf("chunk %d (%s): %w", i, c.Hash, err)
		}
		if n != c.Size {
			f.Close()
			return 0, fmt.Errorf("%w: chunk %d (%s) is %d bytes, the list says %d", ErrCorrupt, i, c.Hash, n, c.Size)
		}
		r.f, r.cur = f, i
	}
	off := r.pos - r.starts[i]
	if _, err := r.f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	p = p[:min(int64(len(p)), c.Size-off)]
	n, err := io.ReadFull(r.f, p)
	if err != nil {
		return n, fmt.Errorf("%w: chunk %d (%s) ended early: %v", ErrCorrupt, i, c.Hash, err)
	}
	if r.hs != nil {
		r.hs.Write(p[:n])
	}
	r.pos += int64(n)
	return n, nil
}

func (r *chunkSeeker) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.size() + offset
	default:
		return 0, fmt.Errorf("blobsync: chunked file: bad whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("blobsync: chunked file: negative position %d", abs)
	}
	if abs != r.pos {
		r.hs = nil
	}
	r.pos = abs
	return abs, nil
}

func (r *chunkSeeker) Close() error {
	if r.f != nil {
		r.cur = -1
		f := r.f
		r.f = nil
		return f.Close()
	}
	return nil
}

// chunkReader reads l's chunks from the store in order.
func (s *Store) chunkReader(ctx context.Context, l *ChunkList) *chunkReader {
	return &chunkReader{ctx: ctx, s: s, l: l}
}

type chunkReader struct {
	ctx context.Context
	s   *Store
	l   *ChunkList
	i   int
	cur io.Reader
	cls io.Closer
	got int64 // bytes of the current chunk read
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if r.i == len(r.l.Chunks) {
				return 0, io.EOF
			}
			c := r.l.Chunks[r.i]
			f, n, err := r.s.Open(c.Hash)
			if err != nil {
				return 0, fmt.Errorf("chunk %d (%s): %w", r.i, c.Hash, err)
			}
			if n != c.Size {
				f.Close()
				return 0, fmt.Errorf("%w: chunk %d (%s) is %d bytes, the list says %d", ErrCorrupt, r.i, c.Hash, n, c.Size)
			}
			r.cur, r.cls, r.got = ctxio.NewReader(r.ctx, f), f, 0
		}
		n, err := r.cur.Read(p)
		r.got += int64(n)
		if err == io.EOF {
			r.cls.Close()
			r.cur = nil
			if r.got != r.l.Chunks[r.i].Size {
				return n, fmt.Errorf("%w: chunk %d (%s) ended at %d bytes, want %d", ErrCorrupt, r.i, r.l.Chunks[r.i].Hash, r.got, r.l.Chunks[r.i].Size)
			}
			r.i++
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

func (r *chunkReader) Close() error {
	if r.cur != nil {
		r.cur = nil
		return r.cls.Close()
	}
	return nil
}
