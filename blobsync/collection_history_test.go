package blobsync

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
)

var histT0 = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

// historyCollection: "a.txt" added three times (the second re-add with the
// same bytes), "b.jpg" added, deleted and added again, "gone.mp4" added,
// chunked, and deleted.
func historyCollection() *Collection {
	c := &Collection{}
	at := func(h int) time.Time { return histT0.Add(time.Duration(h) * time.Hour) }
	c.Put(Entry{Name: "a.txt", Hash: HashBytes([]byte("a1")), Size: 2, CreatedAt: at(0), MediaType: "text/plain"})
	c.Put(Entry{Name: "a.txt", Hash: HashBytes([]byte("a2")), Size: 2, CreatedAt: at(1), MediaType: "text/plain"})
	c.Put(Entry{Name: "a.txt", Hash: HashBytes([]byte("a2")), Size: 2, CreatedAt: at(2), ModTime: at(2), MediaType: "text/plain"})
	c.Put(Entry{Name: "b.jpg", Hash: HashBytes([]byte("b1")), Size: 2, CreatedAt: at(0)})
	c.RemoveAt("b.jpg", at(3))
	c.Put(Entry{Name: "b.jpg", Hash: HashBytes([]byte("b2")), Size: 2, CreatedAt: at(4)})
	c.Put(Entry{Name: "gone.mp4", Hash: HashBytes([]byte("g")), Size: 1, Chunks: HashBytes([]byte("list")), CreatedAt: at(0)})
	c.RemoveAt("gone.mp4", at(5))
	return c
}

// TestCollectionHistory: Put keeps what a name was when its bytes change
// (and only then), Remove leaves a tombstone that listings (Entries, Get)
// do not show and Lookup does, a Put after a delete takes the tombstone's
// history along, and all of it round-trips as version 3.
func TestCollectionHistory(t *testing.T) {
	c := historyCollection()
	if len(c.Entries) != 2 || c.Entries[0].Name != "a.txt" || c.Entries[1].Name != "b.jpg" {
		t.Fatalf("live entries %+v", c.Entries)
	}
	a, _ := c.Get("a.txt")
	if len(a.Versions) != 1 || a.Versions[0].Hash != HashBytes([]byte("a1")) || !a.ModTime.Equal(histT0.Add(2*time.Hour)) {
		t.Fatalf("a.txt: %+v (a re-add of the same bytes must not add a version)", a)
	}
	b, _ := c.Get("b.jpg")
	if h := b.History(); len(h) != 3 || h[0].Hash != HashBytes([]byte("b2")) || !h[1].Deleted ||
		!h[1].CreatedAt.Equal(histT0.Add(3*time.Hour)) || h[2].Hash != HashBytes([]byte("b1")) {
		t.Fatalf("b.jpg history %+v", h)
	}
	if _, ok := c.Get("gone.mp4"); ok {
		t.Fatal("Get found a deleted name")
	}
	g, ok := c.Lookup("gone.mp4")
	if !ok || !g.Deleted || len(g.Versions) != 1 || g.Versions[0].Chunks != HashBytes([]byte("list")) {
		t.Fatalf("Lookup of the tombstone: %+v %v", g, ok)
	}
	if c.RemoveAt("gone.mp4", histT0) {
		t.Fatal("a tombstone was removed again")
	}

	enc, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var w wireCollection
	if err := collDec.Unmarshal(enc, &w); err != nil || w.Version != 3 || len(w.Entries) != 3 {
		t.Fatalf("a collection with history encodes as version %d with %d entries (%v), want 3 and 3", w.Version, len(w.Entries), err)
	}
	d, err := DecodeCollection(enc)
	if err != nil || !reflect.DeepEqual(c, d) {
		t.Fatalf("version 3 round trip: %v\n%+v\n%+v", err, c, d)
	}
	if enc2, _ := d.Encode(); !bytes.Equal(enc, enc2) {
		t.Fatal("version 3 encoding is not deterministic")
	}
}

// TestCollectionOldVersions: collections written by the version 1 and
// version 2 encoders (testdata) still decode to what they held, with no
// history, and encode back to the same bytes: a collection without history
// is still written in the old versions.
func TestCollectionOldVersions(t *testing.T) {
	want := map[string]*Collection{"testdata/collection-v1.cbor": sampleCollection()}
	v2 := sampleCollection()
	v2.Entries[2].Chunks = HashBytes([]byte("chunk list"))
	want["testdata/collection-v2.cbor"] = v2
	for path, c := range want {
		old, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		d, err := DecodeCollection(old)
		if err != nil {
			t.Fatalf("%s does not decode: %v", path, err)
		}
		if !reflect.DeepEqual(d, c) || d.Tombstones != nil {
			t.Fatalf("%s decoded to %+v", path, d)
		}
		if b, err := d.Encode(); err != nil || !bytes.Equal(b, old) {
			t.Fatalf("%s does not encode back to its bytes (%v)", path, err)
		}
	}
}

// TestCollectionPrune: a count keeps the newest older versions; an age
// drops the versions replaced longer ago; a tombstone left without
// versions goes; KeptFiles names exactly the kept stored versions.
func TestCollectionPrune(t *testing.T) {
	c := historyCollection()
	if n := c.Prune(KeepAll, histT0.Add(1000*time.Hour)); n != 0 {
		t.Fatalf("KeepAll dropped %d", n)
	}
	kept := func(c *Collection) map[Hash]bool {
		m := map[Hash]bool{}
		c.KeptFiles(func(e Entry) bool {
			if e.Deleted || e.Name == "" {
				t.Fatalf("KeptFiles gave %+v", e)
			}
			m[e.Hash] = true
			return true
		})
		return m
	}
	all := kept(c)
	for _, s := range []string{"a1", "a2", "b1", "b2", "g"} {
		if !all[HashBytes([]byte(s))] {
			t.Fatalf("KeptFiles lacks %s", s)
		}
	}

	one := historyCollection()
	// a.txt drops nothing (1 version), b.jpg its oldest (b1), gone.mp4 nothing.
	if n := one.Prune(Retention{Keep: 1}, histT0); n != 1 {
		t.Fatalf("Keep 1 dropped %d, want 1", n)
	}
	if k := kept(one); k[HashBytes([]byte("b1"))] || !k[HashBytes([]byte("g"))] || len(k) != 4 {
		t.Fatalf("after Keep 1, kept %v", k)
	}

	aged := historyCollection()
	// At 5 h 40 with a 2 h 30 age: a1 was replaced when a.txt was last
	// put (hour 2: dropped), b.jpg's deletion at hour 4 (kept) and b1 by
	// the deletion at hour 3 (dropped), gone.mp4's version at hour 5 (kept).
	if n := aged.Prune(Retention{Keep: -1, MaxAge: 150 * time.Minute}, histT0.Add(340*time.Minute)); n != 2 {
		t.Fatalf("age prune dropped %d, want 2", n)
	}
	a, _ := aged.Get("a.txt")
	b, _ := aged.Get("b.jpg")
	if a.Versions != nil || len(b.Versions) != 1 || !b.Versions[0].Deleted || len(aged.Tombstones) != 1 {
		t.Fatalf("after the age prune: %+v %+v %+v", a, b, aged.Tombstones)
	}

	none := historyCollection()
	if n := none.Prune(Retention{}, histT0); n != 5 || len(none.Tombstones) != 0 {
		t.Fatalf("Keep 0 dropped %d (tombstones %d), want 5 and none left", n, len(none.Tombstones))
	}
	b2, err := none.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var w wireCollection
	if err := collDec.Unmarshal(b2, &w); err != nil || w.Version != 1 {
		t.Fatalf("a collection pruned of all history encodes as version %d, want 1 (%v)", w.Version, err)
	}
}

// TestCollectionVersionLimits: Encode refuses a name with more than
// MaxVersions older versions and a collection with more than
// MaxTotalVersions; Prune cuts a name back to MaxVersions.
func TestCollectionVersionLimits(t *testing.T) {
	v := Version{Hash: HashBytes([]byte("v")), Size: 1}
	c := &Collection{Entries: []Entry{{Name: "a", Hash: v.Hash, Size: 1, Versions: make([]Version, MaxVersions+1)}}}
	for i := range c.Entries[0].Versions {
		c.Entries[0].Versions[i] = v
	}
	var le *LimitError
	if _, err := c.Encode(); !errors.Is(err, ErrBadCollection) || !errors.As(err, &le) || le.Limit != MaxVersions {
		t.Fatalf("Encode over MaxVersions = %v", err)
	}
	if n := c.Prune(KeepAll, histT0); n != 1 {
		t.Fatalf("Prune over MaxVersions dropped %d, want 1", n)
	}
	if _, err := c.Encode(); err != nil {
		t.Fatal(err)
	}

	names := MaxTotalVersions/MaxVersions + 1
	many := &Collection{}
	for i := range names {
		e := Entry{Name: string(rune('a'+i%26)) + string(rune('a'+i/26)), Hash: v.Hash, Size: 1, Versions: c.Entries[0].Versions}
		many.Entries = append(many.Entries, e)
	}
	many.Entries = sortedByName(many.Entries)
	if _, err := many.Encode(); !errors.As(err, &le) || le.Limit != MaxTotalVersions {
		t.Fatalf("Encode over MaxTotalVersions = %v", err)
	}
	// The same over the wire: decoding stops at the total.
	many.Entries = many.Entries[:names-1]
	b, err := many.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var w wireCollection
	if err := collDec.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	w.Entries = append(w.Entries, w.Entries[0])
	w.Entries[len(w.Entries)-1].Name = "zzz"
	b, err = wireEnc.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeCollection(b); !errors.As(err, &le) || le.Limit != MaxTotalVersions {
		t.Fatalf("DecodeCollection over MaxTotalVersions = %v", err)
	}
}

func sortedByName(es []Entry) []Entry {
	c := &Collection{}
	for _, e := range es {
		vs := e.Versions
		c.Put(e)
		i, _ := find(c.Entries, e.Name)
		c.Entries[i].Versions = vs
	}
	return c.Entries
}

// FuzzCollectionHistory: a version 3 collection that decodes stays valid
// through the history operations: a Put over each name, a Remove of one,
// a Prune to MaxVersions, each still encodes and decodes to itself, and
// no live entry is ever a tombstone. Seeds: collections with history and
// tombstones made by the encoder, and broken variants.
func FuzzCollectionHistory(f *testing.F) {
	for _, c := range []*Collection{historyCollection(), sampleCollection()} {
		b, err := c.Encode()
		if err != nil {
			f.Fatal(err)
		}
		fuzzcorpus.Add(f, b)
	}
	pruned := historyCollection()
	pruned.Prune(Retention{Keep: 1}, histT0)
	b, err := pruned.Encode()
	if err != nil {
		f.Fatal(err)
	}
	fuzzcorpus.Add(f, b)
	f.Add(b[:len(b)-3])
	f.Add(bytes.Replace(b, []byte{0x08, 0xf5}, []byte{0x08, 0xf4}, 1)) // a tombstone unmarked
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCollection(b)
		if err != nil {
			if !errors.Is(err, ErrBadCollection) {
				t.Fatalf("error %v does not wrap ErrBadCollection", err)
			}
			return
		}
		roundTrip := func(what string) {
			b, err := c.Encode()
			if err != nil {
				t.Fatalf("after %s: %v", what, err)
			}
			d, err := DecodeCollection(b)
			if err != nil || !reflect.DeepEqual(c, d) {
				t.Fatalf("after %s the collection does not round-trip: %v", what, err)
			}
			for _, e := range c.Entries {
				if e.Deleted {
					t.Fatalf("after %s live entry %q is a tombstone", what, e.Name)
				}
			}
		}
		roundTrip("decode")
		if len(c.Tombstones) > 0 {
			tb := c.Tombstones[0]
			c.Put(tb.Versions[len(tb.Versions)-1].Entry(tb.Name))
			if e, ok := c.Get(tb.Name); !ok || len(e.Versions) != len(tb.Versions)+1 {
				t.Fatalf("a Put over tombstone %q kept %d versions, want %d", tb.Name, len(e.Versions), len(tb.Versions)+1)
			}
		}
		if len(c.Entries) > 0 {
			c.RemoveAt(c.Entries[0].Name, histT0)
		}
		c.Prune(KeepAll, histT0)
		roundTrip("put, remove and prune")
	})
}
