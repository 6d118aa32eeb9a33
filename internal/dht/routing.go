package dht

import (
	"bytes"
	"math/bits"
	"slices"
	"sync"

	"github.com/dwebkit/dweb/internal/key"
)

// distance is the XOR metric of Kademlia (Maymounkov & Mazières 2002).
func distance(a, b [32]byte) (d [32]byte) {
	for i := range d {
		d[i] = a[i] ^ b[i]
	}
	return d
}

// closer reports whether a is closer to target than b.
func closer(target, a, b [32]byte) bool {
	da, db := distance(target, a), distance(target, b)
	return bytes.Compare(da[:], db[:]) < 0
}

// sortByDistance sorts cs by XOR distance to target, nearest first.
func sortByDistance(target [32]byte, cs []Contact) {
	slices.SortFunc(cs, func(a, b Contact) int {
		da, db := distance(target, a.ID), distance(target, b.ID)
		return bytes.Compare(da[:], db[:])
	})
}

// bucketIndex is the length of the common prefix of self and id: 0..255
// (255 also for id == self, which the table never holds).
func bucketIndex(self, id key.NodeID) int {
	for i := range self {
		if x := self[i] ^ id[i]; x != 0 {
			return i*8 + bits.LeadingZeros8(x)
		}
	}
	return 255
}

// table is the Kademlia routing table: 256 buckets by common-prefix length
// with self, each holding at most k contacts in least-recently-seen order
// (oldest first). Policy when a bucket is full: the newcomer is dropped;
// contacts that fail an RPC are removed (remove), which makes room. The
// paper pings the oldest first; that, and a replacement cache, come with the
// churn work.
//
// IP diversity (against eclipse attacks, as go-libp2p-kad-dht's peer
// diversity filter): at most perBucket contacts of one IP prefix (ipPrefix)
// in a bucket and perTable in the table; 0 means no limit. refused is called
// for each contact the limit keeps out.
type table struct {
	self    key.NodeID
	k       int
	mu      sync.Mutex
	buckets [256][]Contact

	perBucket, perTable int
	allAddrs            bool // apply the diversity limit to loopback and private addresses too
	refused             func()
}

func newTable(self key.NodeID, k int) *table { return &table{self: self, k: k} }

// seen records that c is alive: it moves to the tail of its bucket (with
// its address updated), or is appended if there is room. It reports whether
// c is in the table afterwards.
func (t *table) seen(c Contact) bool {
	if c.ID == t.self || c.validate() != nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := &t.buckets[bucketIndex(t.self, c.ID)]
	if i := slices.IndexFunc(*b, func(x Contact) bool { return x.ID == c.ID }); i >= 0 {
		*b = append(slices.Delete(*b, i, i+1), c)
		return true
	}
	if len(*b) >= t.k {
		return false
	}
	if !t.diverseLocked(*b, c) {
		if t.refused != nil {
			t.refused()
		}
		return false
	}
	*b = append(*b, c)
	return true
}

// diverseLocked reports whether adding c to bucket b keeps within the IP
// diversity limits.
func (t *table) diverseLocked(b []Contact, c Contact) bool {
	if t.perBucket <= 0 && t.perTable <= 0 {
		return true
	}
	p, ok := ipPrefix(c.Addr.Addr(), t.allAddrs)
	if !ok {
		return true
	}
	same := func(x Contact) bool {
		q, ok := ipPrefix(x.Addr.Addr(), t.allAddrs)
		return ok && q == p
	}
	if t.perBucket > 0 {
		n := 0
		for _, x := range b {
			if same(x) {
				n++
			}
		}
		if n >= t.perBucket {
			return false
		}
	}
	if t.perTable > 0 {
		n := 0
		for _, bk := range t.buckets {
			for _, x := range bk {
				if same(x) {
					n++
				}
			}
		}
		if n >= t.perTable {
			return false
		}
	}
	return true
}

// remove drops id (after a failed RPC).
func (t *table) remove(id key.NodeID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := &t.buckets[bucketIndex(t.self, id)]
	*b = slices.DeleteFunc(*b, func(x Contact) bool { return x.ID == id })
}

// closest returns up to n contacts nearest to target, excluding skip.
func (t *table) closest(target [32]byte, n int, skip key.NodeID) []Contact {
	all := t.all()
	all = slices.DeleteFunc(all, func(c Contact) bool { return c.ID == skip })
	sortByDistance(target, all)
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// size returns the number of contacts.
func (t *table) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, b := range t.buckets {
		n += len(b)
	}
	return n
}

// all returns every contact, bucket by bucket.
func (t *table) all() []Contact {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Contact
	for _, b := range t.buckets {
		out = append(out, b...)
	}
	return out
}
