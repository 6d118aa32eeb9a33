package dht

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/dwebkit/dweb/internal/key"
)

// TestRandomInBucket: the IDs drawn for a bucket's refresh fall in it.
func TestRandomInBucket(t *testing.T) {
	self := key.NewKeypair().ID()
	for i := range 256 {
		if got := bucketIndex(self, randomInBucket(self, i)); got != i {
			t.Fatalf("randomInBucket(%d) is in bucket %d", i, got)
		}
	}
}

// TestEmptyFar: the empty buckets farther than the nearest contact's are
// the ones to refresh; a stale contact does not fill its bucket.
func TestEmptyFar(t *testing.T) {
	self := key.NewKeypair().ID()
	tb := newTable(self, DefaultK)
	if got := tb.emptyFar(); len(got) != 0 {
		t.Fatalf("empty table: %v", got)
	}
	add := func(i int) Contact {
		c := Contact{ID: randomInBucket(self, i), Addr: netip.MustParseAddrPort("10.0.0.1:4433")}
		tb.seen(c)
		return c
	}
	add(1)
	add(5)
	stale := add(3)
	if got := tb.emptyFar(); !slices.Equal(got, []int{0, 2, 4}) {
		t.Fatalf("emptyFar = %v, want [0 2 4]", got)
	}
	tb.suspect(stale.ID)
	if got := tb.emptyFar(); !slices.Equal(got, []int{0, 2, 3, 4}) {
		t.Fatalf("with bucket 3's contact stale: %v, want [0 2 3 4]", got)
	}
}
