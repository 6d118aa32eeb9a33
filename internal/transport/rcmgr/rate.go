package rcmgr

import (
	"net/netip"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// RateLimit is a token bucket per peer and one per prefix: Rate tokens per
// second, at most Burst saved. A rate <= 0 turns its scope off.
type RateLimit struct {
	PeerRate    float64 // tokens per second per node ID
	PeerBurst   int     // <= 0: PeerRate (one second's worth)
	PrefixRate  float64 // tokens per second per IPv4 /24 or IPv6 /48
	PrefixBurst int     // <= 0: PrefixRate
}

// Rate limits how often one kind of request is served, per peer and per
// prefix (local addresses as the package doc says). Buckets idle for a
// minute are forgotten. Make one with Manager.Rate; safe for concurrent
// use.
type Rate struct {
	kind  Kind
	lim   RateLimit
	local bool
	m     *Manager

	mu        sync.Mutex
	peer      map[key.NodeID]*bucket
	pfx       map[netip.Prefix]*bucket
	lastPrune time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// fill refills b up to burst at rate and reports whether it holds a token.
func (b *bucket) fill(now time.Time, rate, burst float64) bool {
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	return b.tokens >= 1
}

func newRate(m *Manager, kind Kind, lim RateLimit, local bool) *Rate {
	if lim.PeerBurst <= 0 {
		lim.PeerBurst = max(1, int(lim.PeerRate))
	}
	if lim.PrefixBurst <= 0 {
		lim.PrefixBurst = max(1, int(lim.PrefixRate))
	}
	return &Rate{kind: kind, lim: lim, local: local, m: m,
		peer: map[key.NodeID]*bucket{}, pfx: map[netip.Prefix]*bucket{}}
}

// Allow takes one token from peer's bucket and from addr's prefix bucket,
// or neither: it refuses with a *LimitError (scope peer or prefix, Limit
// the bucket's burst) when either is empty, and counts the refusal.
func (r *Rate) Allow(peer key.NodeID, addr netip.Addr, now time.Time) error {
	var err *LimitError
	r.mu.Lock()
	if now.Sub(r.lastPrune) > time.Minute {
		for id, b := range r.peer {
			if now.Sub(b.last) > time.Minute {
				delete(r.peer, id)
			}
		}
		for p, b := range r.pfx {
			if now.Sub(b.last) > time.Minute {
				delete(r.pfx, p)
			}
		}
		r.lastPrune = now
	}
	var pb, xb *bucket
	if r.lim.PeerRate > 0 && !peer.IsZero() {
		pb = r.peer[peer]
		if pb == nil {
			pb = &bucket{tokens: float64(r.lim.PeerBurst), last: now}
			r.peer[peer] = pb
		}
		if !pb.fill(now, r.lim.PeerRate, float64(r.lim.PeerBurst)) {
			err = &LimitError{Scope: ScopePeer, Key: peer.String(), Limit: r.lim.PeerBurst}
		}
	}
	if _, counts := addrScopes(addr, r.local); err == nil && r.lim.PrefixRate > 0 && counts {
		p := Prefix(addr)
		xb = r.pfx[p]
		if xb == nil {
			xb = &bucket{tokens: float64(r.lim.PrefixBurst), last: now}
			r.pfx[p] = xb
		}
		if !xb.fill(now, r.lim.PrefixRate, float64(r.lim.PrefixBurst)) {
			err = &LimitError{Scope: ScopePrefix, Key: p.String(), Limit: r.lim.PrefixBurst}
		}
	}
	if err == nil {
		if pb != nil {
			pb.tokens--
		}
		if xb != nil {
			xb.tokens--
		}
	}
	r.mu.Unlock()
	if err != nil {
		err.Kind = r.kind
		r.m.refused(err.Scope, r.kind)
		return err
	}
	return nil
}
