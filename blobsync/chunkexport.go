package blobsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*.part")
	if err != nil {
		return fmt.Errorf("blobsync: export %s: %w", whole, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("blobsync: export %s to %s: %w", whole, dst, err)
	}
	hs := blake3.New()
	if _, err := io.CopyBuffer(onlyWriter{io.MultiWriter(f, hs)}, s.chunkReader(ctx, l), make([]byte, ioBufSize)); err != nil {
		return fail(err)
	}
	var got Hash
	hs.Sum(got[:0])
	if got != whole {
		return fail(fmt.Errorf("%w: chunk list %s assembles to %s", ErrWholeHash, list, got))
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("blobsync: export %s to %s: %w", whole, dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("blobsync: export %s to %s: %w", whole, dst, err)
	}
	return syncDir(filepath.Dir(dst))
}

// OpenChunked returns a reader over the chunked file whose chunk list is
// blob list: its chunks in order, read from the store one at a time. The
// reader hashes what it yields and, at the end, returns an error wrapping
// ErrWholeHash instead of io.EOF if the bytes' BLAKE3 is not whole, so a
// caller that reads to the end learns of a list that does not describe
// the file. The caller closes it.
func (s *Store) OpenChunked(ctx context.Context, whole, list Hash) (io.ReadCloser, int64, error) {
	l, err := s.ReadChunkList(list)
	if err != nil {
		return nil, 0, err
	}
	cr := s.chunkReader(ctx, l)
	return &checkedReader{r: cr, c: cr, hs: blake3.New(), want: whole}, l.Size(), nil
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

// checkedReader hashes what r yields and turns its io.EOF into an
// ErrWholeHash error when the hash is not want.
type checkedReader struct {
	r    io.Reader
	c    io.Closer
	hs   *blake3.Hasher
	want Hash
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.hs.Write(p[:n])
	if err == io.EOF {
		var got Hash
		c.hs.Sum(got[:0])
		if got != c.want {
			return n, fmt.Errorf("%w: chunks assemble to %s, want %s", ErrWholeHash, got, c.want)
		}
	}
	return n, err
}

func (c *checkedReader) Close() error { return c.c.Close() }
