package dht

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
)

// Defaults of the limits in Options. A node ID costs nothing to make, so
// every per-peer limit has a per-address one beside it (rcmgr's IP and
// prefix scopes: one IPv4 /24 or IPv6 /48): fresh IDs from one address or
// network share its quota instead of each getting a new one.
const (
	DefaultRequestRate       = 500  // requests per second per peer
	DefaultRequestBurst      = 2000 // requests a peer may send at once
	DefaultPrefixRequestRate = 2000 // requests per second from one /24 or /48, all its peers together
	DefaultPrefixBurst       = 8000 // requests one /24 or /48 may send at once
	DefaultMaxRecordsPerPeer = 8192 // records stored here because of one peer's STOREs
	// DefaultMaxRecordsPerIP is the records stored because of STOREs from
	// one IP address, whatever node IDs it uses: as many as one peer's.
	DefaultMaxRecordsPerIP = 8192
	// DefaultMaxRecordsPerPrefix is the records stored because of STOREs
	// from one /24 or /48: two peers' worth, so a network with a few
	// members behind NAT is not squeezed, and one with a thousand fresh
	// IDs gets no more.
	DefaultMaxRecordsPerPrefix = 16384
	DefaultMaxWatchesPerPeer   = 256  // live watches one peer may hold on this node
	DefaultMaxWatchesPerPrefix = 1024 // live watches one /24 or /48 may hold, all its peers together
	DefaultMaxPerIPPrefix      = 2    // contacts per IP prefix per routing-table bucket
	DefaultMaxPerIPPrefixAll   = 8    // contacts per IP prefix in the whole routing table
)

// Kinds of the DHT's counts in the node's resource manager (the "kind"
// label of dweb_rcmgr_refused_total and dweb_rcmgr_in_use).
const (
	KindRecord  rcmgr.Kind = "dht_record"  // records stored because of a peer's STOREs
	KindWatch   rcmgr.Kind = "dht_watch"   // watches served to a peer
	KindRequest rcmgr.Kind = "dht_request" // requests, rate-limited
)

// quotas charges the records this node stored because a peer sent them (a
// STORE that created the record here) to the peer, its IP and its prefix.
// The counts live in memory: a restart forgets them, which only makes the
// quota more lenient.
type quotas struct {
	q  *rcmgr.Quota
	mu sync.Mutex
	by map[key.RecordKey]rcmgr.Charge
}

func newQuotas(q *rcmgr.Quota) *quotas {
	return &quotas{q: q, by: map[key.RecordKey]rcmgr.Charge{}}
}

// take charges record k to peer, or fails with ErrQuota wrapping the
// *rcmgr.LimitError that names the full scope.
func (q *quotas) take(peer transport.Peer, k key.RecordKey) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.by[k]; ok {
		return nil
	}
	c, err := q.q.Take(peer.ID, peer.Addr.Addr())
	if err != nil {
		return fmt.Errorf("%w: records: %w", ErrQuota, err)
	}
	q.by[k] = c
	return nil
}

// release returns record k's charge (it expired, or was not stored after
// all).
func (q *quotas) release(k key.RecordKey) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c, ok := q.by[k]
	if !ok {
		return
	}
	delete(q.by, k)
	q.q.Release(c)
}

// ipPrefix returns the diversity group of a: its /24 for IPv4, its /48 for
// IPv6 (rcmgr.Prefix; libp2p's kbucket diversity filter groups the same
// way), and whether the limit applies to it at all: only global unicast,
// non-private addresses count unless all is set, because nodes on one
// host or one LAN are one operator's, not an eclipse attacker's.
func ipPrefix(a netip.Addr, all bool) (netip.Prefix, bool) {
	a = a.Unmap()
	if !all && (!a.IsGlobalUnicast() || a.IsPrivate()) {
		return netip.Prefix{}, false
	}
	p := rcmgr.Prefix(a)
	return p, p.IsValid()
}
