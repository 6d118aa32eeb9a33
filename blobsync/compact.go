package blobsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/zeebo/blake3"
)

// Pack compaction: rewriting a pack whose bytes are mostly dead.
//
// A pack's bytes are freed only when no entry names any blob in it (GC
// removes the whole file). A pack of a collection's small files, whose
// files are replaced or deleted one by one, would otherwise keep the dead
// bytes for as long as one of its blobs lives. So GC, after it removed the
// blobs that are not live, rewrites every pack that no download writes and
// whose dead bytes (bytes no entry names: deleted blobs, regions of
// blobs that failed verification, a crash's tail) are at least
// packCompactShare of its size:
//
//  1. the live blobs' bytes are copied from the old pack into a new one
//     (newPack: its name is durable before any entry names it), each
//     hashed on the way and checked against its name (a blob whose bytes
//     no longer match is left where it is, and so is the old pack);
//  2. the new pack is fsynced;
//  3. under the blobs' locks (tried, never waited for: a blob being
//     written, deleted or downloaded stays in the old pack), each entry
//     is read again and, if it still names the old pack at the same offset,
//     rewritten to name the new pack at the new offset: one synced Pebble
//     batch for the pack;
//  4. if every live blob moved, the old pack is removed.
//
// Every entry is valid at every point: before step 3 it names the old pack,
// whose bytes are untouched; after, the new one, fsynced in step 2. A crash
// before step 3 leaves a new pack no entry names, after it an old pack no
// entry names: GC removes either (neither is open after a restart).
//
// Readers: a reader that opened the old pack keeps reading it after the
// unlink (the file lives while a descriptor is open), and reads at the
// offset of the entry it opened it by (openData returns that entry). A
// reader that read the old entry but opens the file after its removal
// gets fs.ErrNotExist, reads the entry again and opens the new pack
// (openData). Downloads never write to an existing pack (each creates its
// own), and GC never compacts a pack a download has open.

// packCompactShare: GC rewrites a pack whose dead bytes are at least this
// share of its size (one half: the rewrite copies at most as many live
// bytes as it frees, and a store's packs hold at most about twice their
// live bytes).
const packCompactShare = 0.5

// compactStep names the points of a compaction after which a crash leaves
// a different state on disk; tests stop a compaction there
// (Store.compactHook).
type compactStep string

const (
	compactCopied    compactStep = "copied"    // the new pack holds the live blobs, fsynced; no entry names it
	compactRepointed compactStep = "repointed" // the entries name the new pack; the old one is still there
)

// packedBlob is a blob found in a pack by GC's scan of entries.
type packedBlob struct {
	h    Hash
	off  int64
	size int64
}

// packDead returns how many bytes of a pack of size bytes holding the
// live blobs are dead, and whether that is enough to compact it.
func packDead(size int64, live []packedBlob) (dead int64, compact bool) {
	dead = size
	for _, b := range live {
		dead -= b.size
	}
	dead = max(dead, 0)
	return dead, dead > 0 && float64(dead) >= packCompactShare*float64(size)
}

// compactPack rewrites the live blobs of pack name into a new pack as
// described above and removes the old pack if all of them moved. It
// returns the bytes freed (the old pack's size, if it was removed).
func (s *Store) compactPack(ctx context.Context, name string, live []packedBlob) (freed int64, err error) {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	oldPath := filepath.Join(s.dir, name)
	old, err := os.Open(oldPath)
	if err != nil {
		return 0, fmt.Errorf("blobsync: compact pack %s: %w", name, err)
	}
	defer old.Close()
	fi, err := old.Stat()
	if err != nil {
		return 0, fmt.Errorf("blobsync: compact pack %s: %w", name, err)
	}
	np, err := s.newPack()
	if err != nil {
		return 0, fmt.Errorf("blobsync: compact pack %s: %w", name, err)
	}
	crashed := false
	defer func() {
		if crashed {
			np.abandon() // a test's crash: the new pack stays as it is
		} else {
			np.close()
		}
	}()

	// 1, 2: copy, verify, fsync.
	keepOld := false
	newOff := make([]int64, len(live))
	copied := make([]bool, len(live))
	hs := blake3.New()
	for i, b := range live {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		off := np.reserve(b.size)
		hs.Reset()
		n, err := io.Copy(io.NewOffsetWriter(np.f, off), io.TeeReader(io.NewSectionReader(old, b.off, b.size), hs))
		if err != nil {
			return 0, fmt.Errorf("blobsync: compact pack %s: copy %s: %w", name, b.h, err)
		}
		var got Hash
		hs.Sum(got[:0])
		if n != b.size || got != b.h {
			s.log.Error("blobsync: compact: a packed blob's bytes do not match its name; left in its pack", "pack", name, "hash", b.h, "bytes", n)
			keepOld = true
			continue
		}
		newOff[i], copied[i] = off, true
	}
	if err := np.sync(); err != nil {
		return 0, fmt.Errorf("blobsync: compact pack %s: %w", name, err)
	}
	if err := s.compactStepDone(compactCopied); err != nil {
		crashed = true
		return 0, err
	}

	// 3: repoint, under the blobs' locks, in one batch.
	var (
		moved   []Hash
		entries []entry
		unlocks []func()
	)
	defer func() {
		for _, u := range unlocks {
			u()
		}
	}()
	for i, b := range live {
		if !copied[i] {
			continue
		}
		unlock, ok := s.tryLock(b.h)
		if !ok {
			keepOld = true // being written, deleted or downloaded
			continue
		}
		unlocks = append(unlocks, unlock)
		e, found, err := s.rawEntry(b.h)
		if err != nil || !found || e.State != stateComplete || e.Pack != name || e.PackOff != b.off || e.Size != b.size {
			if err == nil && found && e.Pack == name {
				keepOld = true // still in the old pack, but not as the scan saw it
			}
			continue // deleted, or moved elsewhere, since GC's scan
		}
		e.Pack, e.PackOff = np.name, newOff[i]
		moved = append(moved, b.h)
		entries = append(entries, e)
	}
	if len(moved) > 0 {
		wb := s.db.NewBatch()
		for i, h := range moved {
			v, err := entryEnc.Marshal(entries[i])
			if err != nil {
				return 0, fmt.Errorf("blobsync: encode entry: %w", err)
			}
			wb.Set(entryKey(h), v)
		}
		if err := s.commitEntries(moved, entries, wb); err != nil {
			return 0, fmt.Errorf("blobsync: compact pack %s: write %d entries: %w", name, len(moved), err)
		}
		np.stored(len(moved))
	}
	for _, u := range unlocks {
		u()
	}
	unlocks = nil
	if err := s.compactStepDone(compactRepointed); err != nil {
		crashed = true
		return 0, err
	}

	// 4: the old pack goes if nothing is left in it.
	if keepOld {
		return 0, nil
	}
	if err := s.removePack(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// (Not there: ExportChunkedRef removed it once no entry named it.)
		return 0, fmt.Errorf("blobsync: compact pack %s: %w", name, err)
	}
	s.log.Info("blobsync: compacted a pack", "pack", name, "into", np.name, "blobs", len(moved), "freed", fi.Size()-np.end)
	return fi.Size(), nil
}

// compactStepDone calls the test hook after step; an error from it stands
// for a crash there.
func (s *Store) compactStepDone(step compactStep) error {
	if s.compactHook == nil {
		return nil
	}
	return s.compactHook(step)
}
