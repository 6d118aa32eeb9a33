package datarepo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dwebkit/dweb/blobsync"
)

// A name's history (docs/design-notes.md, "History"): every write of the
// repo keeps what a name was (blobsync.Collection.Put, Remove), a delete
// leaves a tombstone, and the repo's retention (SetRetention) prunes the
// older versions on each write. Versions are numbered in a name's history
// newest first: 0 is the current one.

// Errors of the history.
var (
	ErrVersionNotFound = errors.New("datarepo: no such version")
	ErrBadVersionRef   = errors.New("datarepo: bad version")
	// ErrVersionDeleted: the version asked for is a deletion, which has no
	// bytes to get or restore.
	ErrVersionDeleted = errors.New("datarepo: that version is a deletion")
)

// SetRetention sets which older versions the repo keeps; each write of
// its collection prunes to it (blobsync.Collection.Prune), and blobs only
// pruned versions named become garbage (GCRoots). The default is
// blobsync.KeepAll: an archive of evidence keeps every version, still at
// most blobsync.MaxVersions per name (the oldest go first). Call it before
// the repo is shared between goroutines.
func (r *Repo) SetRetention(keep blobsync.Retention) { r.retention = keep }

// FileHistory returns the history of the file name in c, newest first
// (index 0 the current version, a deletion if the name was deleted last).
// ErrFileNotFound when c has no entry, live or deleted, of that name.
func FileHistory(c *blobsync.Collection, name string) ([]blobsync.Version, error) {
	e, ok := c.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrFileNotFound, name)
	}
	return e.History(), nil
}

// History reads the repo's current collection (fetching it with fetch if
// not local, as Collection) and returns the history of the file name:
// FileHistory.
func (r *Repo) History(ctx context.Context, name string, fetch Fetcher) ([]blobsync.Version, error) {
	c, _, err := r.Collection(ctx, fetch)
	if err != nil {
		return nil, err
	}
	return FileHistory(c, name)
}

// VersionRef names one version of a file: an index in its history (0 the
// current version, 1 the one before, ...) or a prefix of its whole-file
// BLAKE3 hash in hex (what b3sum and the listings print).
type VersionRef struct {
	Index  int    // used when Prefix is ""
	Prefix string // lower-case hex, 8..64 digits
}

// Version reference limits: a decimal of at most MaxVersionIndexDigits
// digits is an index; a hash prefix has at least MinVersionPrefix hex
// digits, so no reference is both.
const (
	MaxVersionIndexDigits = 4 // indexes go to blobsync.MaxVersions
	MinVersionPrefix      = 8
)

// ParseVersionRef reads a version reference: "0".."1000" (at most 4
// decimal digits) is an index into the history, newest first; 8 to 64 hex
// digits (either case) a prefix of a version's whole-file hash. Anything
// else is an error wrapping ErrBadVersionRef that says which forms are
// accepted.
func ParseVersionRef(s string) (VersionRef, error) {
	if s != "" && len(s) <= MaxVersionIndexDigits && strings.Trim(s, "0123456789") == "" {
		n, err := strconv.Atoi(s)
		if err == nil && n <= blobsync.MaxVersions {
			return VersionRef{Index: n}, nil
		}
	}
	if len(s) >= MinVersionPrefix && len(s) <= 2*len(blobsync.Hash{}) && strings.Trim(strings.ToLower(s), "0123456789abcdef") == "" {
		return VersionRef{Prefix: strings.ToLower(s)}, nil
	}
	return VersionRef{}, fmt.Errorf("%w: %q: want an index 0..%d (0 is the current version) or %d to 64 hex digits of a version's hash",
		ErrBadVersionRef, truncate(s, 80), blobsync.MaxVersions, MinVersionPrefix)
}

// String returns the reference as ParseVersionRef reads it.
func (v VersionRef) String() string {
	if v.Prefix != "" {
		return v.Prefix
	}
	return strconv.Itoa(v.Index)
}

// FindVersion returns the version of hist (a history, newest first) that
// ref names, and its index. A hash prefix names the newest version whose
// hash starts with it; prefixes of two different hashes are ambiguous
// (ErrBadVersionRef). Errors: ErrVersionNotFound (an index past the
// history, a prefix no version has), ErrBadVersionRef,
// ErrVersionDeleted (the version is a deletion).
func FindVersion(hist []blobsync.Version, ref VersionRef) (int, blobsync.Version, error) {
	i := ref.Index
	if ref.Prefix != "" {
		i = -1
		for j, v := range hist {
			if v.Deleted || !strings.HasPrefix(v.Hash.String(), ref.Prefix) {
				continue
			}
			if i < 0 {
				i = j
			} else if hist[i].Hash != v.Hash {
				return 0, blobsync.Version{}, fmt.Errorf("%w: hash prefix %s names versions %d (%s) and %d (%s)",
					ErrBadVersionRef, ref.Prefix, i, hist[i].Hash, j, v.Hash)
			}
		}
		if i < 0 {
			return 0, blobsync.Version{}, fmt.Errorf("%w: no version of the %d has a hash starting %s", ErrVersionNotFound, len(hist), ref.Prefix)
		}
	}
	if i < 0 || i >= len(hist) {
		return 0, blobsync.Version{}, fmt.Errorf("%w: version %d, the history has %d (0 to %d)", ErrVersionNotFound, i, len(hist), len(hist)-1)
	}
	if hist[i].Deleted {
		return i, hist[i], fmt.Errorf("%w: version %d is the deletion of %s", ErrVersionDeleted, i, hist[i].CreatedAt.Format(time.RFC3339))
	}
	return i, hist[i], nil
}

// Restore makes version ref of the file name current again, as a new
// version: its bytes (the same blob or chunks, byte-identical, nothing
// copied), size, modification time and media type, added now; what was
// current becomes the newest older version. Restoring a deleted name
// brings it back to listings. Restoring the version that is already
// current changes nothing. It returns the file's new entry. Errors:
// ErrReadOnly; ErrFileNotFound; FindVersion's errors.
func (r *Repo) Restore(ctx context.Context, name string, ref VersionRef) (blobsync.Entry, error) {
	if r.writer == nil {
		return blobsync.Entry{}, ErrReadOnly
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, _, err := r.Collection(ctx, nil)
	if err != nil {
		return blobsync.Entry{}, err
	}
	hist, err := FileHistory(c, name)
	if err != nil {
		return blobsync.Entry{}, err
	}
	i, v, err := FindVersion(hist, ref)
	if err != nil {
		return blobsync.Entry{}, fmt.Errorf("restore %q: %w", name, err)
	}
	if i == 0 {
		e, _ := c.Get(name)
		return e, nil
	}
	e := v.Entry(name)
	e.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	c.Put(e)
	if err := r.writeCollection(ctx, c); err != nil {
		return blobsync.Entry{}, err
	}
	e, _ = c.Get(name)
	return e, nil
}

// GCRoots returns what blobsync.Store.GC must keep for this repo: the
// current collection's hash and, for every version it keeps (live,
// older and of deleted names: blobsync.Collection.KeptFiles), the blob
// or the chunk list (GC keeps a listed chunk list's chunks). Blobs only
// pruned versions named are not among them. The collection is read from
// the local store only (it is this node's own, or one it verified);
// errors: reading the record or the collection.
func (r *Repo) GCRoots(ctx context.Context) ([]blobsync.Hash, error) {
	c, h, err := r.Collection(ctx, nil)
	if err != nil {
		return nil, err
	}
	var roots []blobsync.Hash
	if !h.IsZero() {
		roots = append(roots, h)
	}
	seen := map[blobsync.Hash]bool{h: true}
	c.KeptFiles(func(e blobsync.Entry) bool {
		x := e.Hash
		if !e.Chunks.IsZero() {
			x = e.Chunks
		}
		if !seen[x] {
			seen[x] = true
			roots = append(roots, x)
		}
		return true
	})
	return roots, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
