package blobsync

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

func sampleCollection() *Collection {
	c := &Collection{}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123, time.UTC)
	c.Put(Entry{Name: "b.jpg", Hash: HashBytes([]byte("b")), Size: 1, CreatedAt: t0, ModTime: t0.Add(-time.Hour), MediaType: "image/jpeg"})
	c.Put(Entry{Name: "a.txt", Hash: HashBytes([]byte("a")), Size: 2})
	c.Put(Entry{Name: "ü ß.mp4", Hash: HashBytes(nil), Size: 1 << 35, CreatedAt: t0})
	return c
}

func TestCollectionRoundTrip(t *testing.T) {
	c := sampleCollection()
	if c.Entries[0].Name != "a.txt" || c.Entries[2].Name != "ü ß.mp4" {
		t.Fatalf("Put did not keep order: %+v", c.Entries)
	}
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeCollection(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, d) {
		t.Fatalf("round trip:\n%+v\n%+v", c, d)
	}
	b2, err := d.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) {
		t.Fatal("encoding is not deterministic")
	}
	if e, ok := d.Get("b.jpg"); !ok || e.Size != 1 || e.MediaType != "image/jpeg" {
		t.Fatalf("Get: %+v %v", e, ok)
	}
	d.Put(Entry{Name: "b.jpg", Size: 9})
	if e, ok := d.Get("b.jpg"); !ok || e.Size != 9 || len(d.Entries) != 3 {
		t.Fatal("Put did not replace")
	}
	if !d.Remove("a.txt") || d.Remove("a.txt") || len(d.Entries) != 2 {
		t.Fatal("Remove")
	}
	if _, ok := d.Get("a.txt"); ok {
		t.Fatal("Get after Remove")
	}
	empty, err := (&Collection{}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if d, err := DecodeCollection(empty); err != nil || len(d.Entries) != 0 {
		t.Fatalf("empty collection: %v", err)
	}
}

func TestCollectionValidation(t *testing.T) {
	h := HashBytes(nil)
	enc := func(v any) []byte {
		b, err := wireEnc.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	entry := func(name string, size int64) map[int]any {
		return map[int]any{0: name, 1: h[:], 2: size}
	}
	coll := func(version int, entries ...map[int]any) []byte {
		if entries == nil {
			entries = []map[int]any{}
		}
		return enc(map[int]any{0: version, 1: entries})
	}
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"version 4":          {coll(4), "version 4"},
		"version 0":          {coll(0), "version 0"},
		"empty name":         {coll(1, entry("", 1)), "empty name"},
		"slash":              {coll(1, entry("a/b", 1)), "'/'"},
		"nul":                {coll(1, entry("a\x00b", 1)), "NUL"},
		"long name":          {coll(1, entry(strings.Repeat("x", 256), 1)), "over 255"},
		"negative size":      {coll(1, entry("a", -1)), "size -1"},
		"duplicate":          {coll(1, entry("a", 1), entry("a", 2)), "twice"},
		"unsorted":           {coll(1, entry("b", 1), entry("a", 2)), "out of order"},
		"short hash":         {coll(1, map[int]any{0: "a", 1: []byte{1}, 2: 1}), "hash is 1 bytes"},
		"chunks in v1":       {coll(1, map[int]any{0: "a", 1: h[:], 2: 1, 6: h[:]}), "version 1 collection"},
		"short chunks":       {coll(2, map[int]any{0: "a", 1: h[:], 2: 1, 6: []byte{1}}), "chunk list hash is 1 bytes"},
		"zero chunks":        {coll(2, map[int]any{0: "a", 1: h[:], 2: 1, 6: make([]byte, 32)}), "all zero"},
		"versions in v2":     {coll(2, map[int]any{0: "a", 1: h[:], 2: 1, 7: []any{map[int]any{1: h[:], 2: 1}}}), "version 2 collection"},
		"tombstone in v2":    {coll(2, map[int]any{0: "a", 2: 0, 8: true}), "version 2 collection"},
		"bare tombstone":     {coll(3, map[int]any{0: "a", 2: 0, 8: true}), "no older version"},
		"empty versions":     {coll(3, map[int]any{0: "a", 1: h[:], 2: 1, 7: []any{}}), "empty version list"},
		"deletion w/ hash":   {coll(3, map[int]any{0: "a", 1: h[:], 2: 0, 8: true, 7: []any{map[int]any{1: h[:], 2: 1}}}), "a deletion with"},
		"version no hash":    {coll(3, map[int]any{0: "a", 1: h[:], 2: 1, 7: []any{map[int]any{2: 1}}}), "version 1: hash is 0 bytes"},
		"version size":       {coll(3, map[int]any{0: "a", 1: h[:], 2: 1, 7: []any{map[int]any{1: h[:], 2: -5}}}), "version 1: size -5"},
		"version chunks":     {coll(3, map[int]any{0: "a", 1: h[:], 2: 1, 7: []any{map[int]any{1: h[:], 2: 1, 6: make([]byte, 32)}}}), "all zero"},
		"versions not array": {coll(3, map[int]any{0: "a", 1: h[:], 2: 1, 7: 5}), "versions"},
		"too many versions":  {coll(3, map[int]any{0: "a", 1: h[:], 2: 1, 7: make([]map[int]any, MaxVersions+1)}), "versions"},
		"tombstone dup name": {coll(3, entry("a", 1), map[int]any{0: "a", 2: 0, 8: true, 7: []any{map[int]any{1: h[:], 2: 1}}}), "twice"},
		"bad utf8":           {enc(map[int]any{0: 1, 1: []any{map[int]any{0: cbor.RawMessage{0x61, 0xff}, 1: h[:], 2: 1}}}), "UTF-8"},
		"not cbor":           {[]byte{0xff}, "cbor"},
		"empty input":        {nil, "EOF"},
		"trailing":           {append(coll(1), 0), "extraneous"},
		"dup map key":        {[]byte{0xa2, 0x00, 0x01, 0x00, 0x01}, "duplicate"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeCollection(tc.b)
			if !errors.Is(err, ErrBadCollection) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeCollection = %v, want ErrBadCollection mentioning %q", err, tc.want)
			}
		})
	}
	bad := &Collection{Entries: []Entry{{Name: "b"}, {Name: "a"}}}
	if _, err := bad.Encode(); !errors.Is(err, ErrBadCollection) {
		t.Fatalf("Encode unsorted = %v", err)
	}
}

// TestCollectionVersions: a collection without chunked entries encodes as
// version 1, byte for byte as builds before chunking wrote it
// (testdata/collection-v1.cbor, written by the version 1 encoder); one
// with a chunked entry encodes as version 2 and round-trips.
func TestCollectionVersions(t *testing.T) {
	old, err := os.ReadFile("testdata/collection-v1.cbor")
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeCollection(old)
	if err != nil {
		t.Fatalf("a version 1 collection does not decode: %v", err)
	}
	if !reflect.DeepEqual(d, sampleCollection()) {
		t.Fatalf("version 1 collection decoded to %+v", d)
	}
	b, err := d.Encode()
	if err != nil || !bytes.Equal(b, old) {
		t.Fatalf("a collection without chunked entries no longer encodes as version 1 did (%v)", err)
	}
	c := sampleCollection()
	c.Entries[2].Chunks = HashBytes([]byte("chunk list"))
	b, err = c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var w wireCollection
	if err := collDec.Unmarshal(b, &w); err != nil || w.Version != 2 {
		t.Fatalf("a chunked collection encodes as version %d (%v), want 2", w.Version, err)
	}
	d, err = DecodeCollection(b)
	if err != nil || !reflect.DeepEqual(d, c) {
		t.Fatalf("version 2 round trip: %v\n%+v\n%+v", err, c, d)
	}
}

func TestCollectionEntryLimit(t *testing.T) {
	c := &Collection{Entries: make([]Entry, MaxEntries+1)}
	var le *LimitError
	if _, err := c.Encode(); !errors.As(err, &le) {
		t.Fatalf("Encode over the entry limit = %v", err)
	}
	// An array header claiming too many entries is refused before allocation.
	b := []byte{0xa2, 0x00, 0x01, 0x01, 0x9a, 0x7f, 0xff, 0xff, 0xff}
	if _, err := DecodeCollection(b); !errors.Is(err, ErrBadCollection) {
		t.Fatalf("DecodeCollection huge array = %v", err)
	}
}

func FuzzDecodeCollection(f *testing.F) {
	b, err := sampleCollection().Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	c := sampleCollection()
	c.Entries[0].Chunks = HashBytes([]byte("chunk list"))
	if b, err = c.Encode(); err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	if b, err = historyCollection().Encode(); err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	e, err := (&Collection{}).Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(e)
	f.Add([]byte{0xa2, 0x00, 0x01, 0x01, 0x9a, 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCollection(b)
		if err != nil {
			return
		}
		// Whatever decodes is valid and re-encodes to something that decodes
		// to the same collection.
		b2, err := c.Encode()
		if err != nil {
			t.Fatalf("decoded collection does not encode: %v", err)
		}
		c2, err := DecodeCollection(b2)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
