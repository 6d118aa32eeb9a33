package blobsync

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// AddFileRef imports the file at path in reference mode: the store computes
// (reading the file once, hashing on every core: hashTree) and keeps the
// blob's outboard but not a copy of its bytes; it remembers the
// file's absolute path, size and modification time. Open, Export and Serve
// then read the app's file and refuse it (ErrCorrupt, "changed since it was
// imported") once its size or mtime differ; import it again after a change.
// Deleting the blob (Delete, GC) never touches the app's file.
//
// Files of at most ChunkGroupSize bytes are copied inline instead (there is
// no outboard to save). If the store already holds the blob (copied or by
// reference) AddFileRef changes nothing. The file must not change while it
// is hashed: AddFileRef checks size and mtime before and after and fails if
// they moved.
func (s *Store) AddFileRef(ctx context.Context, path string) (Hash, int64, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Hash{}, 0, fmt.Errorf("blobsync: add file ref: %w", err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return Hash{}, 0, fmt.Errorf("blobsync: add file ref: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Hash{}, 0, fmt.Errorf("blobsync: add file ref: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Hash{}, 0, fmt.Errorf("blobsync: add file ref %s: not a regular file (%v)", abs, fi.Mode().Type())
	}
	size := fi.Size()
	if size > MaxBlobSize {
		return Hash{}, 0, &LimitError{What: "file " + abs, Limit: MaxBlobSize, Got: size}
	}
	if size <= inlineMax {
		return s.AddFile(ctx, abs)
	}
	// One pass over the file, hashed on every core (hashTree); the
	// outboard then goes in memory when it goes inline in the entry, else
	// to a temp file renamed into place once the entry is about to be
	// written.
	th, err := hashTree(ctx, treeSource{ra: f, size: size}, s.dir, nil)
	if err != nil {
		return Hash{}, 0, fmt.Errorf("blobsync: add file ref %s: %w", abs, err)
	}
	defer th.close()
	h := th.root
	var ob *os.File
	var mem bytes.Buffer
	fail := func(err error) (Hash, int64, error) {
		if ob != nil {
			ob.Close()
			os.Remove(ob.Name())
		}
		return Hash{}, 0, fmt.Errorf("blobsync: add file ref %s: %w", abs, err)
	}
	after, err := os.Stat(abs)
	if err != nil {
		return fail(err)
	}
	if after.Size() != size || !after.ModTime().Equal(fi.ModTime()) {
		return fail(fmt.Errorf("the file changed while it was hashed"))
	}
	if inlineOutboard(uint64(size)) {
		if err := th.writeOutboard(&mem); err != nil {
			return fail(err)
		}
	} else {
		if ob, err = os.CreateTemp(s.dir, "ref-*.obao.part"); err != nil {
			return fail(err)
		}
		bw := bufio.NewWriterSize(ob, 64<<10)
		if err := th.writeOutboard(bw); err != nil {
			return fail(err)
		}
		if err := bw.Flush(); err != nil {
			return fail(err)
		}
		if err := ob.Sync(); err != nil {
			return fail(err)
		}
		if err := ob.Close(); err != nil {
			return fail(err)
		}
	}
	unlock, err := s.lock(ctx, h)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	if ok, err := s.Has(h); err != nil || ok {
		if ob != nil {
			os.Remove(ob.Name())
		}
		return h, size, err
	}
	e := entry{Size: size, State: stateComplete, RefPath: abs, RefMod: fi.ModTime().UnixNano()}
	if ob != nil {
		if err := os.Rename(ob.Name(), s.obaoPath(h)); err != nil {
			return fail(err)
		}
		if err := syncDir(s.dir); err != nil {
			return Hash{}, 0, err
		}
	} else {
		e.Outboard = mem.Bytes()[outboardHeader:]
	}
	if err := s.putEntry(h, e); err != nil {
		return Hash{}, 0, err
	}
	if ob == nil {
		removeStale(s.obaoPath(h)) // a partial download's leftover, if any
	}
	removeStale(s.dataPath(h)) // a partial download's leftover, if any
	return h, size, nil
}
