package blobsync

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// Collection limits.
const (
	// CollectionVersion is the newest encoding version: 2 adds chunked
	// entries (Entry.Chunks), 3 a name's history (Entry.Versions) and
	// tombstones (Collection.Tombstones). Encode writes the lowest
	// version that expresses the collection (1 without chunked entries
	// and history, 2 with chunked entries and no history), so builds
	// that read only an older version still read such collections;
	// DecodeCollection reads all three.
	CollectionVersion = 3
	MaxCollectionSize = 64 << 20 // bytes of an encoded collection (ReadAll's max for one)
	MaxEntries        = 100000   // live entries and tombstones together
	MaxNameLen        = 255      // bytes of UTF-8 in an entry name
	MaxMediaTypeLen   = 255      // bytes in an entry's media type
	// MaxVersions bounds one name's older versions (Entry.Versions).
	MaxVersions = 1000
	// MaxTotalVersions bounds the older versions of all names together,
	// so a decoded collection stays within about 40 MiB of memory (a
	// version takes about 150 bytes decoded, 50 to 110 encoded).
	MaxTotalVersions = 1 << 18
)

// ErrBadCollection wraps every reason DecodeCollection or Encode rejects a
// collection.
var ErrBadCollection = errors.New("blobsync: bad collection")

// Entry is one name of a data repo's collection: its current version (the
// fields up to MediaType) and its history.
type Entry struct {
	Name string // file name: 1..255 bytes of UTF-8, no "/" and no NUL, unique in the collection
	Hash Hash   // BLAKE3-256 of the whole file's bytes (what b3sum prints); the blob, when Chunks is zero
	Size int64  // bytes, >= 0
	// Chunks, when not zero, is the hash of the file's chunk list
	// (chunklist.go): the file is stored as content-defined chunks, and no
	// blob Hash need exist; assembling the chunks must give Hash.
	Chunks    Hash
	CreatedAt time.Time // when this version was added (of a tombstone: when the name was deleted); zero = unknown
	ModTime   time.Time // the file's modification time; zero = unknown
	MediaType string    // e.g. "image/jpeg"; empty = unknown
	// Deleted marks a tombstone (Collection.Tombstones): the name was
	// deleted at CreatedAt; Hash, Size, Chunks, ModTime and MediaType are
	// zero, and Versions holds what it was.
	Deleted bool
	// Versions are the name's earlier versions, newest first, at most
	// MaxVersions (collection_history.go). Nil when there is no history.
	Versions []Version
}

// Version is one earlier version of a name: the current fields of an
// Entry as they were, or, when Deleted, a deletion of the name at
// CreatedAt (the other fields zero).
type Version struct {
	Hash      Hash
	Size      int64
	Chunks    Hash
	CreatedAt time.Time
	ModTime   time.Time
	MediaType string
	Deleted   bool
}

// Collection is the list of a data repo's files, itself stored as a blob:
// a repo's state is one hash. Entries are the live names and Tombstones
// the deleted names whose history is kept; each list is sorted by Name
// (byte order), and a name appears once in both together. Put, Remove and
// Prune keep that. Readers that list, fetch, back up or serve files read
// Entries and never see a tombstone.
type Collection struct {
	Entries    []Entry
	Tombstones []Entry
}

// wireCollection is the CBOR form: a map {0: version, 1: [entries]}, each
// entry a map with small integer keys; times are Unix nanoseconds (UTC),
// omitted when zero. Live entries and tombstones share the one list,
// sorted by name. Encoding is deterministic (RFC 8949 §4.2 core
// deterministic), so equal collections have equal hashes.
type wireCollection struct {
	Version uint64      `cbor:"0,keyasint"`
	Entries []wireEntry `cbor:"1,keyasint"`
}

type wireEntry struct {
	Name      string `cbor:"0,keyasint"`
	Hash      []byte `cbor:"1,keyasint,omitempty"` // absent only in a tombstone (version 3)
	Size      int64  `cbor:"2,keyasint"`
	CreatedAt int64  `cbor:"3,keyasint,omitempty"`
	ModTime   int64  `cbor:"4,keyasint,omitempty"`
	MediaType string `cbor:"5,keyasint,omitempty"`
	Chunks    []byte `cbor:"6,keyasint,omitempty"` // version 2: the chunk list's hash
	// Version 3: the older versions (an array of wireVersion, decoded on
	// its own so their total is bounded before it is allocated) and the
	// tombstone mark.
	Versions cbor.RawMessage `cbor:"7,keyasint,omitempty"`
	Deleted  bool            `cbor:"8,keyasint,omitempty"`
}

// wireVersion is an entry without name and history, with the same keys.
type wireVersion struct {
	Hash      []byte `cbor:"1,keyasint,omitempty"`
	Size      int64  `cbor:"2,keyasint"`
	CreatedAt int64  `cbor:"3,keyasint,omitempty"`
	ModTime   int64  `cbor:"4,keyasint,omitempty"`
	MediaType string `cbor:"5,keyasint,omitempty"`
	Chunks    []byte `cbor:"6,keyasint,omitempty"`
	Deleted   bool   `cbor:"8,keyasint,omitempty"`
}

var collDec, versionsDec cbor.DecMode

func init() {
	var err error
	if collDec, err = (cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  5,
		MaxArrayElements: MaxEntries,
		MaxMapPairs:      32,
		UTF8:             cbor.UTF8RejectInvalid,
	}).DecMode(); err != nil {
		panic(err)
	}
	if versionsDec, err = (cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  4,
		MaxArrayElements: MaxVersions,
		MaxMapPairs:      32,
		UTF8:             cbor.UTF8RejectInvalid,
	}).DecMode(); err != nil {
		panic(err)
	}
}

// Get returns the live entry named name (not a tombstone; see Lookup).
func (c *Collection) Get(name string) (Entry, bool) {
	i, ok := find(c.Entries, name)
	if !ok {
		return Entry{}, false
	}
	return c.Entries[i], true
}

func find(es []Entry, name string) (int, bool) {
	i := sort.Search(len(es), func(i int) bool { return es[i].Name >= name })
	return i, i < len(es) && es[i].Name == name
}

// all returns the live entries and the tombstones merged in name order:
// the wire's one list.
func (c *Collection) all() []Entry {
	if len(c.Tombstones) == 0 {
		return c.Entries
	}
	out := make([]Entry, 0, len(c.Entries)+len(c.Tombstones))
	a, b := c.Entries, c.Tombstones
	for len(a) > 0 && len(b) > 0 {
		if a[0].Name <= b[0].Name {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// Encode returns the collection's deterministic CBOR encoding, in the
// lowest version that expresses it: 3 with any history or tombstone, else
// 2 with any chunked entry, else 1. It fails with ErrBadCollection if an
// entry or version is invalid (see DecodeCollection), the names are not
// sorted and unique, or a limit is passed.
func (c *Collection) Encode() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	all := c.all()
	w := wireCollection{Version: 1, Entries: make([]wireEntry, len(all))}
	for i, e := range all {
		v := toWire(e.Current())
		w.Entries[i] = wireEntry{
			Name: e.Name, Hash: v.Hash, Size: v.Size, CreatedAt: v.CreatedAt, ModTime: v.ModTime,
			MediaType: v.MediaType, Chunks: v.Chunks, Deleted: v.Deleted,
		}
		if v.Chunks != nil {
			w.Version = max(w.Version, 2)
		}
		if e.Deleted || len(e.Versions) > 0 {
			w.Version = 3
		}
		if len(e.Versions) > 0 {
			vs := make([]wireVersion, len(e.Versions))
			for j, v := range e.Versions {
				vs[j] = toWire(v)
			}
			b, err := wireEnc.Marshal(vs)
			if err != nil {
				return nil, fmt.Errorf("blobsync: encode collection: %w", err)
			}
			w.Entries[i].Versions = b
		}
	}
	b, err := wireEnc.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("blobsync: encode collection: %w", err)
	}
	if len(b) > MaxCollectionSize {
		return nil, fmt.Errorf("%w: %w", ErrBadCollection, &LimitError{What: "encoded collection", Limit: MaxCollectionSize, Got: int64(len(b))})
	}
	return b, nil
}

func toWire(v Version) wireVersion {
	w := wireVersion{Size: v.Size, CreatedAt: unixNano(v.CreatedAt), ModTime: unixNano(v.ModTime), MediaType: v.MediaType, Deleted: v.Deleted}
	if !v.Deleted {
		w.Hash = v.Hash[:]
	}
	if !v.Chunks.IsZero() {
		w.Chunks = v.Chunks[:]
	}
	return w
}

// DecodeCollection parses and validates an encoded collection: the version
// is 1, 2 or 3 (CollectionVersion); chunked entries only from version 2,
// their chunk-list hash 32 bytes, not all zero; history and tombstones
// only in version 3. At most MaxEntries names (live and deleted), at most
// MaxVersions older versions per name and MaxTotalVersions in all (counted
// before they are allocated); names 1..255 bytes of valid UTF-8 without
// "/" or NUL, unique and sorted; hashes 32 bytes, absent in a deletion;
// sizes in [0, MaxBlobSize], 0 in a deletion; media types <= 255 bytes; a
// tombstone has at least one older version. Errors wrap ErrBadCollection
// (and a *LimitError for a limit) and name the entry at fault.
func DecodeCollection(b []byte) (*Collection, error) {
	if len(b) > MaxCollectionSize {
		return nil, fmt.Errorf("%w: %w", ErrBadCollection, &LimitError{What: "encoded collection", Limit: MaxCollectionSize, Got: int64(len(b))})
	}
	var w wireCollection
	if err := collDec.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCollection, err)
	}
	if w.Version < 1 || w.Version > CollectionVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads versions 1 to %d", ErrBadCollection, w.Version, CollectionVersion)
	}
	c := &Collection{Entries: make([]Entry, 0, len(w.Entries))}
	total := 0
	for i, we := range w.Entries {
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: entry %d (%q): %s", ErrBadCollection, i, truncate(we.Name, 80), fmt.Sprintf(format, a...))
		}
		if w.Version < 3 && (we.Deleted || we.Versions != nil) {
			return nil, bad("history or a tombstone in a version %d collection", w.Version)
		}
		cur, err := fromWire(wireVersion{Hash: we.Hash, Size: we.Size, CreatedAt: we.CreatedAt, ModTime: we.ModTime,
			MediaType: we.MediaType, Chunks: we.Chunks, Deleted: we.Deleted}, w.Version)
		if err != nil {
			return nil, bad("%v", err)
		}
		e := Entry{Name: we.Name, Hash: cur.Hash, Size: cur.Size, Chunks: cur.Chunks, CreatedAt: cur.CreatedAt,
			ModTime: cur.ModTime, MediaType: cur.MediaType, Deleted: cur.Deleted}
		if we.Versions != nil {
			var wvs []wireVersion
			if err := versionsDec.Unmarshal(we.Versions, &wvs); err != nil {
				return nil, bad("versions: %v", err)
			}
			if len(wvs) == 0 {
				return nil, bad("an empty version list")
			}
			if total += len(wvs); total > MaxTotalVersions {
				return nil, fmt.Errorf("%w: %w", ErrBadCollection, &LimitError{What: "collection version count", Limit: MaxTotalVersions, Got: int64(total)})
			}
			e.Versions = make([]Version, len(wvs))
			for j, wv := range wvs {
				if e.Versions[j], err = fromWire(wv, w.Version); err != nil {
					return nil, bad("version %d: %v", j+1, err)
				}
			}
		}
		if e.Deleted {
			c.Tombstones = append(c.Tombstones, e)
		} else {
			c.Entries = append(c.Entries, e)
		}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// fromWire reads one version's fields; validate checks the rest.
func fromWire(w wireVersion, version uint64) (Version, error) {
	v := Version{Size: w.Size, MediaType: w.MediaType, CreatedAt: fromUnixNano(w.CreatedAt),
		ModTime: fromUnixNano(w.ModTime), Deleted: w.Deleted}
	if w.Deleted {
		if w.Hash != nil || w.Chunks != nil || w.Size != 0 || w.ModTime != 0 || w.MediaType != "" {
			return v, errors.New("a deletion with a hash, chunks, size, mod time or media type")
		}
		return v, nil
	}
	if len(w.Hash) != len(Hash{}) {
		return v, fmt.Errorf("hash is %d bytes, want 32", len(w.Hash))
	}
	copy(v.Hash[:], w.Hash)
	if w.Chunks != nil {
		switch {
		case version < 2:
			return v, fmt.Errorf("a chunk list in a version %d collection", version)
		case len(w.Chunks) != len(Hash{}):
			return v, fmt.Errorf("chunk list hash is %d bytes, want 32", len(w.Chunks))
		}
		copy(v.Chunks[:], w.Chunks)
		if v.Chunks.IsZero() {
			return v, errors.New("chunk list hash is all zero")
		}
	}
	return v, nil
}

func (c *Collection) validate() error {
	if n := len(c.Entries) + len(c.Tombstones); n > MaxEntries {
		return fmt.Errorf("%w: %w", ErrBadCollection, &LimitError{What: "collection entry count", Limit: MaxEntries, Got: int64(n)})
	}
	for _, e := range c.Entries {
		if e.Deleted {
			return fmt.Errorf("%w: live entry %q is marked deleted", ErrBadCollection, e.Name)
		}
	}
	total := 0
	for _, e := range c.Tombstones {
		if !e.Deleted || len(e.Versions) == 0 {
			return fmt.Errorf("%w: tombstone %q is not marked deleted or has no older version", ErrBadCollection, e.Name)
		}
	}
	all := c.all()
	for i, e := range all {
		if err := ValidateName(e.Name); err != nil {
			return fmt.Errorf("%w: entry %d: %w", ErrBadCollection, i, err)
		}
		if err := validVersion(e.Current()); err != nil {
			return fmt.Errorf("%w: entry %d (%q): %w", ErrBadCollection, i, e.Name, err)
		}
		if len(e.Versions) > MaxVersions {
			return fmt.Errorf("%w: entry %d (%q): %w", ErrBadCollection, i, e.Name, &LimitError{What: "version count of one name", Limit: MaxVersions, Got: int64(len(e.Versions))})
		}
		if total += len(e.Versions); total > MaxTotalVersions {
			return fmt.Errorf("%w: %w", ErrBadCollection, &LimitError{What: "collection version count", Limit: MaxTotalVersions, Got: int64(total)})
		}
		for j, v := range e.Versions {
			if err := validVersion(v); err != nil {
				return fmt.Errorf("%w: entry %d (%q): version %d: %w", ErrBadCollection, i, e.Name, j+1, err)
			}
		}
		if i > 0 {
			switch prev := all[i-1].Name; {
			case prev == e.Name:
				return fmt.Errorf("%w: entry %d: name %q appears twice", ErrBadCollection, i, e.Name)
			case prev > e.Name:
				return fmt.Errorf("%w: entry %d: name %q is out of order (after %q)", ErrBadCollection, i, e.Name, prev)
			}
		}
	}
	return nil
}

func validVersion(v Version) error {
	if v.Deleted {
		if !v.Hash.IsZero() || !v.Chunks.IsZero() || v.Size != 0 || !v.ModTime.IsZero() || v.MediaType != "" {
			return errors.New("a deletion with a hash, chunks, size, mod time or media type")
		}
		return nil
	}
	if v.Size < 0 || v.Size > MaxBlobSize {
		return fmt.Errorf("size %d out of range [0, %d]", v.Size, MaxBlobSize)
	}
	if len(v.MediaType) > MaxMediaTypeLen || !utf8.ValidString(v.MediaType) {
		return fmt.Errorf("media type longer than %d bytes or not UTF-8", MaxMediaTypeLen)
	}
	return nil
}

// ValidateName checks a collection entry name: 1..MaxNameLen bytes of valid
// UTF-8, no "/" and no NUL.
func ValidateName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > MaxNameLen:
		return fmt.Errorf("name %q... is %d bytes, over %d", truncate(name, 40), len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not valid UTF-8", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q contains '/' or NUL", name)
	}
	return nil
}

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// unixNano maps the zero time to 0; other times to Unix nanoseconds, which
// cover years 1678..2262 (times outside are clamped).
func unixNano(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
