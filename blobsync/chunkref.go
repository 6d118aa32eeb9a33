package blobsync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dwebkit/dweb/internal/store"
)

// ExportAssembledRef is the method ExportFileMove reports for a chunked
// file it assembled and whose chunks the store then keeps as references
// into the output (ExportChunkedRef) instead of its own copies.
const ExportAssembledRef ExportMethod = 251

// The points of ExportChunkedRef after which a crash leaves a different
// state on disk; tests stop it there through Store.moveHook.
const (
	chunkRefAssembled moveStep = "ref-assembled" // dst is the whole file, fsynced; the store unchanged
	chunkRefEntries   moveStep = "ref-entries"   // a batch of chunks' entries reference dst (one synced batch)
	chunkRefUnlinked  moveStep = "ref-unlinked"  // their <hex>.data files are gone, the directory synced
	chunkRefPacks     moveStep = "ref-packs"     // the packs no entry names any more are gone
)

// chunkRefBatch: ExportChunkedRef rewrites at most this many entries in
// one Pebble batch (a chunk's entry is about 5 KiB with its outboard), so
// a batch stays a few MiB whatever the file's size. A variable for tests.
var chunkRefBatch = 512

// ChunkRefs is what ExportChunkedRef did with a file's distinct chunks.
type ChunkRefs struct {
	// Referenced, RefBytes: chunks whose entries now reference the
	// output file; the store's own copies of them are gone.
	Referenced int
	RefBytes   int64
	// Kept, KeptBytes: chunks the store keeps as they were (shared with
	// other files or versions, inline, already references, or busy).
	Kept      int
	KeptBytes int64
}

// ExportChunkedRef writes the chunked file whose chunk list is blob list
// to dst, as ExportChunked does (whole-file hash and size checked before
// dst appears), and then lets the store keep the file's chunks as
// references into dst instead of its own copies, so that the disk holds
// the file once. dst is the chunks' concatenation in list order, so chunk
// i is Size bytes at offset sum(sizes before i) of dst: its entry becomes
// a reference to that part of dst (entry.RefOff), held to dst's size,
// mtime and inode as fstat gave them when dst was written. Open, Export,
// OpenChunked and Serve read the chunk from dst while dst keeps them and
// refuse it (ErrCorrupt, "changed since") once it does not; nothing
// unverified is served, and DropBrokenChunkRefs forgets such chunks so
// that they can be fetched again. Delete and GC never remove dst.
//
// Only a chunk whose only copy is the store's own becomes a reference:
// one keep reports true for (a chunk other files or versions name:
// ChunksBesides), one of at most ChunkGroupSize bytes (inline), one
// already held by reference to another file, and one another writer,
// deleter or download holds now stay as they are. A chunk held by
// reference to dst itself (an earlier get to the same path, whose file
// the rename has just replaced) is pointed at the new dst whatever keep
// says; references to the old dst of chunks this file lacks (an earlier
// version's own) break, refused from then on, as dst's old bytes are
// gone. A dst in the store's own directory keeps every chunk.
//
// The steps: dst assembled (fsynced, renamed, directory synced); then, by
// batches of chunkRefBatch chunks under their locks: dst checked to be
// still the file written, the batch's entries rewritten as references in
// one synced Pebble batch, their <hex>.data files unlinked and the
// store's directory synced; last, the packs (pack.go) no entry names any
// more are removed. Each entry is valid alone (its own copy, or a
// reference to the intact dst), so a crash at any point loses nothing
// and leaves no entry half-written: after it the store holds the file
// partly as references and partly as its own copies, and GC removes the
// leftover <hex>.data files and packs no entry names. No intent is kept.
//
// Errors: ExportChunked's, or the file system's; an error after dst
// appeared leaves dst and a store that holds every chunk one way or the
// other.
func (s *Store) ExportChunkedRef(ctx context.Context, whole, list Hash, size int64, dst string, keep func(Hash) bool) (ChunkRefs, error) {
	var r ChunkRefs
	abs, err := filepath.Abs(dst)
	if err != nil {
		return r, fmt.Errorf("blobsync: export %s: %w", whole, err)
	}
	l, err := s.ReadChunkList(list)
	if err != nil {
		return r, fmt.Errorf("blobsync: export %s: %w", whole, err)
	}
	if size >= 0 && l.Size() != size {
		return r, fmt.Errorf("blobsync: export %s: %w: chunk list %s adds up to %d bytes, the entry says %d", whole, ErrWholeHash, list, l.Size(), size)
	}
	fi, err := s.assemble(ctx, whole, list, l, abs)
	if err != nil {
		return r, err
	}
	if err := s.moveStepDone(chunkRefAssembled); err != nil {
		return r, err
	}
	if s.inStoreDir(abs) {
		keep = func(Hash) bool { return true }
	}
	packs := make(map[string]bool)
	seen := make(map[Hash]bool, len(l.Chunks))
	var batch []chunkRefCand
	var off int64
	for _, c := range l.Chunks {
		at := off
		off += c.Size
		if seen[c.Hash] {
			continue
		}
		seen[c.Hash] = true
		cand, ok := s.chunkRefCandidate(c, at, abs, keep)
		if !ok {
			r.Kept++
			r.KeptBytes += c.Size
			continue
		}
		batch = append(batch, cand)
		if len(batch) == chunkRefBatch {
			if err := s.refBatch(batch, abs, fi, &r, packs); err != nil {
				return r, err
			}
			batch = batch[:0]
		}
	}
	if err := s.refBatch(batch, abs, fi, &r, packs); err != nil {
		return r, err
	}
	if err := s.removeDeadPacks(packs); err != nil {
		return r, err
	}
	if err := s.moveStepDone(chunkRefPacks); err != nil {
		return r, err
	}
	s.log.Debug("blobsync: exported with chunk references", "hash", whole, "dst", abs, "referenced", r.Referenced, "ref_bytes", r.RefBytes, "kept", r.Kept)
	return r, nil
}

// chunkRefCand is a chunk ExportChunkedRef may turn into a reference:
// its entry as read under its lock, which it holds, and its offset in
// dst.
type chunkRefCand struct {
	h      Hash
	off    int64
	e      entry
	unlock func()
}

// chunkRefCandidate takes c's lock if c may become a reference at offset
// off of dst: its own copy is the store's only one (as above), or it is
// a reference into dst already, whose file the export has just replaced
// with the same bytes at off (a get to the path of an earlier one: the
// reference must follow, whatever keep says, or it would name a file
// that is gone). ok false: it is kept, and no lock is held.
func (s *Store) chunkRefCandidate(c ChunkRef, off int64, dst string, keep func(Hash) bool) (chunkRefCand, bool) {
	if c.Size <= inlineMax {
		return chunkRefCand{}, false
	}
	unlock, ok := s.tryLock(c.Hash)
	if !ok {
		return chunkRefCand{}, false
	}
	e, err := s.getEntry(c.Hash)
	switch {
	case err != nil || e.Size != c.Size:
	case e.RefPath == dst:
		return chunkRefCand{h: c.Hash, off: off, e: e, unlock: unlock}, true
	case e.RefPath == "" && (keep == nil || !keep(c.Hash)):
		return chunkRefCand{h: c.Hash, off: off, e: e, unlock: unlock}, true
	}
	unlock()
	return chunkRefCand{}, false
}

// refBatch makes the chunks of batch references into dst (whose identity
// when written was fi) and releases their locks: in one synced Pebble
// batch, then their <hex>.data files unlinked. It adds the packs they
// were in to packs. If dst is no longer the file written, nothing
// changes and the chunks count as kept.
func (s *Store) refBatch(batch []chunkRefCand, dst string, fi os.FileInfo, r *ChunkRefs, packs map[string]bool) error {
	defer func() {
		for _, c := range batch {
			c.unlock()
		}
	}()
	if len(batch) == 0 {
		return nil
	}
	now, err := os.Stat(dst)
	if err != nil || !os.SameFile(now, fi) || now.Size() != fi.Size() || !now.ModTime().Equal(fi.ModTime()) {
		s.log.Info("blobsync: the exported file changed before its chunks became references: the store keeps them", "dst", dst, "err", err)
		for _, c := range batch {
			r.Kept++
			r.KeptBytes += c.e.Size
		}
		return nil
	}
	wb := s.db.NewBatch()
	hs := make([]Hash, len(batch))
	next := make([]entry, len(batch))
	for i, c := range batch {
		e := c.e
		e.Pack, e.PackOff = "", 0
		e.RefPath, e.RefMod, e.RefOff, e.RefSize, e.RefIno = dst, fi.ModTime().UnixNano(), c.off, fi.Size(), fileIno(fi)
		b, err := entryEnc.Marshal(e)
		if err != nil {
			return fmt.Errorf("blobsync: encode entry: %w", err)
		}
		wb.Set(entryKey(c.h), b)
		hs[i], next[i] = c.h, e
	}
	if err := s.commitEntries(hs, next, wb); err != nil {
		return fmt.Errorf("blobsync: reference chunks in %s: %w", dst, err)
	}
	for _, c := range batch {
		r.Referenced++
		r.RefBytes += c.e.Size
	}
	if err := s.moveStepDone(chunkRefEntries); err != nil {
		return err
	}
	for _, c := range batch {
		if c.e.Pack != "" {
			packs[c.e.Pack] = true
			continue
		}
		// A failure leaves a file GC removes (a .data beside a
		// reference-mode entry).
		if err := os.Remove(s.dataPath(c.h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("blobsync: remove a chunk's data file after referencing it", "hash", c.h, "err", err)
		}
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	return s.moveStepDone(chunkRefUnlinked)
}

// removeDeadPacks removes those of the packs names that no entry names
// any more and no download is writing (as GC does for every pack): one
// scan of the entries.
func (s *Store) removeDeadPacks(names map[string]bool) error {
	if len(names) == 0 {
		return nil
	}
	guard := s.packGuard()
	defer guard.release()
	refs := make(map[string]int, len(names))
	prefix := []byte(store.PrefixBlob)
	err := s.db.Scan(prefix, func(k, v []byte) error {
		if len(k) != len(prefix)+len(Hash{}) {
			return nil
		}
		var e entry
		if entryDec.Unmarshal(v, &e) == nil && names[e.Pack] {
			refs[e.Pack]++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("blobsync: packs: %w", err)
	}
	for n := range names {
		if refs[n] > 0 || guard.busy(n) {
			continue
		}
		if err := s.removePack(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blobsync: remove pack %s: %w", n, err)
		}
		s.log.Debug("blobsync: removed a pack no blob uses", "pack", n)
	}
	return nil
}

// ChunksBesides returns the chunks that files other than the chunked file
// with chunk list list need, as far as roots (GC's roots: collections and
// chunk lists) and the store say: every chunk of every other chunk list
// among roots, and of every file version the root collections keep
// (Collection.KeptFiles) whose chunk list is not list, and every
// unchunked file's blob. What ExportChunkedRef keeps as the store's own.
// A root or list the store does not hold adds nothing.
func (s *Store) ChunksBesides(ctx context.Context, roots []Hash, list Hash) (map[Hash]bool, error) {
	out := make(map[Hash]bool)
	addList := func(h Hash, l *ChunkList) {
		if h == list {
			return
		}
		for _, c := range l.Chunks {
			out[c.Hash] = true
		}
	}
	err := s.walkRoots(ctx, roots, addList, func(e Entry) {
		if e.Chunks.IsZero() {
			out[e.Hash] = true
		} else if e.Chunks != list {
			if l, err := s.ReadChunkList(e.Chunks); err == nil {
				addList(e.Chunks, l)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DropBrokenChunkRefs deletes the chunks of chunk list list that are held
// by reference to a file that no longer has the size, mtime or inode
// recorded (DropBrokenRef), so that they can be fetched again; the file
// is left alone. It returns how many it deleted.
func (s *Store) DropBrokenChunkRefs(list Hash) (int, error) {
	l, err := s.ReadChunkList(list)
	if err != nil {
		return 0, err
	}
	n := 0
	seen := make(map[Hash]bool, len(l.Chunks))
	for _, c := range l.Chunks {
		if seen[c.Hash] {
			continue
		}
		seen[c.Hash] = true
		dropped, err := s.DropBrokenRef(c.Hash)
		if err != nil {
			return n, err
		}
		if dropped {
			n++
		}
	}
	return n, nil
}

// refIdentity is what a reference-mode entry holds its file to: one
// open per identity tells about every chunk that shares it.
type refIdentity struct {
	path      string
	mod, size int64
	ino       uint64
}

func refIdentityOf(e entry) refIdentity {
	return refIdentity{path: e.RefPath, mod: e.RefMod, size: e.RefSize, ino: e.RefIno}
}

// dropBrokenRefs deletes the chunks of l held by reference to a file that
// changed since (DropBrokenRef), so that a download fetches them again
// instead of counting them held. One stat per referenced file; an error
// leaves the chunk, for the reader to refuse.
func (s *Store) dropBrokenRefs(l *ChunkList) {
	refs := refChecker{}
	seen := make(map[Hash]bool, len(l.Chunks))
	for _, c := range l.Chunks {
		if seen[c.Hash] {
			continue
		}
		seen[c.Hash] = true
		e, err := s.getEntry(c.Hash)
		if err != nil || !refs.changed(e) {
			continue
		}
		if _, err := s.DropBrokenRef(c.Hash); err != nil {
			s.log.Debug("blobsync: drop a broken reference", "hash", c.Hash, "err", err)
		}
	}
}
