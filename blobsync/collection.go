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
	// entries (Entry.Chunks). Encode writes version 1 when no entry is
	// chunked, so builds that read only version 1 still read such
	// collections; DecodeCollection reads both.
	CollectionVersion = 2
	MaxCollectionSize = 64 << 20 // bytes of an encoded collection (ReadAll's max for one)
	MaxEntries        = 100000
	MaxNameLen        = 255 // bytes of UTF-8 in an entry name
	MaxMediaTypeLen   = 255 // bytes in an entry's media type
)

// ErrBadCollection wraps every reason DecodeCollection or Encode rejects a
// collection.
var ErrBadCollection = errors.New("blobsync: bad collection")

// Entry is one file of a data repo's collection.
type Entry struct {
	Name string // file name: 1..255 bytes of UTF-8, no "/" and no NUL, unique in the collection
	Hash Hash   // BLAKE3-256 of the whole file's bytes (what b3sum prints); the blob, when Chunks is zero
	Size int64  // bytes, >= 0
	// Chunks, when not zero, is the hash of the file's chunk list
	// (chunklist.go): the file is stored as content-defined chunks, and no
	// blob Hash need exist; assembling the chunks must give Hash.
	Chunks    Hash
	CreatedAt time.Time // when the file was added; zero = unknown
	ModTime   time.Time // the file's modification time; zero = unknown
	MediaType string    // e.g. "image/jpeg"; empty = unknown
}

// Collection is the list of a data repo's files, itself stored as a blob:
// a repo's state is one hash. Entries are sorted by Name (byte order) and
// names are unique; Put and Remove keep that.
type Collection struct {
	Entries []Entry
}

// wireCollection is the CBOR form: a map {0: version, 1: [entries]}, each
// entry a map with small integer keys; times are Unix nanoseconds (UTC),
// omitted when zero. Encoding is deterministic (RFC 8949 §4.2 core
// deterministic), so equal collections have equal hashes.
type wireCollection struct {
	Version uint64      `cbor:"0,keyasint"`
	Entries []wireEntry `cbor:"1,keyasint"`
}

type wireEntry struct {
	Name      string `cbor:"0,keyasint"`
	Hash      []byte `cbor:"1,keyasint"`
	Size      int64  `cbor:"2,keyasint"`
	CreatedAt int64  `cbor:"3,keyasint,omitempty"`
	ModTime   int64  `cbor:"4,keyasint,omitempty"`
	MediaType string `cbor:"5,keyasint,omitempty"`
	Chunks    []byte `cbor:"6,keyasint,omitempty"` // version 2: the chunk list's hash
}

var collDec cbor.DecMode

func init() {
	var err error
	if collDec, err = (cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  4,
		MaxArrayElements: MaxEntries,
		MaxMapPairs:      32,
		UTF8:             cbor.UTF8RejectInvalid,
	}).DecMode(); err != nil {
		panic(err)
	}
}

// Get returns the entry named name.
func (c *Collection) Get(name string) (Entry, bool) {
	i, ok := c.find(name)
	if !ok {
		return Entry{}, false
	}
	return c.Entries[i], true
}

// Put adds e, replacing the entry of the same name, keeping Entries sorted.
// It does not validate e; Encode does.
func (c *Collection) Put(e Entry) {
	i, ok := c.find(e.Name)
	if ok {
		c.Entries[i] = e
		return
	}
	c.Entries = append(c.Entries, Entry{})
	copy(c.Entries[i+1:], c.Entries[i:])
	c.Entries[i] = e
}

// Remove deletes the entry named name and reports whether there was one.
func (c *Collection) Remove(name string) bool {
	i, ok := c.find(name)
	if ok {
		c.Entries = append(c.Entries[:i], c.Entries[i+1:]...)
	}
	return ok
}

func (c *Collection) find(name string) (int, bool) {
	i := sort.Search(len(c.Entries), func(i int) bool { return c.Entries[i].Name >= name })
	return i, i < len(c.Entries) && c.Entries[i].Name == name
}

// Encode returns the collection's deterministic CBOR encoding: version 1
// when no entry is chunked, else version 2 (CollectionVersion). It fails with ErrBadCollection if an entry is invalid
// (see DecodeCollection) or the entries are not sorted and unique.
func (c *Collection) Encode() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	w := wireCollection{Version: 1, Entries: make([]wireEntry, len(c.Entries))}
	for i, e := range c.Entries {
		w.Entries[i] = wireEntry{
			Name: e.Name, Hash: e.Hash[:], Size: e.Size,
			CreatedAt: unixNano(e.CreatedAt), ModTime: unixNano(e.ModTime),
			MediaType: e.MediaType,
		}
		if !e.Chunks.IsZero() {
			w.Entries[i].Chunks = e.Chunks[:]
			w.Version = 2
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

// DecodeCollection parses and validates an encoded collection: the version
// must be 1 or 2 (CollectionVersion), and only version 2 may have chunked
// entries, whose chunk-list hash is 32 bytes, not all zero; at most MaxEntries entries; names 1..255 bytes
// of valid UTF-8 without "/" or NUL, unique and sorted; hashes 32 bytes;
// sizes >= 0; media types <= 255 bytes. Errors wrap ErrBadCollection and
// name the entry at fault.
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
	c := &Collection{Entries: make([]Entry, len(w.Entries))}
	for i, we := range w.Entries {
		if len(we.Hash) != len(Hash{}) {
			return nil, fmt.Errorf("%w: entry %d (%q): hash is %d bytes, want 32", ErrBadCollection, i, truncate(we.Name, 80), len(we.Hash))
		}
		e := Entry{Name: we.Name, Size: we.Size, MediaType: we.MediaType,
			CreatedAt: fromUnixNano(we.CreatedAt), ModTime: fromUnixNano(we.ModTime)}
		copy(e.Hash[:], we.Hash)
		if we.Chunks != nil {
			switch {
			case w.Version < 2:
				return nil, fmt.Errorf("%w: entry %d (%q): a chunk list in a version %d collection", ErrBadCollection, i, truncate(we.Name, 80), w.Version)
			case len(we.Chunks) != len(Hash{}):
				return nil, fmt.Errorf("%w: entry %d (%q): chunk list hash is %d bytes, want 32", ErrBadCollection, i, truncate(we.Name, 80), len(we.Chunks))
			}
			copy(e.Chunks[:], we.Chunks)
			if e.Chunks.IsZero() {
				return nil, fmt.Errorf("%w: entry %d (%q): chunk list hash is all zero", ErrBadCollection, i, truncate(we.Name, 80))
			}
		}
		c.Entries[i] = e
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Collection) validate() error {
	if len(c.Entries) > MaxEntries {
		return fmt.Errorf("%w: %w", ErrBadCollection, &LimitError{What: "collection entry count", Limit: MaxEntries, Got: int64(len(c.Entries))})
	}
	for i, e := range c.Entries {
		if err := ValidateName(e.Name); err != nil {
			return fmt.Errorf("%w: entry %d: %w", ErrBadCollection, i, err)
		}
		if e.Size < 0 || e.Size > MaxBlobSize {
			return fmt.Errorf("%w: entry %d (%q): size %d out of range [0, %d]", ErrBadCollection, i, e.Name, e.Size, MaxBlobSize)
		}
		if len(e.MediaType) > MaxMediaTypeLen || !utf8.ValidString(e.MediaType) {
			return fmt.Errorf("%w: entry %d (%q): media type longer than %d bytes or not UTF-8", ErrBadCollection, i, e.Name, MaxMediaTypeLen)
		}
		if i > 0 {
			switch prev := c.Entries[i-1].Name; {
			case prev == e.Name:
				return fmt.Errorf("%w: entry %d: name %q appears twice", ErrBadCollection, i, e.Name)
			case prev > e.Name:
				return fmt.Errorf("%w: entry %d: name %q is out of order (after %q)", ErrBadCollection, i, e.Name, prev)
			}
		}
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
