package blobsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/ctxio"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/fxamacker/cbor/v2"
	"github.com/zeebo/blake3"
	"lukechampine.com/blake3/bao"
)

// StoreOptions configures OpenStore. The zero value works.
type StoreOptions struct {
	// Logger gets the store's events (stale files removed, local
	// corruption). Nil: discarded.
	Logger *slog.Logger
	// GCGrace: GC keeps every blob added less than this long ago, so a blob
	// stored just before the caller's roots mention it is not collected in
	// between. 0: 10 minutes; negative: no grace.
	GCGrace time.Duration
	// Export is the first method Export tries (ExportAuto: reflink, then
	// copy_file_range, then a copy through a buffer). With ExportAuto the
	// environment variable DWEB_EXPORT (auto, copy_file_range or copy)
	// picks it instead: a knob for benchmarks that measure the old copy
	// next to the new paths in one run (docs/BENCHMARKS.md).
	Export ExportMethod
	// CommitEach commits every blob a children answer brings alone (fsync
	// its file, the directory, one Pebble commit) instead of in batches
	// (commit.go). False: the environment variable DWEB_BLOB_COMMIT
	// ("batch" or "each") decides, a knob for benchmarks that compare the
	// two in one run (docs/BENCHMARKS.md); unset: batches.
	CommitEach bool
	// ChunkFiles stores every chunk a chunked download fetches in a data
	// file of its own, as stores did before packs (pack.go), instead of
	// appending a download's chunks to one pack file. False: the
	// environment variable DWEB_CHUNK_STORE ("pack" or "files") decides,
	// a knob for benchmarks that compare the two in one run; unset: packs.
	ChunkFiles bool
	// SmallFiles stores every blob a collection download fetches in
	// children requests (at most BatchMax bytes) in a data file of its
	// own, as stores did before, instead of appending a download's blobs
	// to one pack file (pack.go). False: the environment variable
	// DWEB_SMALL_STORE ("pack" or "files") decides, a knob for benchmarks
	// that compare the two in one run; unset: packs.
	SmallFiles bool
}

// Store holds complete, verified blobs. A blob of at most ChunkGroupSize
// bytes lives inline in its Pebble entry; a larger one is two files in the
// store's directory, <hex>.data (its bytes) and <hex>.obao (its outboard:
// the 8-byte little-endian size, then the BLAKE3 tree's parent nodes down to
// 16 KiB groups in pre-order, as bao.Encode writes with group 4). Its Pebble
// entry, at store.Key(store.PrefixBlob, hash), is written only after both
// files are fsynced and renamed into place, so a crash never leaves an entry
// whose bytes are missing; an entry is removed before its files.
//
// Files being written end in ".part" and are removed by OpenStore. A Store
// is safe for concurrent use.
type Store struct {
	db  *store.DB
	dir string
	log *slog.Logger

	gcGrace time.Duration

	mu     sync.Mutex
	busy   map[Hash]chan struct{} // hashes being written or deleted
	active map[Hash]int           // hashes under download (GC keeps them)
	moving map[Hash]moveIntent    // hashes whose data file ExportMove is moving

	deltaSlots chan struct{} // delta requests being answered (MaxDeltaServes)

	usage usageCount // Usage's figures (usage.go)

	exportFrom  ExportMethod
	clones      sync.Map                // device of a destination directory -> whether the store's files clone into it (clonesInto)
	commitEach  bool                    // commit whole blobs one by one (StoreOptions.CommitEach)
	chunkFiles  bool                    // no packs: a file per chunk (StoreOptions.ChunkFiles)
	smallFiles  bool                    // no packs: a file per collection blob (StoreOptions.SmallFiles)
	packs       packState               // packs being written (pack.go)
	exportChunk int64                   // copy_file_range chunk; 0: exportChunkDefault (tests set it)
	exportHook  func(int64)             // tests: called with the bytes exported so far after each chunk
	moveHook    func(moveStep) error    // tests: called after each step of ExportMove; an error stops it there
	compactMu   sync.Mutex              // one pack compaction at a time (compact.go)
	compactHook func(compactStep) error // tests: called after each step of a compaction; an error stops it there
}

// entry is a blob's Pebble value (CBOR).
type entry struct {
	Size    int64  `cbor:"1,keyasint"`
	State   uint8  `cbor:"2,keyasint"`
	Inline  []byte `cbor:"3,keyasint,omitempty"`
	AddedAt int64  `cbor:"4,keyasint,omitempty"` // Unix seconds; 0 = before this field existed
	RefPath string `cbor:"5,keyasint,omitempty"` // reference mode: the app's file holding the bytes
	RefMod  int64  `cbor:"6,keyasint,omitempty"` // reference mode: its mtime (Unix ns) when imported
	// Outboard: a complete blob's parents (the outboard without its size
	// header) when they fit in inlineOutboardMax; then there is no .obao
	// file. Empty: the outboard is the .obao file (larger blobs, partial
	// downloads that completed, and stores written before this field).
	Outboard []byte `cbor:"7,keyasint,omitempty"`
	// Pack, PackOff: a complete blob whose bytes are Size bytes at
	// PackOff in the pack file named Pack in the store's directory
	// (pack.go) rather than its own <hex>.data; its outboard is inline.
	Pack    string `cbor:"8,keyasint,omitempty"`
	PackOff int64  `cbor:"9,keyasint,omitempty"`
	// RefOff, RefSize, RefIno: a reference into part of the app's file
	// (a chunk of a file ExportChunkedRef wrote, chunkref.go): the
	// blob's bytes are Size bytes at RefOff of RefPath, which must still
	// be RefSize bytes long, be inode RefIno and have mtime RefMod.
	// RefSize 0: the whole file is the blob (AddFileRef, ExportMove).
	RefOff  int64  `cbor:"10,keyasint,omitempty"`
	RefSize int64  `cbor:"11,keyasint,omitempty"`
	RefIno  uint64 `cbor:"12,keyasint,omitempty"`
}

// slice reports whether e's bytes are part of a larger file (a pack, or
// a reference into part of the app's file): read from an offset, never
// reflinked.
func (e entry) slice() bool { return e.Pack != "" || e.RefSize != 0 }

// outboardFits reports whether an inline outboard, if e has one, is as
// long as its size needs.
func (e entry) outboardFits() bool {
	return len(e.Outboard) == 0 || uint64(len(e.Outboard)) == outboardSize(uint64(e.Size))-outboardHeader
}

// stateComplete: every byte is present and verified.
const stateComplete = 1

var (
	entryEnc cbor.EncMode
	entryDec cbor.DecMode
)

func init() {
	var err error
	if entryEnc, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	if entryDec, err = (cbor.DecOptions{MaxNestedLevels: 4, MaxMapPairs: 16, MaxArrayElements: 16}).DecMode(); err != nil {
		panic(err)
	}
}

// OpenStore opens the blob store kept in db, with large blob files in dir
// (normally <data>/blobs, created with mode 0700). It removes the ".part"
// files that an interrupted write left behind, and finishes or undoes the
// moves (ExportMove) a crash interrupted.
func OpenStore(db *store.DB, dir string, opts StoreOptions) (*Store, error) {
	if db == nil {
		return nil, errors.New("blobsync: open store: nil db")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blobsync: open store: %w", err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("blobsync: open store: %w", err)
	}
	for _, de := range des {
		if de.Type().IsRegular() && strings.HasSuffix(de.Name(), ".part") {
			p := filepath.Join(dir, de.Name())
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("blobsync: remove stale %s: %w", p, err)
			}
			log.Info("blobsync: removed stale partial file", "path", p)
		}
	}
	export := opts.Export
	if export == ExportAuto {
		if export, err = ParseExportMethod(os.Getenv("DWEB_EXPORT")); err != nil {
			return nil, fmt.Errorf("blobsync: open store: DWEB_EXPORT: %w", err)
		}
	}
	commitEach := opts.CommitEach
	switch v := os.Getenv("DWEB_BLOB_COMMIT"); {
	case commitEach, v == "", v == "batch":
	case v == "each":
		commitEach = true
	default:
		return nil, fmt.Errorf("blobsync: open store: DWEB_BLOB_COMMIT=%q: want batch or each", v)
	}
	chunkFiles := opts.ChunkFiles
	switch v := os.Getenv("DWEB_CHUNK_STORE"); {
	case chunkFiles, v == "", v == "pack":
	case v == "files":
		chunkFiles = true
	default:
		return nil, fmt.Errorf("blobsync: open store: DWEB_CHUNK_STORE=%q: want pack or files", v)
	}
	smallFiles := opts.SmallFiles
	switch v := os.Getenv("DWEB_SMALL_STORE"); {
	case smallFiles, v == "", v == "pack":
	case v == "files":
		smallFiles = true
	default:
		return nil, fmt.Errorf("blobsync: open store: DWEB_SMALL_STORE=%q: want pack or files", v)
	}
	grace := opts.GCGrace
	if grace == 0 {
		grace = 10 * time.Minute
	}
	s := &Store{db: db, dir: dir, log: log, gcGrace: max(grace, 0), exportFrom: export, commitEach: commitEach, chunkFiles: chunkFiles, smallFiles: smallFiles,
		busy: make(map[Hash]chan struct{}), active: make(map[Hash]int), moving: make(map[Hash]moveIntent),
		deltaSlots: make(chan struct{}, MaxDeltaServes)}
	if err := s.recoverMoves(); err != nil {
		return nil, fmt.Errorf("blobsync: open store: %w", err)
	}
	return s, nil
}

// Dir returns the directory holding the store's large blob files.
func (s *Store) Dir() string { return s.dir }

func (s *Store) dataPath(h Hash) string { return filepath.Join(s.dir, h.String()+".data") }
func (s *Store) obaoPath(h Hash) string { return filepath.Join(s.dir, h.String()+".obao") }
func entryKey(h Hash) []byte            { return store.Key(store.PrefixBlob, h[:]) }

// lock serialises writers and deleters of one hash.
func (s *Store) lock(ctx context.Context, h Hash) (unlock func(), err error) {
	for {
		s.mu.Lock()
		ch, busy := s.busy[h]
		if !busy {
			ch = make(chan struct{})
			s.busy[h] = ch
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.busy, h)
				s.mu.Unlock()
				close(ch)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// rawEntry returns the blob's entry in any state; found is false if there
// is none.
func (s *Store) rawEntry(h Hash) (e entry, found bool, err error) {
	b, err := s.db.Get(entryKey(h))
	if errors.Is(err, store.ErrNotFound) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("blobsync: blob %s: %w", h, err)
	}
	if err := entryDec.Unmarshal(b, &e); err != nil {
		return e, false, fmt.Errorf("%w: blob %s entry: %v", ErrCorrupt, h, err)
	}
	if e.Size < 0 || e.Size > MaxBlobSize {
		return e, false, fmt.Errorf("%w: blob %s entry: size %d", ErrCorrupt, h, e.Size)
	}
	return e, true, nil
}

// getEntry returns the blob's complete entry, or ErrNotFound.
func (s *Store) getEntry(h Hash) (entry, error) {
	e, found, err := s.rawEntry(h)
	if err != nil {
		return e, err
	}
	if !found {
		return e, fmt.Errorf("%w: %s", ErrNotFound, h)
	}
	if e.State != stateComplete {
		return e, fmt.Errorf("%w: %s (incomplete)", ErrNotFound, h)
	}
	if e.Size < 0 || e.Size > MaxBlobSize || (e.Size <= inlineMax && int64(len(e.Inline)) != e.Size) {
		return e, fmt.Errorf("%w: blob %s entry: size %d, %d inline bytes", ErrCorrupt, h, e.Size, len(e.Inline))
	}
	if !e.outboardFits() {
		return e, fmt.Errorf("%w: blob %s entry: size %d, %d outboard bytes", ErrCorrupt, h, e.Size, len(e.Outboard))
	}
	if e.Pack != "" && (!isPackName(e.Pack) || e.PackOff < 0 || e.Size <= inlineMax || len(e.Outboard) == 0 || e.RefPath != "") {
		return e, fmt.Errorf("%w: blob %s entry: pack %q at %d, size %d, %d outboard bytes", ErrCorrupt, h, e.Pack, e.PackOff, e.Size, len(e.Outboard))
	}
	if e.RefSize != 0 && (e.RefPath == "" || e.RefOff < 0 || e.RefSize < 0 || e.RefOff > e.RefSize-e.Size || e.Size <= inlineMax) {
		return e, fmt.Errorf("%w: blob %s entry: reference to %d bytes at %d of %q (%d bytes)", ErrCorrupt, h, e.Size, e.RefOff, e.RefPath, e.RefSize)
	}
	return e, nil
}

// putEntry writes a complete entry (synced), in one batch with the removal
// of any range record left by a partial download of the same blob.
func (s *Store) putEntry(h Hash, e entry) error {
	if e.AddedAt == 0 {
		e.AddedAt = time.Now().Unix()
	}
	b, err := entryEnc.Marshal(e)
	if err != nil {
		return fmt.Errorf("blobsync: encode entry: %w", err)
	}
	wb := s.db.NewBatch()
	wb.Set(entryKey(h), b)
	wb.Delete(rangesKey(h))
	if err := s.commitEntry(h, &e, wb); err != nil {
		return fmt.Errorf("blobsync: write entry %s: %w", h, err)
	}
	return nil
}

// Has reports whether the store holds the complete, verified blob h. A
// blob held by reference (AddFileRef, ExportMove, ExportChunkedRef) whose
// file no longer has the size, mtime or inode recorded is not held: its
// bytes are gone or changed, so a listing shows it missing, an add or a
// download stores it again and replaces the broken reference. One stat
// of the file per call for such a blob. A file edited in place with its
// size and mtime restored passes this check; receivers still refuse its
// bytes (every group is verified), and DropBrokenRef's open finds no
// more.
func (s *Store) Has(h Hash) (bool, error) {
	e, err := s.getEntry(h)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !refChanged(e), nil
}

// refChanged reports whether e holds its bytes by reference to a file
// that is gone or no longer has the size, mtime and inode recorded (the
// check openDataOnce makes on open, here by one stat).
func refChanged(e entry) bool {
	if e.RefPath == "" {
		return false
	}
	fi, err := os.Stat(e.RefPath)
	return err != nil || fi.Size() != e.fileSize() || !sameRefFile(fi, e.RefMod, e.RefIno)
}

// refChecker is refChanged asked once per referenced file: the chunks
// one output holds by reference (ExportChunkedRef) share its answer.
type refChecker map[refIdentity]bool

func (rc refChecker) changed(e entry) bool {
	if e.RefPath == "" {
		return false
	}
	id := refIdentityOf(e)
	ch, ok := rc[id]
	if !ok {
		ch = refChanged(e)
		rc[id] = ch
	}
	return ch
}

// fileSize is the size the file holding e's bytes must have: the whole
// referenced file for a chunk inside one, else the blob.
func (e entry) fileSize() int64 {
	if e.RefSize != 0 {
		return e.RefSize
	}
	return e.Size
}

// sameRefFile reports whether fi still has the mtime (Unix ns) and inode
// (0: not recorded) a reference was taken with.
func sameRefFile(fi os.FileInfo, mod int64, ino uint64) bool {
	return fi.ModTime().UnixNano() == mod && (ino == 0 || fileIno(fi) == ino)
}

// Size returns the size in bytes of blob h, or an error wrapping ErrNotFound.
func (s *Store) Size(h Hash) (int64, error) {
	e, err := s.getEntry(h)
	return e.Size, err
}

type bytesReadSeekCloser struct{ *bytes.Reader }

func (bytesReadSeekCloser) Close() error { return nil }

// Open returns a reader over blob h's bytes and its size. The caller closes
// it. Errors: ErrNotFound; ErrCorrupt if the data file is missing or has the
// wrong size.
func (s *Store) Open(h Hash) (io.ReadSeekCloser, int64, error) {
	e, err := s.getEntry(h)
	if err != nil {
		return nil, 0, err
	}
	if e.Size <= inlineMax {
		return bytesReadSeekCloser{bytes.NewReader(e.Inline)}, e.Size, nil
	}
	f, off, e, err := s.openData(h, e)
	if err != nil {
		return nil, 0, err
	}
	if e.slice() {
		return packReader{io.NewSectionReader(f, off, e.Size), f}, e.Size, nil
	}
	return f, e.Size, nil
}

// packReader reads a packed (or partly referenced) blob's bytes and
// closes its file.
type packReader struct {
	*io.SectionReader
	f *os.File
}

func (r packReader) Close() error { return r.f.Close() }

// openData opens the data file of the large blob h with entry e and
// returns the offset of the blob's bytes in it and the entry it used: its
// own <hex>.data (offset 0), its pack (pack.go; the entry's offset), or in
// reference mode the app's file (offset 0, or RefOff for a reference into
// part of it), which must still have the size and modification time (and
// for a part, the inode) it had when imported. When the store's file is
// gone because ExportMove or ExportChunkedRef made e a reference since it
// was read, the entry is read again and its file opened: the entry
// returned is the one to read by; so when GC compacted e's pack since
// (compact.go). Errors wrap ErrCorrupt (missing, wrong
// size, a pack too short for the blob, changed since import).
func (s *Store) openData(h Hash, e entry) (*os.File, int64, entry, error) {
	f, off, err := s.openDataOnce(h, e)
	if errors.Is(err, fs.ErrNotExist) && e.RefPath == "" {
		// A reference since e was read, or a pack compacted since (its
		// blobs now in another pack, compact.go).
		if e2, err2 := s.getEntry(h); err2 == nil && (e2.RefPath != "" || e2.Pack != e.Pack) {
			f, off, err = s.openDataOnce(h, e2)
			e = e2
		}
	}
	if err != nil && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("%w: blob %s data: %w", ErrCorrupt, h, err)
	}
	return f, off, e, err
}

// openDataOnce is openData without the second look at the entry; an
// error that is not ErrCorrupt is the open's (fs.ErrNotExist).
func (s *Store) openDataOnce(h Hash, e entry) (*os.File, int64, error) {
	if e.Pack != "" {
		path := filepath.Join(s.dir, e.Pack)
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, err
		}
		fi, err := f.Stat()
		if err != nil || fi.Size() < e.PackOff+e.Size {
			f.Close()
			return nil, 0, fmt.Errorf("%w: blob %s: pack %s is too short for %d bytes at %d (%v)", ErrCorrupt, h, path, e.Size, e.PackOff, err)
		}
		return f, e.PackOff, nil
	}
	path := s.dataPath(h)
	if e.RefPath != "" {
		path = e.RefPath
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	want := e.fileSize()
	if err != nil || fi.Size() != want {
		f.Close()
		return nil, 0, fmt.Errorf("%w: blob %s data file %s is not %d bytes (%v)", ErrCorrupt, h, path, want, err)
	}
	refMod, ref := e.RefMod, e.RefPath != ""
	if !ref {
		// While ExportMove runs, the store's data file may already be
		// the user's file too: held to its recorded mtime, as a
		// reference.
		refMod, ref = s.movingMod(h)
	}
	if ref && !sameRefFile(fi, refMod, e.RefIno) {
		f.Close()
		return nil, 0, fmt.Errorf("%w: blob %s: referenced file %s changed since it was imported or exported (%v, was %v); get or import it again", ErrCorrupt, h, path, fi.ModTime(), time.Unix(0, refMod))
	}
	return f, e.RefOff, nil
}

// openFile is openData for a blob that is not in a pack nor a part of a
// referenced file (ExportMove, DropBrokenRef).
func (s *Store) openFile(h Hash, e entry) (*os.File, error) {
	f, _, _, err := s.openData(h, e)
	return f, err
}

// ReadAll returns the bytes of blob h, which must be at most max bytes (for
// small blobs such as collections). A larger blob gives a *LimitError.
func (s *Store) ReadAll(h Hash, max int64) ([]byte, error) {
	e, err := s.getEntry(h)
	if err != nil {
		return nil, err
	}
	if e.Size > max {
		return nil, &LimitError{What: "blob " + h.String(), Limit: max, Got: e.Size}
	}
	if e.Size <= inlineMax {
		return bytes.Clone(e.Inline), nil
	}
	r, n, err := s.Open(h)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: blob %s: read: %v", ErrCorrupt, h, err)
	}
	return b, nil
}

// AddBytes stores b and returns its hash. Storing a blob already held is a
// no-op.
func (s *Store) AddBytes(ctx context.Context, b []byte) (Hash, error) {
	h := Hash(blake3.Sum256(b))
	if int64(len(b)) > MaxBlobSize {
		return h, &LimitError{What: "blob", Limit: MaxBlobSize, Got: int64(len(b))}
	}
	unlock, err := s.lock(ctx, h)
	if err != nil {
		return h, err
	}
	defer unlock()
	if ok, err := s.Has(h); err != nil || ok {
		return h, err
	}
	if len(b) <= inlineMax {
		return h, s.putEntry(h, entry{Size: int64(len(b)), State: stateComplete, Inline: bytes.Clone(b)})
	}
	ob, root := bao.EncodeBuf(b, ChunkGroupLog, true)
	if root != h {
		return h, fmt.Errorf("blobsync: internal error: bao root %x != blake3 %s", root, h)
	}
	w, err := s.newPartFiles(h, uint64(len(b)))
	if err != nil {
		return h, err
	}
	if _, err := w.data.Write(b); err != nil {
		w.abort()
		return h, fmt.Errorf("blobsync: add %s: %w", h, err)
	}
	if _, err := w.obao.Write(ob); err != nil {
		w.abort()
		return h, fmt.Errorf("blobsync: add %s: %w", h, err)
	}
	return h, w.commit(int64(len(b)))
}

// AddFile copies the file at path into the store and returns its hash and
// size. It reads the file once, in blocks hashed on every core over the
// BLAKE3 tree (hashTree: the root is the plain BLAKE3 hash, the outboard
// Bao's pre-order down to 16 KiB groups), each block written to the copy
// by the worker that hashed it, with O_DIRECT where the file system takes
// it; the copy and outboard go to ".part" files that are fsynced and
// renamed before the entry is written. Where the store's file system
// clones files and the file is on it (btrfs, XFS with reflink, bcachefs),
// the copy is a clone instead, hashed after it is made (addClone): no
// byte written; a refused clone leaves the part file empty for the copy.
// Memory stays bounded (a block buffer per worker; see hashTree). The
// file must be a regular file of at most MaxBlobSize bytes; if it shrinks
// while being read, AddFile fails; if it grows, the bytes present at the
// start (at the clone) are stored.
func (s *Store) AddFile(ctx context.Context, path string) (Hash, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return Hash{}, 0, fmt.Errorf("blobsync: add file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Hash{}, 0, fmt.Errorf("blobsync: add file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Hash{}, 0, fmt.Errorf("blobsync: add file %s: not a regular file (%v)", path, fi.Mode().Type())
	}
	size := fi.Size()
	if size > MaxBlobSize {
		return Hash{}, 0, &LimitError{What: "file " + path, Limit: MaxBlobSize, Got: size}
	}
	if size <= inlineMax {
		b := make([]byte, size)
		if _, err := io.ReadFull(f, b); err != nil {
			return Hash{}, 0, fmt.Errorf("blobsync: add file %s: %w", path, err)
		}
		h, err := s.AddBytes(ctx, b)
		return h, size, err
	}
	tmp, err := s.newTempData()
	if err != nil {
		return Hash{}, 0, err
	}
	var h Hash
	var n int64
	if reflink(tmp.dataF, f) {
		h, n, err = s.addClone(ctx, tmp, f.Name())
	} else {
		h, n, err = s.addTreeInto(ctx, tmp, treeSource{ra: f, size: size})
	}
	if err != nil {
		return Hash{}, 0, fmt.Errorf("blobsync: add file %s: %w", path, err)
	}
	return h, n, nil
}

// addClone commits the part file tmp, into which the file at path was
// just cloned (reflink, ioctl FICLONE: where the store's file system can
// clone it, btrfs, XFS, bcachefs; not ext4 or tmpfs). The clone shares
// the file's extents, so no byte was written, and the store still holds
// its own copy, which later writes to the file do not touch. The tree is
// hashed over the clone, which only the store can change, so the entry
// names exactly the bytes kept, whatever happens to the file meanwhile
// (its size at the clone is the blob's size). A file that shrank to at
// most inlineMax bytes before the clone is an error, as it is for the
// copy. On any error the part files are removed.
func (s *Store) addClone(ctx context.Context, tmp *partFiles, path string) (Hash, int64, error) {
	fi, err := tmp.dataF.Stat()
	switch {
	case err != nil:
		tmp.abort()
		return Hash{}, 0, err
	case fi.Size() <= inlineMax:
		tmp.abort()
		return Hash{}, 0, fmt.Errorf("the file shrank to %d bytes while being added", fi.Size())
	case fi.Size() > MaxBlobSize:
		tmp.abort()
		return Hash{}, 0, &LimitError{What: "file " + path, Limit: MaxBlobSize, Got: fi.Size()}
	}
	th, err := hashTree(ctx, treeSource{ra: tmp.dataF, size: fi.Size()}, s.dir, nil)
	if err != nil {
		tmp.abort()
		return Hash{}, 0, err
	}
	return s.commitTree(ctx, tmp, th)
}

// AddReader stores the bytes r yields up to its end and returns their
// hash and size: an upload streamed into the store once, hashed as it
// arrives (hashTree), with no temporary file imported afterwards. r is
// read in blocks of 1 MiB, one at a time, while other workers hash and
// write the blocks already read; an r that is also an io.ReaderAt with a
// Size method (a *bytes.Reader over a caller's buffer) is read by the
// workers in parallel. Blobs of at most ChunkGroupSize bytes go inline
// through AddBytes.
//
// Nothing is visible in the store until the whole blob is written,
// fsynced and named by its hash (the data and outboard are ".part" files
// until commit): if r fails, ends early or yields more than limit bytes
// (limit <= 0 or over MaxBlobSize: MaxBlobSize), AddReader removes its
// part files and returns the error (r's own, wrapped; a *LimitError for
// too many bytes; ctx's error) and stores nothing.
func (s *Store) AddReader(ctx context.Context, r io.Reader, limit int64) (Hash, int64, error) {
	if limit <= 0 || limit > MaxBlobSize {
		limit = MaxBlobSize
	}
	if ra, ok := r.(interface {
		io.ReaderAt
		Size() int64
	}); ok {
		size := ra.Size()
		if size > limit {
			return Hash{}, 0, &LimitError{What: "blob", Limit: limit, Got: size}
		}
		if size > inlineMax {
			h, _, err := s.addTree(ctx, treeSource{ra: ra, size: size})
			if err != nil {
				return Hash{}, 0, fmt.Errorf("blobsync: add: %w", err)
			}
			return h, size, nil
		}
	}
	// The first inlineMax+1 bytes say whether the blob goes inline.
	first := make([]byte, inlineMax+1)
	n, err := io.ReadFull(ctxio.NewReader(ctx, r), first)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		if int64(n) > limit {
			return Hash{}, 0, &LimitError{What: "blob", Limit: limit, Got: int64(n)}
		}
		h, err := s.AddBytes(ctx, first[:n])
		return h, int64(n), err
	case err != nil:
		return Hash{}, 0, fmt.Errorf("blobsync: add: %w", err)
	}
	src := treeSource{r: ctxio.NewReader(ctx, io.MultiReader(bytes.NewReader(first), r)), limit: limit}
	h, size, err := s.addTree(ctx, src)
	if err != nil {
		return Hash{}, 0, fmt.Errorf("blobsync: add: %w", err)
	}
	return h, size, nil
}

// addTree stores the blob src yields (more than inlineMax bytes, which a
// stream's caller has checked) through temp-named part files: hashTree
// writes the data as it hashes, then the outboard is written, and the
// files are committed under the hash's lock unless the store already
// holds the blob. On any error the part files are removed and nothing is
// stored.
func (s *Store) addTree(ctx context.Context, src treeSource) (Hash, int64, error) {
	tmp, err := s.newTempData()
	if err != nil {
		return Hash{}, 0, err
	}
	return s.addTreeInto(ctx, tmp, src)
}

// addTreeInto is addTree into the empty part files tmp (newTempData).
func (s *Store) addTreeInto(ctx context.Context, tmp *partFiles, src treeSource) (Hash, int64, error) {
	if src.ra != nil {
		if err := preallocate(tmp.dataF, src.size); err != nil {
			tmp.abort()
			return Hash{}, 0, fmt.Errorf("blobsync: reserve %d bytes: %w", src.size, err)
		}
	}
	dw := newDirectWriter(tmp.dataF, s.log)
	th, err := hashTree(ctx, src, s.dir, dw.writeAt)
	if cerr := dw.close(); err == nil {
		err = cerr
	}
	if err != nil {
		tmp.abort()
		return Hash{}, 0, err
	}
	return s.commitTree(ctx, tmp, th)
}

// commitTree writes the outboard of th, the tree hashed over the data in
// tmp's part file, and commits tmp under the hash's lock unless the store
// already holds the blob. On any error the part files are removed.
func (s *Store) commitTree(ctx context.Context, tmp *partFiles, th *treeHash) (Hash, int64, error) {
	defer th.close()
	if th.size <= inlineMax {
		tmp.abort()
		return Hash{}, 0, fmt.Errorf("blobsync: internal error: tree import of %d bytes", th.size)
	}
	if err := s.addObao(tmp, th.size); err != nil {
		return Hash{}, 0, err
	}
	if err := th.writeOutboard(tmp.obao); err != nil {
		tmp.abort()
		return Hash{}, 0, err
	}
	h := th.root
	unlock, err := s.lock(ctx, h)
	if err != nil {
		tmp.abort()
		return Hash{}, 0, err
	}
	defer unlock()
	if ok, err := s.Has(h); err != nil || ok {
		tmp.abort()
		return h, int64(th.size), err
	}
	tmp.h = h
	if err := tmp.commit(int64(th.size)); err != nil {
		return Hash{}, 0, err
	}
	return h, int64(th.size), nil
}

// maxOutboardBuf: hashTree keeps the parents of outboards up to this size
// in memory; larger ones go through a scratch file (treehash.go).
var maxOutboardBuf uint64 = 8 << 20

type memWriterAt struct{ b []byte }

func (m *memWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("blobsync: outboard write at %d+%d outside %d bytes", off, len(p), len(m.b))
	}
	return copy(m.b[off:], p), nil
}

// Delete removes blob h, complete or partial: its entry (and range record)
// first, then its files. A file imported by reference (AddFileRef) is left
// alone; only the store's outboard goes. Deleting a blob the store does not
// hold is not an error.
func (s *Store) Delete(h Hash) error {
	unlock, err := s.lock(context.Background(), h)
	if err != nil {
		return err
	}
	defer unlock()
	return s.deleteLocked(h)
}

func (s *Store) deleteLocked(h Hash) error {
	wb := s.db.NewBatch()
	wb.Delete(entryKey(h))
	wb.Delete(rangesKey(h))
	if err := s.commitEntry(h, nil, wb); err != nil {
		return fmt.Errorf("blobsync: delete %s: %w", h, err)
	}
	for _, p := range []string{s.dataPath(h), s.obaoPath(h)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blobsync: delete %s: %w", h, err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blobsync: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("blobsync: sync dir %s: %w", dir, err)
	}
	return nil
}
