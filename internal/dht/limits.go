package dht

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// Defaults of the limits in Options.
const (
	DefaultRequestRate       = 500  // requests per second per peer
	DefaultRequestBurst      = 2000 // requests a peer may send at once
	DefaultMaxRecordsPerPeer = 8192 // records stored here because of one peer's STOREs
	DefaultMaxWatchesPerPeer = 256  // live watches one peer may hold on this node
	DefaultMaxPerIPPrefix    = 2    // contacts per IP prefix per routing-table bucket
	DefaultMaxPerIPPrefixAll = 8    // contacts per IP prefix in the whole routing table
)

// limiter is a per-peer token bucket: rate tokens per second, at most burst
// saved. Peers idle for a minute are forgotten.
type limiter struct {
	rate, burst float64
	mu          sync.Mutex
	peers       map[key.NodeID]*bucketState
	lastPrune   time.Time
}

type bucketState struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), peers: map[key.NodeID]*bucketState{}}
}

// allow takes one token for peer, reporting whether there was one. A
// limiter with rate <= 0 allows everything.
func (l *limiter) allow(peer key.NodeID, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) > time.Minute {
		for id, b := range l.peers {
			if now.Sub(b.last) > time.Minute {
				delete(l.peers, id)
			}
		}
		l.lastPrune = now
	}
	b, ok := l.peers[peer]
	if !ok {
		b = &bucketState{tokens: l.burst, last: now}
		l.peers[peer] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// quotas counts, per peer, the records this node stored because that peer
// sent them (a STORE that created the record here). The counts live in
// memory: a restart forgets them, which only makes the quota more lenient.
type quotas struct {
	max   int
	mu    sync.Mutex
	count map[key.NodeID]int
	by    map[key.RecordKey]key.NodeID
}

func newQuotas(max int) *quotas {
	return &quotas{max: max, count: map[key.NodeID]int{}, by: map[key.RecordKey]key.NodeID{}}
}

// take charges record k to peer, or fails with ErrQuota.
func (q *quotas) take(peer key.NodeID, k key.RecordKey) error {
	if q.max <= 0 {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.by[k]; ok {
		return nil
	}
	if q.count[peer] >= q.max {
		return fmt.Errorf("%w: %d records stored for peer %s", ErrQuota, q.max, peer)
	}
	q.count[peer]++
	q.by[k] = peer
	return nil
}

// release returns record k's charge (it expired, or was not stored after
// all).
func (q *quotas) release(k key.RecordKey) {
	q.mu.Lock()
	defer q.mu.Unlock()
	peer, ok := q.by[k]
	if !ok {
		return
	}
	delete(q.by, k)
	if q.count[peer]--; q.count[peer] <= 0 {
		delete(q.count, peer)
	}
}

// ipPrefix returns the diversity group of a: its /24 for IPv4, its /48 for
// IPv6 (libp2p's kbucket diversity filter groups the same way), and whether
// the limit applies to it at all: only global unicast, non-private
// addresses count unless all is set, because nodes on one host or one LAN
// are one operator's, not an eclipse attacker's.
func ipPrefix(a netip.Addr, all bool) (netip.Prefix, bool) {
	a = a.Unmap()
	if !all && (!a.IsGlobalUnicast() || a.IsPrivate()) {
		return netip.Prefix{}, false
	}
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}
