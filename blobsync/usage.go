package blobsync

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/dwebkit/dweb/internal/store"
)

// Usage is what a Store holds (Store.Usage). Partial downloads are not
// counted: their files are not blobs yet.
type Usage struct {
	// Blobs and Bytes: complete blobs whose bytes the store keeps itself
	// (inline in Pebble or in <hex>.data files), and their sizes summed.
	Blobs int64 `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// RefBlobs and RefBytes: complete blobs in reference mode
	// (AddFileRef), whose bytes stay in the app's files outside the store.
	RefBlobs int64 `json:"ref_blobs"`
	RefBytes int64 `json:"ref_bytes"`
	// PackDeadBytes: bytes of pack files (pack.go) that no entry names
	// (blobs deleted since they were packed, a crash's tail), which stay
	// on disk until GC compacts or removes their pack (compact.go): at
	// most about as many as the packs' live bytes, since GC rewrites a
	// pack half dead. Not in Bytes; a quota counts both.
	PackDeadBytes int64 `json:"pack_dead_bytes"`

	packed int64 // live bytes in packs (part of Bytes)
}

// Usage sums the complete blobs of the store. The first call scans their
// Pebble entries (O(blobs); about a millisecond per 10,000 blobs on an idle
// machine) and lists the store's directory for the packs' sizes; after it, every entry write moves the figures, so later calls
// cost nothing. An entry that does not decode, or whose size is out of
// range, is an ErrCorrupt error (from the scan; a write that meets one makes
// the next call scan again).
func (s *Store) Usage() (Usage, error) {
	c := &s.usage
	if u, ok := c.get(); ok {
		return u, nil
	}
	c.writes.Lock() // waits for entry writes under way; holds off new ones
	defer c.writes.Unlock()
	if u, ok := c.get(); ok {
		return u, nil
	}
	u, err := s.scanUsage()
	if err != nil {
		return Usage{}, err
	}
	files, err := s.scanPackFiles()
	if err != nil {
		return Usage{}, err
	}
	c.mu.Lock()
	c.u, c.packFiles, c.ready = u, files, true
	c.mu.Unlock()
	u, _ = c.get()
	return u, nil
}

// scanPackFiles sums the sizes of the pack files in the store's directory.
func (s *Store) scanPackFiles() (int64, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("blobsync: usage: %w", err)
	}
	var n int64
	for _, de := range des {
		if !isPackName(de.Name()) {
			continue
		}
		if fi, err := de.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n, nil
}

// packFilesGrew moves the pack files' size by n bytes (negative: a pack
// removed) for Usage.PackDeadBytes. A download's pack is counted as its
// blobs are committed (the bytes reserved so far); a pack file written
// while Usage first scans may be counted a little off until the next scan.
func (s *Store) packFilesGrew(n int64) {
	c := &s.usage
	c.writes.RLock()
	defer c.writes.RUnlock()
	c.mu.Lock()
	c.packFiles += n
	c.mu.Unlock()
}

// removePack removes the pack file name and counts its bytes gone.
func (s *Store) removePack(name string) error {
	path := filepath.Join(s.dir, name)
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	s.packFilesGrew(-fi.Size())
	return nil
}

// scanUsage sums the complete blobs by one scan of their entries.
func (s *Store) scanUsage() (Usage, error) {
	var u Usage
	prefix := []byte(store.PrefixBlob)
	err := s.db.Scan(prefix, func(k, v []byte) error {
		if len(k) != len(prefix)+len(Hash{}) {
			return nil // a range record
		}
		var e entry
		if err := entryDec.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("%w: blob %x entry: %v", ErrCorrupt, k[len(prefix):], err)
		}
		if e.Size < 0 || e.Size > MaxBlobSize {
			return fmt.Errorf("%w: blob %x entry: size %d", ErrCorrupt, k[len(prefix):], e.Size)
		}
		u.add(e, 1)
		return nil
	})
	if err != nil {
		return Usage{}, fmt.Errorf("blobsync: usage: %w", err)
	}
	return u, nil
}

// add counts entry e sign times (1 or -1) if it is complete.
func (u *Usage) add(e entry, sign int64) {
	if e.State != stateComplete {
		return
	}
	if e.RefPath != "" {
		u.RefBlobs += sign
		u.RefBytes += sign * e.Size
	} else {
		u.Blobs += sign
		u.Bytes += sign * e.Size
	}
	if e.Pack != "" {
		u.packed += sign * e.Size
	}
}

// usageCount holds Usage's figures once a scan has set them; commitEntry
// moves them with each entry write.
type usageCount struct {
	writes sync.RWMutex // entry writes hold it shared, the scan exclusively

	mu        sync.Mutex
	u         Usage
	packFiles int64 // bytes of pack files (live or dead)
	ready     bool  // u is set
}

func (c *usageCount) get() (Usage, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.u
	u.PackDeadBytes = max(c.packFiles-u.packed, 0)
	return u, c.ready
}

// invalidate makes the next Usage scan again.
func (c *usageCount) invalidate() {
	c.mu.Lock()
	c.ready = false
	c.mu.Unlock()
}

// commitEntry commits wb, which sets h's entry to next (nil: deletes it),
// synced, and moves the usage figures from h's previous entry to next. The
// caller holds s.lock(h), so no other write of h's entry runs between the
// read of the previous entry and the commit.
func (s *Store) commitEntry(h Hash, next *entry, wb *store.Batch) error {
	if next == nil {
		return s.commitEntries([]Hash{h}, nil, wb)
	}
	return s.commitEntries([]Hash{h}, []entry{*next}, wb)
}

// commitEntries is commitEntry for several hashes hs at once, which wb
// sets to next (nil: deletes them all). The caller holds their locks.
func (s *Store) commitEntries(hs []Hash, next []entry, wb *store.Batch) error {
	c := &s.usage
	c.writes.RLock()
	defer c.writes.RUnlock()
	_, counted := c.get()
	prev := make([]entry, len(hs))
	had := make([]bool, len(hs))
	if counted {
		for i, h := range hs {
			var err error
			if prev[i], had[i], err = s.rawEntry(h); err != nil {
				c.invalidate() // the next Usage scans, and reports it
				counted = false
				break
			}
		}
	}
	if err := wb.Commit(true); err != nil {
		c.invalidate() // the write may have landed or not
		return err
	}
	if counted {
		c.mu.Lock()
		for i := range hs {
			if had[i] {
				c.u.add(prev[i], -1)
			}
			if next != nil {
				c.u.add(next[i], 1)
			}
		}
		c.mu.Unlock()
	}
	return nil
}
