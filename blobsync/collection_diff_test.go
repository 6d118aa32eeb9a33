package blobsync

import (
	"reflect"
	"testing"
	"time"
)

func TestDiffCollections(t *testing.T) {
	e := func(name, content string) Entry {
		return Entry{Name: name, Hash: HashBytes([]byte(content)), Size: int64(len(content))}
	}
	coll := func(es ...Entry) *Collection {
		c := &Collection{}
		for _, x := range es {
			c.Put(x)
		}
		return c
	}
	readded := e("same.txt", "s")
	readded.CreatedAt = time.Unix(1, 0)
	for _, tc := range []struct {
		name     string
		old, new *Collection
		want     []EntryChange
	}{
		{"both nil", nil, nil, nil},
		{"from nothing", nil, coll(e("b", "1"), e("a", "2")),
			[]EntryChange{{Op: EntryAdded, New: e("a", "2")}, {Op: EntryAdded, New: e("b", "1")}}},
		{"to nothing", coll(e("a", "2")), &Collection{},
			[]EntryChange{{Op: EntryRemoved, Old: e("a", "2")}}},
		{"mixed",
			coll(e("a", "1"), e("c", "3"), e("d", "4"), e("same.txt", "s")),
			coll(e("b", "2"), e("c", "3"), e("d", "44"), e("e", "5"), readded),
			[]EntryChange{
				{Op: EntryRemoved, Old: e("a", "1")},
				{Op: EntryAdded, New: e("b", "2")},
				{Op: EntryChanged, Old: e("d", "4"), New: e("d", "44")},
				{Op: EntryAdded, New: e("e", "5")},
			}},
		{"equal", coll(e("x", "1")), coll(e("x", "1")), nil},
	} {
		if got := DiffCollections(tc.old, tc.new); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	if EntryChanged.String() != "changed" || ChangeOp(9).String() != "unknown" {
		t.Error("ChangeOp.String")
	}
}
