package blobsync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dwebkit/dweb/internal/store"
)

func (s *Store) activeAdd(h Hash) {
	s.mu.Lock()
	s.active[h]++
	s.mu.Unlock()
}

func (s *Store) activeDel(h Hash) {
	s.mu.Lock()
	if s.active[h]--; s.active[h] <= 0 {
		delete(s.active, h)
	}
	s.mu.Unlock()
}

// tryLock takes h's writer lock if nobody holds it.
func (s *Store) tryLock(h Hash) (unlock func(), ok bool) {
	s.mu.Lock()
	if _, busy := s.busy[h]; busy || s.active[h] > 0 {
		s.mu.Unlock()
		return nil, false
	}
	s.mu.Unlock()
	u, err := s.lock(context.Background(), h)
	return u, err == nil
}

// walkRoots reads each of roots the store holds whole: a chunk list goes
// to list, and each kept file (Collection.KeptFiles) of a collection to
// file. A root the store lacks, larger than a collection or chunk list
// may be, or that decodes as neither is skipped. It returns ctx's error
// if ctx ends.
func (s *Store) walkRoots(ctx context.Context, roots []Hash, list func(Hash, *ChunkList), file func(Entry)) error {
	for _, h := range roots {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := s.Size(h)
		if err != nil || n > max(MaxCollectionSize, MaxChunkListSize) {
			continue
		}
		b, err := s.ReadAll(h, max(MaxCollectionSize, MaxChunkListSize))
		if err != nil {
			continue
		}
		if len(b) >= 4 && [4]byte(b[:4]) == chunkListMagic {
			if l, err := DecodeChunkList(b); err == nil {
				list(h, l)
			}
			continue
		}
		if len(b) > MaxCollectionSize {
			continue
		}
		c, err := DecodeCollection(b)
		if err != nil {
			continue
		}
		c.KeptFiles(func(e Entry) bool {
			file(e)
			return true
		})
	}
	return nil
}

// GC removes every blob, complete or partial, that is not live, and returns
// how many it removed. Live blobs are:
//
//   - the hashes roots yields (core yields each repo's current collection,
//     pinned blobs, and the blobs it means to download);
//   - the files of every root that is a collection (a complete blob of at
//     most MaxCollectionSize bytes that DecodeCollection accepts): every
//     version it keeps (Collection.KeptFiles: current, older, and those of
//     tombstones), each its blob, or its chunk list and every chunk that
//     list names (when the store holds the list). Versions a Prune dropped
//     are not in the collection, so their blobs go unless another kept
//     version shares them;
//   - the chunks of every root that is a chunk list (a chunked file a
//     caller means to download or keep);
//   - blobs under Download right now, and blobs being written or deleted;
//   - blobs added less than StoreOptions.GCGrace ago.
//
// It also removes blob files that have no entry (left by a crash between
// creating a partial blob's files and writing its entry) once they are
// older than the grace, and pack files (pack.go) that no entry names any
// more and no download is writing: a pack goes when the last of its blobs
// does; and it rewrites the live blobs of each pack no download is writing
// whose dead bytes are at least half of it into a new pack (compact.go). A file imported by reference is never touched. GC stops at the
// first error or when ctx ends; what it removed stays removed.
func (s *Store) GC(ctx context.Context, roots func(yield func(Hash) bool)) (removed int, err error) {
	start := time.Now()
	// Before the scan of entries: a pack being written now may gain
	// entries the scan does not see.
	guard := s.packGuard()
	defer guard.release()
	live := make(map[Hash]bool)
	var rootList []Hash
	if roots != nil {
		roots(func(h Hash) bool {
			live[h] = true
			rootList = append(rootList, h)
			return true
		})
	}
	err = s.walkRoots(ctx, rootList, func(_ Hash, l *ChunkList) {
		// A chunk list a download means to fill: its chunks.
		for _, ch := range l.Chunks {
			live[ch.Hash] = true
		}
	}, func(e Entry) {
		live[e.Hash] = true
		s.FileBlobs(e, func(h Hash) bool { live[h] = true; return true })
	})
	if err != nil {
		return 0, err
	}

	var doomed []Hash
	known := make(map[Hash]bool)
	packRefs := make(map[string]int)        // entries naming each pack
	packOf := make(map[Hash]string)         // of doomed packed blobs
	packed := make(map[Hash]bool)           // complete blobs in a pack or held by reference
	inPack := make(map[string][]packedBlob) // complete blobs of each pack (compaction)
	prefix := []byte(store.PrefixBlob)
	err = s.db.Scan(prefix, func(k, v []byte) error {
		if len(k) != len(prefix)+len(Hash{}) {
			return nil // a range record
		}
		var h Hash
		copy(h[:], k[len(prefix):])
		known[h] = true
		var e entry
		decoded := entryDec.Unmarshal(v, &e) == nil
		if decoded && e.Pack != "" {
			packRefs[e.Pack]++
			if e.State == stateComplete {
				inPack[e.Pack] = append(inPack[e.Pack], packedBlob{h: h, off: e.PackOff, size: e.Size})
			}
		}
		if decoded && (e.Pack != "" || e.RefPath != "") {
			packed[h] = true
		}
		if live[h] {
			return nil
		}
		if decoded && e.AddedAt != 0 && start.Sub(time.Unix(e.AddedAt, 0)) < s.gcGrace {
			return nil
		}
		if decoded && e.Pack != "" {
			packOf[h] = e.Pack
		}
		doomed = append(doomed, h)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("blobsync: gc: %w", err)
	}
	gone := make(map[Hash]bool)
	for _, h := range doomed {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		unlock, ok := s.tryLock(h)
		if !ok {
			continue // being downloaded, written or deleted
		}
		err := s.deleteLocked(h)
		unlock()
		if err != nil {
			return removed, fmt.Errorf("blobsync: gc: %w", err)
		}
		removed++
		gone[h] = true
		if p, ok := packOf[h]; ok {
			packRefs[p]--
		}
	}

	// Stray files without an entry.
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return removed, fmt.Errorf("blobsync: gc: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		if isPackName(name) {
			if guard.busy(name) {
				continue
			}
			if packRefs[name] <= 0 {
				if err := s.removePack(name); err == nil {
					s.log.Info("blobsync: gc: removed a pack no blob uses", "pack", name)
				}
				continue
			}
			fi, err := de.Info()
			if err != nil {
				continue
			}
			live := slices.DeleteFunc(inPack[name], func(b packedBlob) bool { return gone[b.h] })
			if _, ok := packDead(fi.Size(), live); ok {
				if _, err := s.compactPack(ctx, name, live); err != nil {
					if ctx.Err() != nil {
						return removed, ctx.Err()
					}
					// Not GC's failure (a full disk, say): the pack
					// stays as it was, its blobs readable.
					s.log.Warn("blobsync: gc: pack not compacted", "pack", name, "err", err)
				}
			}
			continue
		}
		base, ok := strings.CutSuffix(name, ".data")
		obao := false
		if !ok {
			base, ok = strings.CutSuffix(name, ".obao")
			obao = ok
		}
		if !ok {
			continue
		}
		h, err := ParseHash(base)
		if err != nil {
			continue
		}
		if known[h] {
			// An .obao left beside a complete entry that keeps its
			// outboard inline (removeStale failed) is stray too, and so
			// is a .data beside a packed blob (a partial download's
			// files, the blob then stored whole in a pack) or a
			// reference-mode one (ExportChunkedRef or ExportMove
			// stopped by a crash before it removed the store's file;
			// the lock keeps a move under way out).
			if !obao && packed[h] {
				if unlock, ok := s.tryLock(h); ok {
					if e, found, err := s.rawEntry(h); err == nil && found && e.State == stateComplete && (e.Pack != "" || e.RefPath != "") {
						os.Remove(filepath.Join(s.dir, name))
					}
					unlock()
				}
			}
			if obao {
				if unlock, ok := s.tryLock(h); ok {
					if e, found, err := s.rawEntry(h); err == nil && found && e.State == stateComplete && len(e.Outboard) > 0 {
						os.Remove(filepath.Join(s.dir, name))
					}
					unlock()
				}
			}
			continue
		}
		if live[h] {
			continue
		}
		fi, err := de.Info()
		if err != nil || start.Sub(fi.ModTime()) < s.gcGrace {
			continue
		}
		if unlock, ok := s.tryLock(h); ok {
			if _, found, err := s.rawEntry(h); err == nil && !found {
				os.Remove(filepath.Join(s.dir, name))
			}
			unlock()
		}
	}
	return removed, nil
}
