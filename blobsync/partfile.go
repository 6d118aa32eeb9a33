package blobsync

import (
	"bufio"
	"errors"
	"fmt"
	"os"
)

// partFiles are the ".part" data and outboard files of a blob being written.
// commit makes them the blob's files and writes its entry; abort removes them.
type partFiles struct {
	s            *Store
	h            Hash // the blob; set before commit when the files were temp-named
	dataF, obaoF *os.File
	data, obao   *bufio.Writer
}

// newPartFiles creates <hex>.data.part and <hex>.obao.part for h, truncating
// leftovers. The caller holds s.lock(h).
func (s *Store) newPartFiles(h Hash) (*partFiles, error) {
	return s.createParts(h, func(final string) (*os.File, error) {
		return os.OpenFile(final+".part", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	})
}

// newTempPartFiles creates uniquely named part files for a blob whose hash is
// not known yet (AddFile).
func (s *Store) newTempPartFiles() (*partFiles, error) {
	return s.createParts(Hash{}, func(final string) (*os.File, error) {
		ext := ".data.part"
		if final == s.obaoPath(Hash{}) {
			ext = ".obao.part"
		}
		return os.CreateTemp(s.dir, "add-*"+ext)
	})
}

func (s *Store) createParts(h Hash, create func(final string) (*os.File, error)) (*partFiles, error) {
	df, err := create(s.dataPath(h))
	if err != nil {
		return nil, fmt.Errorf("blobsync: create part file: %w", err)
	}
	of, err := create(s.obaoPath(h))
	if err != nil {
		df.Close()
		os.Remove(df.Name())
		return nil, fmt.Errorf("blobsync: create part file: %w", err)
	}
	return &partFiles{
		s: s, h: h, dataF: df, obaoF: of,
		data: bufio.NewWriterSize(df, ioBufSize),
		obao: bufio.NewWriterSize(of, 64<<10),
	}, nil
}

// abort closes and removes the part files.
func (w *partFiles) abort() {
	for _, f := range []*os.File{w.dataF, w.obaoF} {
		f.Close()
		os.Remove(f.Name())
	}
}

// commit flushes and fsyncs the part files, checks their sizes, renames them
// to w.h's final names, fsyncs the directory and only then writes the
// complete entry. On error the part files are removed. The caller holds
// s.lock(w.h).
func (w *partFiles) commit(size int64) error {
	err := w.finish(size)
	if err != nil {
		w.abort()
		return err
	}
	s := w.s
	if err := os.Rename(w.obaoF.Name(), s.obaoPath(w.h)); err != nil {
		w.abort()
		return fmt.Errorf("blobsync: commit %s: %w", w.h, err)
	}
	if err := os.Rename(w.dataF.Name(), s.dataPath(w.h)); err != nil {
		w.abort()
		os.Remove(s.obaoPath(w.h))
		return fmt.Errorf("blobsync: commit %s: %w", w.h, err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	return s.putEntry(w.h, entry{Size: size, State: stateComplete})
}

func (w *partFiles) finish(size int64) error {
	if err := errors.Join(w.data.Flush(), w.obao.Flush()); err != nil {
		return fmt.Errorf("blobsync: commit %s: %w", w.h, err)
	}
	for f, want := range map[*os.File]int64{w.dataF: size, w.obaoF: int64(outboardSize(uint64(size)))} {
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("blobsync: commit %s: %w", w.h, err)
		}
		if fi.Size() != want {
			return fmt.Errorf("blobsync: commit %s: %s is %d bytes, want %d", w.h, f.Name(), fi.Size(), want)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("blobsync: commit %s: fsync: %w", w.h, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("blobsync: commit %s: %w", w.h, err)
		}
	}
	return nil
}
