// Package datarepo is one member's data repo inside a group: a DHT record
// owned by the member's repo keypair, every value encrypted with the group's
// keys (a record.Sealer: the group secret, or the group's epoch keys;
// DESIGN.md, "Groups and data repos"):
//
//	subkey 0        {"name": "..."}                       JSON
//	subkey 1        the current collection's BLAKE3 hash  32 raw bytes
//	subkeys 2..9    tunnel descriptors                    CBOR (TunnelDescriptor)
//
// Writing a file stores the blob, writes a new collection blob and sets
// subkey 1; deleting writes a collection without the entry. Anyone with the
// group's keys can read a repo (Open with a nil writer); only the holder of
// the repo keypair can change it.
package datarepo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/transport"
)

// Subkeys of a repo record.
const (
	SubkeyName        = 0
	SubkeyCollection  = 1
	SubkeyTunnelFirst = 2
	MaxTunnels        = 8
)

// MaxNameLen is the longest repo name, in bytes of UTF-8.
const MaxNameLen = 255

// Schema is the repo record's schema: the owner writes every subkey.
var Schema = record.Schema{OwnerSubkeys: SubkeyTunnelFirst + MaxTunnels}

// Errors.
var (
	ErrReadOnly     = errors.New("datarepo: read-only: this node does not hold the repo key")
	ErrFileNotFound = errors.New("datarepo: no such file")
	ErrBadName      = errors.New("datarepo: bad name")
)

// Blobs is the blob store a repo keeps its files and collections in.
type Blobs interface {
	AddFile(ctx context.Context, path string) (blobsync.Hash, int64, error)
	AddReader(ctx context.Context, r io.Reader, limit int64) (blobsync.Hash, int64, error)
	AddBytes(ctx context.Context, b []byte) (blobsync.Hash, error)
	ReadAll(h blobsync.Hash, max int64) ([]byte, error)
}

// MaxCollectionSize bounds a collection blob read from the store or the
// network (bytes).
const MaxCollectionSize = 64 << 20

// TunnelDescriptor says how to open a tunnel to the node that serves this
// repo: its node ID, its Noise static public key and where to dial it.
type TunnelDescriptor struct {
	Node   key.NodeID `cbor:"1,keyasint"`
	Static [32]byte   `cbor:"2,keyasint"` // X25519 Noise static public key
	Addrs  []string   `cbor:"3,keyasint"` // UDP host:port, direct first
	Relays []string   `cbor:"4,keyasint,omitempty"`
}

// Repo is a handle on one data repo record.
type Repo struct {
	desc   *record.Descriptor
	writer *key.Keypair // nil: read-only
	keys   record.Sealer
	recs   Records
	blobs  Blobs
	log    *slog.Logger

	mu sync.Mutex // serialises this node's writes to the repo

	beforePublish func(blobsync.Hash, *blobsync.Collection)
	chunking      bool               // SetChunking
	retention     blobsync.Retention // SetRetention
}

// ChunkedBlobs is a Blobs that can store a file as content-defined chunks
// (blobsync.Store.AddFileChunked).
type ChunkedBlobs interface {
	Blobs
	AddFileChunked(ctx context.Context, path string) (blobsync.ChunkedFile, error)
	AddReaderChunked(ctx context.Context, r io.Reader, limit int64) (blobsync.ChunkedFile, error)
}

// RefBlobs is a Blobs that can keep a file by reference instead of a copy
// (blobsync.Store.AddFileRef) and say how it holds a blob
// (blobsync.Store.RefPath: the file's path, or "" for its own copy).
type RefBlobs interface {
	Blobs
	AddFileRef(ctx context.Context, path string) (blobsync.Hash, int64, error)
	RefPath(h blobsync.Hash) (string, error)
}

// SetChunking makes AddFiles and AddReader store a file of more than
// blobsync.ChunkThreshold bytes as content-defined chunks (its entry's
// Chunks names the chunk list; Hash stays the whole file's BLAKE3), when
// the repo's Blobs is a ChunkedBlobs; off by default. Call it before the
// repo is shared between goroutines.
func (r *Repo) SetChunking(on bool) { r.chunking = on }

// Create makes a new repo record with a fresh keypair, writes its name and
// an empty collection, and returns it with the keypair, which the caller
// must keep (in the protected store) to write again later.
func Create(ctx context.Context, recs Records, blobs Blobs, keys record.Sealer, name string) (*Repo, key.Keypair, error) {
	if err := CheckName(name); err != nil {
		return nil, key.Keypair{}, err
	}
	kp := key.NewKeypair()
	r, err := OpenWritable(recs, blobs, keys, kp)
	if err != nil {
		return nil, kp, err
	}
	if err := r.SetName(ctx, name); err != nil {
		return nil, kp, err
	}
	if err := r.writeCollection(ctx, &blobsync.Collection{}); err != nil {
		return nil, kp, err
	}
	return r, kp, nil
}

// OpenWritable returns a handle on the repo owned by writer, the repo
// keypair this node keeps.
func OpenWritable(recs Records, blobs Blobs, keys record.Sealer, writer key.Keypair) (*Repo, error) {
	desc, err := record.NewDescriptor(writer, Schema)
	if err != nil {
		return nil, err
	}
	return &Repo{desc: desc, writer: &writer, keys: keys, recs: recs, blobs: blobs, log: discard, retention: blobsync.KeepAll}, nil
}

// OpenKey returns a read-only handle on the repo whose record key is k, by
// fetching its descriptor from the DHT.
func OpenKey(ctx context.Context, recs Records, blobs Blobs, keys record.Sealer, k key.RecordKey) (*Repo, error) {
	desc, _, err := recs.Get(ctx, k, SubkeyName)
	if err != nil {
		return nil, fmt.Errorf("open repo %s: %w", k, err)
	}
	if desc.Key() != k {
		return nil, fmt.Errorf("open repo %s: descriptor has key %s", k, desc.Key())
	}
	return &Repo{desc: desc, keys: keys, recs: recs, blobs: blobs, log: discard, retention: blobsync.KeepAll}, nil
}

var discard = slog.New(slog.DiscardHandler)

// SetLogger sets where the repo reports what it skips (Tunnels); nil:
// nowhere. Set it before use.
func (r *Repo) SetLogger(l *slog.Logger) {
	if l == nil {
		l = discard
	}
	r.log = l
}

// BeforePublish sets fn (nil: none), called with each new collection this
// handle writes, and its hash, once the collection's blob is stored and
// before its hash is published. A reader the publication wakes (a watch)
// fetches the collection at once: fn lets the writer serve it, and the
// files it lists, before anyone can ask. Set it before the first write.
func (r *Repo) BeforePublish(fn func(blobsync.Hash, *blobsync.Collection)) {
	r.beforePublish = fn
}

// Key returns the repo's record key (its ID).
func (r *Repo) Key() key.RecordKey { return r.desc.Key() }

// Writable reports whether this node holds the repo keypair.
func (r *Repo) Writable() bool { return r.writer != nil }

func (r *Repo) write(ctx context.Context, subkey uint32, plaintext []byte) error {
	if r.writer == nil {
		return ErrReadOnly
	}
	_, err := WriteSealed(ctx, r.recs, r.desc, subkey, *r.writer, r.keys, plaintext)
	return err
}

// Reseal writes every value of the repo again, sealed under the group's
// current key: after a key rotation (docs/trust.md, "Epochs and
// removal") the repo's values need only the new epoch's key from then
// on. A subkey never written, or whose value does not open, is left as
// it is. ErrReadOnly without the repo keypair.
func (r *Repo) Reseal(ctx context.Context) error {
	if r.writer == nil {
		return ErrReadOnly
	}
	for sk := uint32(0); sk < r.desc.SubkeyCount(); sk++ {
		b, err := ReadSealed(ctx, r.recs, r.Key(), sk, r.keys)
		switch {
		case errors.Is(err, record.ErrDecrypt), err == nil && b == nil:
			continue
		case err != nil:
			return fmt.Errorf("reseal repo %s: %w", r.Key(), err)
		}
		if err := r.write(ctx, sk, b); err != nil {
			return fmt.Errorf("reseal subkey %d of repo %s: %w", sk, r.Key(), err)
		}
	}
	return nil
}

type nameValue struct {
	Name string `json:"name"`
}

// SetName writes the repo's name (subkey 0).
func (r *Repo) SetName(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	return r.write(ctx, SubkeyName, encodeName(name))
}

// Name reads the repo's name; "" if never set. A name that does not decode
// or breaks SetName's rules is an error wrapping ErrBadValue.
func (r *Repo) Name(ctx context.Context) (string, error) {
	b, err := ReadSealed(ctx, r.recs, r.Key(), SubkeyName, r.keys)
	if err != nil || b == nil {
		return "", err
	}
	name, err := decodeName(b)
	if err != nil {
		return "", fmt.Errorf("repo %s: %w", r.Key(), err)
	}
	return name, nil
}

// CollectionHash reads subkey 1: the hash of the repo's current collection.
// ok is false if the repo has none yet.
func (r *Repo) CollectionHash(ctx context.Context) (h blobsync.Hash, ok bool, err error) {
	b, err := ReadSealed(ctx, r.recs, r.Key(), SubkeyCollection, r.keys)
	if err != nil || b == nil {
		return h, false, err
	}
	if len(b) != len(h) {
		return h, false, fmt.Errorf("repo %s: collection value is %d bytes, want %d", r.Key(), len(b), len(h))
	}
	copy(h[:], b)
	return h, true, nil
}

// Fetcher fetches a blob into the local store from wherever the caller
// knows it can be found.
type Fetcher func(ctx context.Context, h blobsync.Hash) error

// Collection returns the repo's current collection and its hash. If the
// collection blob is not in the local store, fetch is called to get it
// (nil fetch: only the local store is used).
func (r *Repo) Collection(ctx context.Context, fetch Fetcher) (*blobsync.Collection, blobsync.Hash, error) {
	h, ok, err := r.CollectionHash(ctx)
	if err != nil {
		return nil, h, err
	}
	if !ok {
		return &blobsync.Collection{}, h, nil
	}
	c, err := r.loadCollection(ctx, h, fetch)
	return c, h, err
}

func (r *Repo) loadCollection(ctx context.Context, h blobsync.Hash, fetch Fetcher) (*blobsync.Collection, error) {
	c, err := LocalCollection(r.blobs, h)
	if errors.Is(err, blobsync.ErrNotFound) && fetch != nil {
		if err := fetch(ctx, h); err != nil {
			return nil, fmt.Errorf("fetch collection %s of repo %s: %w", h, r.Key(), err)
		}
		c, err = LocalCollection(r.blobs, h)
	}
	if err != nil {
		return nil, fmt.Errorf("collection of repo %s: %w", r.Key(), err)
	}
	return c, nil
}

// LocalCollection reads and decodes collection h from the local store
// only: a collection this node verified before (blobs are stored only once
// verified), without asking the DHT for the repo's current hash. Errors
// wrap blobsync.ErrNotFound when the blob is not held.
func LocalCollection(blobs Blobs, h blobsync.Hash) (*blobsync.Collection, error) {
	b, err := blobs.ReadAll(h, MaxCollectionSize)
	if err != nil {
		return nil, fmt.Errorf("read collection %s: %w", h, err)
	}
	c, err := blobsync.DecodeCollection(b)
	if err != nil {
		return nil, fmt.Errorf("decode collection %s: %w", h, err)
	}
	return c, nil
}

// writeCollection prunes c to the repo's retention, stores it and
// publishes its hash.
func (r *Repo) writeCollection(ctx context.Context, c *blobsync.Collection) error {
	c.Prune(r.retention, time.Now())
	b, err := c.Encode()
	if err != nil {
		return err
	}
	h, err := r.blobs.AddBytes(ctx, b)
	if err != nil {
		return fmt.Errorf("store collection: %w", err)
	}
	if r.beforePublish != nil {
		r.beforePublish(h, c)
	}
	return r.write(ctx, SubkeyCollection, h[:])
}

// Adopt publishes c, another repo's collection, as this repo's: a member
// moving to a new device takes its old repo's files over (docs/trust.md,
// "Devices"), with their history (pruned to this repo's retention). The
// entries' blobs need not be local: members fetch them from whoever holds
// them, as for any collection. ErrReadOnly without the repo keypair.
func (r *Repo) Adopt(ctx context.Context, c *blobsync.Collection) error {
	if r.writer == nil {
		return ErrReadOnly
	}
	return r.writeCollection(ctx, c)
}

// AddFiles stores each file's blob (copy mode), or its chunks (see
// SetChunking), and publishes one new collection with them, under their
// base names. A file of the same name is replaced and its history kept:
// what it was becomes its newest older version, unless the bytes are the
// same (blobsync.Collection.Put); the repo's retention then prunes
// (SetRetention). It returns the new entries, without their history.
// It is AddFilesWith with the zero AddOptions.
func (r *Repo) AddFiles(ctx context.Context, paths []string) ([]blobsync.Entry, error) {
	added, err := r.AddFilesWith(ctx, paths, AddOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]blobsync.Entry, len(added))
	for i, a := range added {
		out[i] = a.Entry
	}
	return out, nil
}

// AddOptions configures AddFilesWith. The zero value is AddFiles's add:
// each file copied into the blob store, or cut into chunks the store
// keeps (SetChunking).
type AddOptions struct {
	// NoStoreCopy keeps each file by reference instead of a copy, when
	// the repo's Blobs is a RefBlobs: the store reads the file once
	// (hashing on every core), keeps its outboard (64 bytes per 16 KiB,
	// about 1/256 of the size) and its path, size and mtime, and reads
	// the file itself to serve or export it, refusing it once its size or
	// mtime changed (blobsync.Store.AddFileRef). A file of at most
	// blobsync.ChunkGroupSize (16 KiB) bytes, bytes the store already
	// keeps as its own copy, and every file when Blobs is not a RefBlobs
	// are copied instead; Added.Store says which. In a chunked repo
	// (SetChunking) such a file is kept as one whole-file blob by
	// reference, not as chunks: the chunks would be copies of its bytes,
	// the very copy this option avoids, so it gives up chunking's
	// deduplication and deltas for that file.
	NoStoreCopy bool
}

// How AddFilesWith kept a file's bytes (Added.Store).
const (
	StoreCopy      = "copy"      // the blob store's own copy of the whole file
	StoreChunks    = "chunks"    // the blob store's own copies of its chunks (SetChunking)
	StoreReference = "reference" // no copy: the store reads the user's file (AddOptions.NoStoreCopy)
)

// Added is one file AddFilesWith stored: its new collection entry
// (without history) and how the blob store keeps its bytes: StoreCopy,
// StoreChunks or StoreReference.
type Added struct {
	blobsync.Entry
	Store string
}

// AddFilesWith is AddFiles with options (AddOptions.NoStoreCopy: keep the
// files by reference). Each path must name a regular file whose base
// name CheckName accepts (ErrBadName); the first file that fails stops
// the add and nothing is published (blobs already stored are left for
// GC). Errors: ErrReadOnly; ErrBadName; the file's (os.Stat, not a
// regular file); the store's (*blobsync.LimitError over
// blobsync.MaxBlobSize; with NoStoreCopy, a file that changed while it
// was hashed).
func (r *Repo) AddFilesWith(ctx context.Context, paths []string, opts AddOptions) ([]Added, error) {
	if r.writer == nil {
		return nil, ErrReadOnly
	}
	rb, canRef := r.blobs.(RefBlobs)
	r.mu.Lock()
	defer r.mu.Unlock()
	c, _, err := r.Collection(ctx, nil)
	if err != nil {
		return nil, err
	}
	added := make([]Added, 0, len(paths))
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, p := range paths {
		name := filepath.Base(p)
		if err := CheckName(name); err != nil {
			return nil, fmt.Errorf("add %s: %w", p, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("add %s: %w", p, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("add %s: not a regular file", p)
		}
		e := blobsync.Entry{
			Name: name, CreatedAt: now, ModTime: fi.ModTime().UTC().Truncate(time.Millisecond),
			MediaType: mediaType(name),
		}
		kept := StoreCopy
		if cb, ok := r.blobs.(ChunkedBlobs); ok && r.chunking && !(opts.NoStoreCopy && canRef) && fi.Size() > blobsync.ChunkThreshold {
			cf, err := cb.AddFileChunked(ctx, p)
			if err != nil {
				return nil, fmt.Errorf("add %s: %w", p, err)
			}
			e.Hash, e.Size, e.Chunks = cf.Hash, cf.Size, cf.List
			kept = StoreChunks
		} else if opts.NoStoreCopy && canRef {
			if e.Hash, e.Size, err = rb.AddFileRef(ctx, p); err != nil {
				return nil, fmt.Errorf("add %s: %w", p, err)
			}
			ref, err := rb.RefPath(e.Hash)
			if err != nil {
				return nil, fmt.Errorf("add %s: %w", p, err)
			}
			if ref != "" {
				kept = StoreReference
			}
		} else if e.Hash, e.Size, err = r.blobs.AddFile(ctx, p); err != nil {
			return nil, fmt.Errorf("add %s: %w", p, err)
		}
		c.Put(e)
		added = append(added, Added{Entry: e, Store: kept})
	}
	if err := r.writeCollection(ctx, c); err != nil {
		return nil, err
	}
	return added, nil
}

// AddReader stores the bytes r yields (at most limit bytes; see
// blobsync.Store.AddReader) as file name, replacing a file of that name
// and keeping its history as AddFiles does, and publishes one new
// collection with it. The bytes go into the blob
// store once, hashed as they arrive (and, with SetChunking and more than
// blobsync.ChunkThreshold of them, cut into chunks as they arrive:
// blobsync.Store.AddReaderChunked); if r fails or passes limit, nothing
// names them and the collection is unchanged (chunks already stored are
// left for GC). Both times of the entry are
// now. Errors: ErrReadOnly; a name CheckName refuses (ErrBadName); the
// store's errors (r's own error wrapped, *blobsync.LimitError).
func (r *Repo) AddReader(ctx context.Context, name string, src io.Reader, limit int64) (blobsync.Entry, error) {
	if r.writer == nil {
		return blobsync.Entry{}, ErrReadOnly
	}
	if err := CheckName(name); err != nil {
		return blobsync.Entry{}, err
	}
	var chunks blobsync.Hash
	var h blobsync.Hash
	var size int64
	var err error
	if cb, ok := r.blobs.(ChunkedBlobs); ok && r.chunking {
		var cf blobsync.ChunkedFile
		cf, err = cb.AddReaderChunked(ctx, src, limit)
		h, size, chunks = cf.Hash, cf.Size, cf.List
	} else {
		h, size, err = r.blobs.AddReader(ctx, src, limit)
	}
	if err != nil {
		return blobsync.Entry{}, fmt.Errorf("add %q: %w", name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, _, err := r.Collection(ctx, nil)
	if err != nil {
		return blobsync.Entry{}, err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	e := blobsync.Entry{Name: name, Hash: h, Size: size, Chunks: chunks, CreatedAt: now, ModTime: now, MediaType: mediaType(name)}
	c.Put(e)
	if err := r.writeCollection(ctx, c); err != nil {
		return blobsync.Entry{}, err
	}
	return e, nil
}

// DeleteFile publishes a collection without the named file in its
// listings: the name becomes a tombstone that keeps its history (History,
// Restore), until the retention prunes all of it. ErrFileNotFound if no
// live file has that name (a deleted one included).
func (r *Repo) DeleteFile(ctx context.Context, name string) error {
	if r.writer == nil {
		return ErrReadOnly
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, _, err := r.Collection(ctx, nil)
	if err != nil {
		return err
	}
	if !c.Remove(name) {
		return fmt.Errorf("%w: %q", ErrFileNotFound, name)
	}
	return r.writeCollection(ctx, c)
}

// SetTunnel publishes td in tunnel slot i (0 <= i < MaxTunnels). A
// descriptor that readers would refuse (see MaxTunnelAddrs) is an error
// wrapping ErrBadValue, and is not written.
func (r *Repo) SetTunnel(ctx context.Context, i int, td TunnelDescriptor) error {
	if i < 0 || i >= MaxTunnels {
		return fmt.Errorf("datarepo: tunnel slot %d out of range [0,%d)", i, MaxTunnels)
	}
	if err := td.check(); err != nil {
		return err
	}
	b, err := transport.Marshal(td)
	if err != nil {
		return err
	}
	return r.write(ctx, uint32(SubkeyTunnelFirst+i), b)
}

// ClearTunnel empties tunnel slot i (an empty value), as a node does before
// a clean shutdown.
func (r *Repo) ClearTunnel(ctx context.Context, i int) error {
	if i < 0 || i >= MaxTunnels {
		return fmt.Errorf("datarepo: tunnel slot %d out of range [0,%d)", i, MaxTunnels)
	}
	return r.write(ctx, uint32(SubkeyTunnelFirst+i), nil)
}

// Tunnel reads tunnel slot i; ok is false when it is empty. A descriptor
// that does not decode or breaks its bounds (see MaxTunnelAddrs) is an
// error wrapping ErrBadValue.
func (r *Repo) Tunnel(ctx context.Context, i int) (td TunnelDescriptor, ok bool, err error) {
	b, err := ReadSealed(ctx, r.recs, r.Key(), uint32(SubkeyTunnelFirst+i), r.keys)
	if err != nil || len(b) == 0 {
		return td, false, err
	}
	if td, err = decodeTunnel(b); err != nil {
		return td, false, fmt.Errorf("repo %s: slot %d: %w", r.Key(), i, err)
	}
	return td, true, nil
}

// Tunnels reads the tunnel slots in order up to the first empty one and
// returns their descriptors. A slot whose value does not decrypt, decode
// or pass its bounds is skipped and logged as a warning, so one bad slot
// never hides the others. An error means a slot could not be read (the
// record is not reachable); the descriptors read before it come with it.
func (r *Repo) Tunnels(ctx context.Context) ([]TunnelDescriptor, error) {
	var out []TunnelDescriptor
	for i := 0; i < MaxTunnels; i++ {
		td, ok, err := r.Tunnel(ctx, i)
		switch {
		case errors.Is(err, record.ErrDecrypt), errors.Is(err, ErrBadValue):
			r.log.Warn("datarepo: skipped a bad tunnel slot", "repo", r.Key().String(), "slot", i, "err", err)
			continue
		case err != nil:
			return out, err
		case !ok:
			return out, nil
		}
		out = append(out, td)
	}
	return out, nil
}

// CheckName validates a repo name or a file name: 1 to MaxNameLen bytes of
// UTF-8, not "." or "..", without '/' or NUL. The error wraps ErrBadName
// and says what is wrong. Callers above datarepo check a name with it
// before they change anything.
func CheckName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: %q", ErrBadName, name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBadName, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not UTF-8", ErrBadName)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: %q contains '/' or NUL", ErrBadName, name)
	}
	return nil
}

// mediaType guesses a file's media type from its extension.
func mediaType(name string) string {
	if t := mime.TypeByExtension(filepath.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}
