package dht

import (
	"bytes"
	"crypto/rand"
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
// (oldest first), and beside each bucket a replacement cache of at most k
// contacts seen while it was full (Maymounkov & Mazières 2002, §2.2 and
// §4.1). A newcomer to a full bucket takes the place of a stale contact
// if the bucket has one, else it goes to the cache. A contact that fails a
// request (failed) is replaced at once by the most recently seen contact
// of the cache; with an empty cache it stays, marked stale (an outage of
// this node's own network must not empty its table), until it has failed
// maxFails times in a row. Stale contacts are given to no one (closest)
// and not counted (size); any message from one makes it fresh again.
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
	repl    [256][]Contact     // replacement caches, least recently seen first
	fails   map[key.NodeID]int // failures in a row of contacts in the buckets; absent: fresh

	perBucket, perTable int
	allAddrs            bool // apply the diversity limit to loopback and private addresses too
	refused             func()
}

// maxFails is how many requests in a row a contact may fail before it
// leaves a bucket whose replacement cache is empty (the paper's §4.1
// suggests five).
const maxFails = 5

func newTable(self key.NodeID, k int) *table {
	return &table{self: self, k: k, fails: map[key.NodeID]int{}}
}

// seen records that c is alive: it moves to the tail of its bucket (with
// its address updated, no longer stale), or is appended if there is room,
// or takes the place of the bucket's first stale contact; failing all
// that it goes to the tail of the bucket's replacement cache (the oldest
// there dropped past k). It reports whether c is in the buckets afterwards.
func (t *table) seen(c Contact) bool {
	if c.ID == t.self || c.validate() != nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	bi := bucketIndex(t.self, c.ID)
	b := &t.buckets[bi]
	if i := slices.IndexFunc(*b, func(x Contact) bool { return x.ID == c.ID }); i >= 0 {
		*b = append(slices.Delete(*b, i, i+1), c)
		delete(t.fails, c.ID)
		return true
	}
	if !t.diverseLocked(*b, c) {
		if t.refused != nil {
			t.refused()
		}
		return false
	}
	if len(*b) >= t.k {
		i := slices.IndexFunc(*b, func(x Contact) bool { return t.fails[x.ID] > 0 })
		if i < 0 {
			r := &t.repl[bi]
			*r = slices.DeleteFunc(*r, func(x Contact) bool { return x.ID == c.ID })
			if len(*r) >= t.k {
				*r = slices.Delete(*r, 0, 1)
			}
			*r = append(*r, c)
			return false
		}
		delete(t.fails, (*b)[i].ID)
		*b = slices.Delete(*b, i, i+1)
	}
	*b = append(*b, c)
	return true
}

// failed records that a request to id failed and id is sure to be dead
// (deadMark). If id is in a bucket whose replacement cache holds a
// contact (within the IP diversity limits), the most recently seen one
// takes id's place; otherwise id stays, stale, and leaves after maxFails
// failures in a row. An id in a replacement cache leaves it. It reports
// whether id left the buckets.
func (t *table) failed(id key.NodeID) bool { return t.fail(id, true) }

// suspect records that a request to id failed, but id may be alive (it
// ran out its timeout once: deadMark): id stays in its bucket, stale, and
// leaves it after maxFails failures in a row; no replacement takes its
// place yet, as on an overloaded machine that would evict the live but
// slow nearest nodes of the records this node writes.
func (t *table) suspect(id key.NodeID) bool { return t.fail(id, false) }

func (t *table) fail(id key.NodeID, replace bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	bi := bucketIndex(t.self, id)
	b, r := &t.buckets[bi], &t.repl[bi]
	*r = slices.DeleteFunc(*r, func(x Contact) bool { return x.ID == id })
	i := slices.IndexFunc(*b, func(x Contact) bool { return x.ID == id })
	if i < 0 {
		return false
	}
	c0 := (*b)[i]
	*b = slices.Delete(*b, i, i+1)
	for j := len(*r) - 1; replace && j >= 0; j-- {
		c := (*r)[j]
		if t.diverseLocked(*b, c) {
			*r = slices.Delete(*r, j, j+1)
			*b = append(*b, c)
			delete(t.fails, id)
			return true
		}
	}
	// No replacement: put it back, at the head (oldest), stale.
	if t.fails[id]+1 >= maxFails {
		delete(t.fails, id)
		return true
	}
	t.fails[id]++
	*b = slices.Insert(*b, 0, c0)
	return false
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

// remove drops id from its bucket and replacement cache (a client, or
// with Options.FixedTimeouts a contact whose request failed), without
// promoting a replacement.
func (t *table) remove(id key.NodeID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	bi := bucketIndex(t.self, id)
	is := func(x Contact) bool { return x.ID == id }
	t.buckets[bi] = slices.DeleteFunc(t.buckets[bi], is)
	t.repl[bi] = slices.DeleteFunc(t.repl[bi], is)
	delete(t.fails, id)
}

// closest returns up to n contacts nearest to target, excluding skip and
// stale contacts.
func (t *table) closest(target [32]byte, n int, skip key.NodeID) []Contact {
	t.mu.Lock()
	var all []Contact
	for _, b := range t.buckets {
		for _, c := range b {
			if c.ID != skip && t.fails[c.ID] == 0 {
				all = append(all, c)
			}
		}
	}
	t.mu.Unlock()
	sortByDistance(target, all)
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// size returns the number of contacts that are not stale.
func (t *table) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, b := range t.buckets {
		n += len(b)
	}
	return n - len(t.fails)
}

// live returns the contacts of the buckets that are not stale, bucket by
// bucket.
func (t *table) live() []Contact {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Contact
	for _, b := range t.buckets {
		for _, c := range b {
			if t.fails[c.ID] == 0 {
				out = append(out, c)
			}
		}
	}
	return out
}

// all returns every contact of the buckets, stale ones too, bucket by
// bucket.
func (t *table) all() []Contact {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Contact
	for _, b := range t.buckets {
		out = append(out, b...)
	}
	return out
}

// emptyFar returns the buckets farther from this node than its nearest
// live contact's (shorter common prefix) that hold no live contact: the
// parts of the key space a lookup from this node cannot start in.
func (t *table) emptyFar() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := func(i int) bool {
		return slices.ContainsFunc(t.buckets[i], func(c Contact) bool { return t.fails[c.ID] == 0 })
	}
	deepest := -1
	for i := len(t.buckets) - 1; i >= 0; i-- {
		if live(i) {
			deepest = i
			break
		}
	}
	var out []int
	for i := range deepest {
		if !live(i) {
			out = append(out, i)
		}
	}
	return out
}

// randomInBucket returns a random ID whose common prefix with self is
// exactly i bits long (bucketIndex(self, id) == i), 0 <= i < 256.
func randomInBucket(self key.NodeID, i int) key.NodeID {
	var id key.NodeID
	rand.Read(id[:])
	for b := range i / 8 {
		id[b] = self[b]
	}
	byteI, bit := i/8, uint(i%8)
	keep := byte(0xff) << (8 - bit) // the bits of self kept in byte byteI
	flip := byte(0x80) >> bit       // the first bit that differs
	id[byteI] = self[byteI]&keep | (^self[byteI])&flip | id[byteI]&^(keep|flip)
	return id
}
