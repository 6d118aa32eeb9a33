package blobsync

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
)

// partFiles are the ".part" data and outboard files of a blob of a known
// size being written. commit makes them the blob's files and writes its
// entry; abort removes them. A blob whose outboard goes inline
// (inlineOutboard) has no outboard file: its outboard is kept in memory
// (at most 16 KiB) and committed in the entry.
type partFiles struct {
	s     *Store
	h     Hash // the blob; set before commit when the files were temp-named
	dataF *os.File
	obaoF *os.File // nil: the outboard goes inline
	data  *bufio.Writer
	obao  io.Writer     // the outboard, header first: obaoW, or obaoMem
	obaoW *bufio.Writer // over obaoF
	mem   *bytes.Buffer // the inline outboard, header first
}

// newPartFiles creates <hex>.data.part and, unless the outboard goes
// inline, <hex>.obao.part for a blob h of size bytes, truncating leftovers.
// The caller holds s.lock(h).
func (s *Store) newPartFiles(h Hash, size uint64) (*partFiles, error) {
	return s.createParts(h, size, func(final string) (*os.File, error) {
		return os.OpenFile(final+".part", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	})
}

func (s *Store) createParts(h Hash, size uint64, create func(final string) (*os.File, error)) (*partFiles, error) {
	df, err := create(s.dataPath(h))
	if err != nil {
		return nil, fmt.Errorf("blobsync: create part file: %w", err)
	}
	w := &partFiles{s: s, h: h, dataF: df, data: getDataWriter(df)}
	if err := w.createObao(size, create); err != nil {
		return nil, err
	}
	return w, nil
}

// newTempData creates a uniquely named data part file for a blob whose
// hash and size are not known yet (addTree); addObao adds the outboard
// once the size is known.
func (s *Store) newTempData() (*partFiles, error) {
	df, err := os.CreateTemp(s.dir, "add-*.data.part")
	if err != nil {
		return nil, fmt.Errorf("blobsync: create part file: %w", err)
	}
	return &partFiles{s: s, dataF: df, data: getDataWriter(df)}, nil
}

// addObao gives w, made by newTempData, its outboard for a blob of size
// bytes. On error the part files are removed.
func (s *Store) addObao(w *partFiles, size uint64) error {
	return w.createObao(size, func(string) (*os.File, error) { return os.CreateTemp(s.dir, "add-*.obao.part") })
}

// createObao creates the outboard part file with create, or the in-memory
// outboard when it goes inline. On error the data part file is removed.
func (w *partFiles) createObao(size uint64, create func(final string) (*os.File, error)) error {
	if inlineOutboard(size) {
		w.mem = bytes.NewBuffer(make([]byte, 0, outboardSize(size)))
		w.obao = w.mem
		return nil
	}
	var err error
	if w.obaoF, err = create(w.s.obaoPath(w.h)); err != nil {
		w.dataF.Close()
		os.Remove(w.dataF.Name())
		return fmt.Errorf("blobsync: create part file: %w", err)
	}
	w.obaoW = bufio.NewWriterSize(w.obaoF, 64<<10)
	w.obao = w.obaoW
	return nil
}

// dataWriters keeps the part files' write buffers for the next blob: a
// collection of small files would otherwise allocate (and clear) one per
// file, hundreds of megabytes for the garbage collector.
var dataWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, ioBufSize) }}

func getDataWriter(f *os.File) *bufio.Writer {
	w := dataWriters.Get().(*bufio.Writer)
	w.Reset(f)
	return w
}

// files returns the part files that exist.
func (w *partFiles) files() []*os.File {
	if w.obaoF == nil {
		return []*os.File{w.dataF}
	}
	return []*os.File{w.dataF, w.obaoF}
}

// abort closes and removes the part files.
func (w *partFiles) abort() {
	for _, f := range w.files() {
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
	e := entry{Size: size, State: stateComplete}
	if e.Outboard, err = w.rename(); err != nil {
		return err
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	if err := s.putEntry(w.h, e); err != nil {
		return err
	}
	if w.obaoF == nil {
		removeStale(s.obaoPath(w.h)) // a partial download's leftover, if any
	}
	return nil
}

// rename gives the part files (written and synced) w.h's final names and
// returns the inline outboard, if the blob has one. On error the part
// files are removed.
func (w *partFiles) rename() (outboard []byte, err error) {
	s := w.s
	if w.obaoF != nil {
		if err := os.Rename(w.obaoF.Name(), s.obaoPath(w.h)); err != nil {
			w.abort()
			return nil, fmt.Errorf("blobsync: commit %s: %w", w.h, err)
		}
	} else {
		outboard = w.mem.Bytes()[outboardHeader:]
	}
	if err := os.Rename(w.dataF.Name(), s.dataPath(w.h)); err != nil {
		w.abort()
		if w.obaoF != nil {
			os.Remove(s.obaoPath(w.h))
		}
		return nil, fmt.Errorf("blobsync: commit %s: %w", w.h, err)
	}
	return outboard, nil
}

// removeStale removes a file the blob's entry no longer refers to (an
// .obao beside an inline outboard, a .data beside a reference). One it
// cannot remove is only wasted space: GC removes an .obao the entry does
// not use.
func removeStale(path string) { os.Remove(path) }

func (w *partFiles) finish(size int64) error {
	if err := w.flushCheck(size); err != nil {
		return err
	}
	for _, f := range w.files() {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("blobsync: commit %s: fsync: %w", w.h, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("blobsync: commit %s: %w", w.h, err)
		}
	}
	return nil
}

// flushCheck flushes the part files' buffers and checks their sizes (and
// the inline outboard's) against a blob of size bytes.
func (w *partFiles) flushCheck(size int64) error {
	if err := w.data.Flush(); err != nil {
		return fmt.Errorf("blobsync: commit %s: %w", w.h, err)
	}
	want := map[*os.File]int64{w.dataF: size}
	if w.obaoF != nil {
		if err := w.obaoW.Flush(); err != nil {
			return fmt.Errorf("blobsync: commit %s: %w", w.h, err)
		}
		want[w.obaoF] = int64(outboardSize(uint64(size)))
	} else if got := w.mem.Len(); uint64(got) != outboardSize(uint64(size)) {
		return fmt.Errorf("blobsync: commit %s: outboard is %d bytes, want %d", w.h, got, outboardSize(uint64(size)))
	}
	dataWriters.Put(w.data) // flushed: its buffer is not kept while a batch waits for its commit
	w.data = nil
	for f, want := range want {
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("blobsync: commit %s: %w", w.h, err)
		}
		if fi.Size() != want {
			return fmt.Errorf("blobsync: commit %s: %s is %d bytes, want %d", w.h, f.Name(), fi.Size(), want)
		}
	}
	return nil
}
