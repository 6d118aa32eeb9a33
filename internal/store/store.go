// Package store is dweb's on-disk state: one Pebble database per node, with
// a fixed set of key prefixes, each owned by one package.
//
// Key prefixes (every key starts with one of these; the owner is the only
// package that writes under it):
//
//	meta/                     node metadata (schema version)              store
//	prot/<name>               protected secrets, sealed under the device key store (Protected)
//	rec/<key 32>/d            a DHT record's signed descriptor (CBOR)     internal/dht
//	rec/<key 32>/s/<sk be32>  a DHT record's subkey value (CBOR)          internal/dht
//	dhtq/<key 32><sk be32>    a DHT write queued while offline (CBOR)     internal/dht
//	blob/<hash 32>            blob entry: size, state, inline bytes       blobsync
//	bmove/<hash 32>           a blob's data file being moved out (CBOR)   blobsync
//	grp/<key 32>              a group this node belongs to (CBOR)         core, group
//	repo/<key 32>             a data repo this node owns (CBOR)           datarepo
//
// Binary parts (keys, hashes) are raw bytes, fixed length, so a prefix scan
// over "rec/<key>/" never runs into another record. Values are CBOR unless
// the owner says otherwise. Large blobs are not in Pebble: they are files in
// the blobs/ directory beside it (see blobsync).
package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// ErrNotFound is returned by Get when the key is absent.
var ErrNotFound = errors.New("store: not found")

// Prefixes, as documented above.
const (
	PrefixMeta   = "meta/"
	PrefixProt   = "prot/"
	PrefixRecord = "rec/"
	PrefixBlob   = "blob/"
	PrefixMove   = "bmove/"
	PrefixGroup  = "grp/"
	PrefixRepo   = "repo/"
)

// Key joins a prefix and raw parts into a key.
func Key(prefix string, parts ...[]byte) []byte {
	n := len(prefix)
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	k = append(k, prefix...)
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

// Options configures Open. The zero value works.
type Options struct {
	// Logger receives Pebble's own log lines at debug level. Nil: discarded.
	Logger *slog.Logger
	// Memory keeps the database in memory (Pebble's vfs.NewMem), with a
	// small memtable (256 KiB) and block cache (64 KiB): nothing is written
	// to dir, which is only what Dir returns, and everything is lost on
	// Close. For simulations that run thousands of nodes in one process
	// (internal/dht/dhtsim), not for a node's real state.
	Memory bool
}

// DB is a node's Pebble database. Its methods are safe for concurrent use.
type DB struct {
	p   *pebble.DB
	dir string
}

// Open opens or creates the database in dir (created with mode 0700).
func Open(dir string, opts Options) (*DB, error) {
	if opts.Memory {
		return openMemory(dir, opts)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", dir, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p, err := pebble.Open(filepath.Join(dir, "pebble"), &pebble.Options{
		Logger: pebbleLogger{logger},
		// The plain file system, not Pebble's default wrapper that checks
		// for slow disks: its tickers wake the process every 2 s per open
		// file for as long as the store is open, which a phone in the
		// background (a paused node) must not do.
		FS: vfs.Default,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return &DB{p: p, dir: dir}, nil
}

// openMemory opens an empty in-memory database (Options.Memory).
func openMemory(dir string, opts Options) (*DB, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cache := pebble.NewCache(64 << 10)
	defer cache.Unref()
	p, err := pebble.Open("pebble", &pebble.Options{
		Logger:       pebbleLogger{logger},
		FS:           vfs.NewMem(),
		Cache:        cache,
		MemTableSize: 256 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open in memory: %w", err)
	}
	return &DB{p: p, dir: dir}, nil
}

// Dir returns the directory the database lives in; other on-disk state of
// the node (blob files) goes beside it.
func (db *DB) Dir() string { return db.dir }

// Close flushes and closes the database.
func (db *DB) Close() error { return db.p.Close() }

// Get returns a copy of the value at key, or ErrNotFound.
func (db *DB) Get(key []byte) ([]byte, error) {
	v, closer, err := db.p.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	out := bytes.Clone(v)
	closer.Close()
	return out, nil
}

// Has reports whether key is present.
func (db *DB) Has(key []byte) (bool, error) {
	_, err := db.Get(key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Set writes value at key. With sync it returns only once the write is on
// stable storage; without, a crash may lose it but never corrupts the store.
func (db *DB) Set(key, value []byte, sync bool) error {
	if err := db.p.Set(key, value, writeOpts(sync)); err != nil {
		return fmt.Errorf("store: set: %w", err)
	}
	return nil
}

// Delete removes key; deleting an absent key is not an error.
func (db *DB) Delete(key []byte, sync bool) error {
	if err := db.p.Delete(key, writeOpts(sync)); err != nil {
		return fmt.Errorf("store: delete: %w", err)
	}
	return nil
}

// Scan calls fn for every key with the given prefix, in key order. The slices
// passed to fn are valid only during the call. An error from fn stops the
// scan and is returned.
func (db *DB) Scan(prefix []byte, fn func(key, value []byte) error) error {
	it, err := db.p.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	return nil
}

// Batch groups writes that are applied atomically by Commit.
type Batch struct{ b *pebble.Batch }

// NewBatch starts an atomic batch of writes.
func (db *DB) NewBatch() *Batch { return &Batch{b: db.p.NewBatch()} }

// Set adds a write to the batch.
func (b *Batch) Set(key, value []byte) error { return b.b.Set(key, value, nil) }

// Delete adds a deletion to the batch.
func (b *Batch) Delete(key []byte) error { return b.b.Delete(key, nil) }

// Commit applies the batch atomically; see DB.Set for sync.
func (b *Batch) Commit(sync bool) error {
	defer b.b.Close()
	if err := b.b.Commit(writeOpts(sync)); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func writeOpts(sync bool) *pebble.WriteOptions {
	if sync {
		return pebble.Sync
	}
	return pebble.NoSync
}

// prefixEnd returns the smallest key greater than every key with prefix, or
// nil if there is none (prefix of all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
	os.Exit(1)
}
