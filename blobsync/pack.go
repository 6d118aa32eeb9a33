package blobsync

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Packs: the blobs one download fetches in children requests share one
// data file: a chunked file's chunks, and a collection's files of at most
// BatchMax (each of those cost a file creation, 0.2-0.3 ms of kernel CPU
// on ext4, which held 2000 files of 100 KB to 0.3-0.4 of raw QUIC;
// docs/BENCHMARKS.md, issue 20). What follows says it of chunks; a
// collection's blobs are packed the same way, their outboards inline too
// (at most 1 MiB each).
//
// A file's chunks (about 1.3 MB each, 829 per GiB) used to be stored as
// a data file each, created, fsynced, renamed and its directory fsynced:
// on this machine's ext4 those syncs, not the link or the verifier, held
// the chunked download of a fresh 1 GiB file to 0.35-0.69 of the same
// file's download as one blob (docs/BENCHMARKS.md, issue 21). When
// DownloadChunked fetches chunks in children requests, each verified
// chunk is appended instead to one pack file of that download,
// <16 hex digits>.pack in the store's directory, and its entry records
// the pack's name and the chunk's offset in it (entry.Pack,
// entry.PackOff); its outboard is inline in the entry, as every chunk's
// is (chunks are at most 4 MiB: inlineOutboard). A packed blob is read,
// served, exported, verified and listed exactly as any other: only
// openData differs, returning the pack and the offset.
//
// Crash safety is the rule of commit.go: a batch's chunks are written to
// the pack, the pack is fsynced once for the whole batch, and only then
// is the Pebble batch with their entries written. A pack's name is made
// durable (directory fsync) when it is created, before any entry names
// it. A crash leaves at most bytes at the pack's tail (or in a region
// reserved for a chunk that failed verification) that no entry names:
// harmless, read by nobody, and gone with the pack.
//
// Space: deleting a packed blob removes its entry only; its bytes stay in
// the pack until no entry names the pack any more, when GC removes the
// whole pack file, or until GC rewrites the pack's live blobs into a new
// one because at least half its bytes are dead (compact.go). A pack is
// never removed nor rewritten while a download writes it.
//
// Old stores are unchanged: an entry without Pack keeps its <hex>.data.
// StoreOptions.ChunkFiles (or DWEB_CHUNK_STORE=files) stores every chunk
// in a file of its own as before, StoreOptions.SmallFiles (or
// DWEB_SMALL_STORE=files) every collection blob, for benchmarks that
// compare the two.

const packSuffix = ".pack"

// isPackName reports whether name is a pack's base name as newPack makes
// them: 16 lower-case hex digits and ".pack" (an entry naming anything
// else is corrupt: it must not reach outside the store's directory).
func isPackName(name string) bool {
	base, ok := strings.CutSuffix(name, packSuffix)
	if !ok || len(base) != 16 {
		return false
	}
	for _, c := range base {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// packFile is a pack being written by one download. Readers of several
// providers append to it at once: each reserves its chunk's bytes first.
type packFile struct {
	s    *Store
	name string
	f    *os.File

	mu        sync.Mutex
	end       int64 // bytes reserved so far
	committed int   // entries that name the pack
	counted   int64 // bytes counted in Usage (packFilesGrew)
}

// packState is the Store's record of the packs its downloads write, for
// GC: a pack open now, or opened since a GC began, may have entries that
// GC's scan of entries did not see, and is not removed.
type packState struct {
	mu     sync.Mutex
	open   map[string]bool // packs being written
	gcs    int             // GCs running
	closed map[string]bool // packs closed while a GC ran (cleared when none runs)
}

// newPack creates an empty pack file, fsyncs the directory so its name is
// durable before any entry names it, and records it as open.
func (s *Store) newPack() (*packFile, error) {
	for range 8 {
		name := fmt.Sprintf("%016x%s", rand.Uint64(), packSuffix)
		f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("blobsync: create pack: %w", err)
		}
		s.packs.mu.Lock()
		if s.packs.open == nil {
			s.packs.open, s.packs.closed = map[string]bool{}, map[string]bool{}
		}
		s.packs.open[name] = true
		s.packs.mu.Unlock()
		p := &packFile{s: s, name: name, f: f}
		if err := syncDir(s.dir); err != nil {
			p.close()
			return nil, err
		}
		return p, nil
	}
	return nil, errors.New("blobsync: create pack: no free name")
}

// reserve returns the offset of n fresh bytes of the pack.
func (p *packFile) reserve(n int64) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	off := p.end
	p.end += n
	return off
}

// sync makes every byte written to the pack so far durable.
func (p *packFile) sync() error {
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("blobsync: fsync pack %s: %w", p.name, err)
	}
	return nil
}

// stored counts n entries written that name the pack, and the bytes
// reserved so far as the pack file's size in Usage.
func (p *packFile) stored(n int) {
	p.mu.Lock()
	p.committed += n
	grew := p.end - p.counted
	p.counted = p.end
	p.mu.Unlock()
	p.s.packFilesGrew(grew)
}

// close closes the pack once its download has committed all it will, and
// removes it if no entry names it. The pack is no longer open for GC.
func (p *packFile) close() {
	p.f.Close()
	p.mu.Lock()
	unused := p.committed == 0
	p.mu.Unlock()
	if unused {
		if os.Remove(p.f.Name()) == nil {
			p.s.packFilesGrew(-p.counted)
		}
	}
	p.s.packs.mu.Lock()
	delete(p.s.packs.open, p.name)
	if p.s.packs.gcs > 0 {
		p.s.packs.closed[p.name] = true
	}
	p.s.packs.mu.Unlock()
}

// abandon closes the pack's file and forgets it as open, leaving the
// file as it is (a test's crash, compact.go).
func (p *packFile) abandon() {
	p.f.Close()
	p.s.packs.mu.Lock()
	delete(p.s.packs.open, p.name)
	if p.s.packs.gcs > 0 {
		p.s.packs.closed[p.name] = true
	}
	p.s.packs.mu.Unlock()
}

// packGuard is GC's view of the packs being written, taken before its scan
// of entries; release it when GC is done.
type packGuard struct {
	s    *Store
	open map[string]bool // open when GC began
}

func (s *Store) packGuard() packGuard {
	s.packs.mu.Lock()
	defer s.packs.mu.Unlock()
	if s.packs.open == nil {
		s.packs.open, s.packs.closed = map[string]bool{}, map[string]bool{}
	}
	s.packs.gcs++
	g := packGuard{s: s, open: make(map[string]bool, len(s.packs.open))}
	for n := range s.packs.open {
		g.open[n] = true
	}
	return g
}

func (g packGuard) release() {
	g.s.packs.mu.Lock()
	defer g.s.packs.mu.Unlock()
	if g.s.packs.gcs--; g.s.packs.gcs == 0 {
		clear(g.s.packs.closed)
	}
}

// busy reports whether pack name may have entries GC's scan did not see:
// it was open when GC began, is open now, or was opened and closed since
// (a pack is opened only by a download, so one that is none of these was
// closed before GC began, with all its entries written).
func (g packGuard) busy(name string) bool {
	g.s.packs.mu.Lock()
	defer g.s.packs.mu.Unlock()
	return g.open[name] || g.s.packs.open[name] || g.s.packs.closed[name]
}
