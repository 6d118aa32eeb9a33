package rcmgr

import (
	"net/netip"
	"sync"

	"github.com/dwebkit/dweb/internal/key"
)

// Quota counts one kind of resource in the four scopes and refuses what is
// over its Limit. Make one with Manager.Quota; safe for concurrent use.
type Quota struct {
	kind  Kind
	lim   Limit
	local bool     // count local addresses in the address scopes
	m     *Manager // refusals are counted in its metrics; nil: none

	mu   sync.Mutex
	peer map[key.NodeID]int
	ip   map[netip.Addr]int
	pfx  map[netip.Prefix]int
	sys  int
}

// Charge is what one Take counted, for Release to give back. The zero
// Charge holds nothing.
type Charge struct {
	peer key.NodeID   // zero: not counted per peer
	ip   netip.Addr   // invalid: not counted per IP
	pfx  netip.Prefix // invalid: not counted per prefix
	sys  bool
}

// Peer is the node ID the charge was counted against (zero if none).
func (c Charge) Peer() key.NodeID { return c.peer }

func newQuota(m *Manager, kind Kind, lim Limit, local bool) *Quota {
	return &Quota{
		kind: kind, lim: lim, local: local, m: m,
		peer: map[key.NodeID]int{},
		ip:   map[netip.Addr]int{},
		pfx:  map[netip.Prefix]int{},
	}
}

// Kind is what the quota counts.
func (q *Quota) Kind() Kind { return q.kind }

// Limit is the quota's limit (after defaults).
func (q *Quota) Limit() Limit { return q.lim }

// Take counts one resource for peer (zero: no peer scope) coming from addr
// (invalid: no address scopes; local addresses as the package doc says)
// and in total, or refuses with a *LimitError naming the narrowest full
// scope; a refusal counts nothing and is counted in the manager's metrics.
func (q *Quota) Take(peer key.NodeID, addr netip.Addr) (Charge, error) {
	c := Charge{peer: peer, sys: true}
	ip, pfx := addrScopes(addr, q.local)
	if ip {
		c.ip = addr.Unmap()
	}
	if pfx {
		c.pfx = Prefix(addr)
	}
	if err := q.take(c, true); err != nil {
		return Charge{}, err
	}
	return c, nil
}

// take counts c in the scopes it names, all or none; count says whether a
// refusal goes to the metrics.
func (q *Quota) take(c Charge, count bool) error {
	q.mu.Lock()
	var err *LimitError
	switch {
	case !c.peer.IsZero() && full(q.peer[c.peer], q.lim.Peer):
		err = &LimitError{Scope: ScopePeer, Key: c.peer.String(), Limit: q.lim.Peer}
	case c.ip.IsValid() && full(q.ip[c.ip], q.lim.IP):
		err = &LimitError{Scope: ScopeIP, Key: c.ip.String(), Limit: q.lim.IP}
	case c.pfx.IsValid() && full(q.pfx[c.pfx], q.lim.Prefix):
		err = &LimitError{Scope: ScopePrefix, Key: c.pfx.String(), Limit: q.lim.Prefix}
	case c.sys && full(q.sys, q.lim.System):
		err = &LimitError{Scope: ScopeSystem, Limit: q.lim.System}
	}
	if err == nil {
		if !c.peer.IsZero() {
			q.peer[c.peer]++
		}
		if c.ip.IsValid() {
			q.ip[c.ip]++
		}
		if c.pfx.IsValid() {
			q.pfx[c.pfx]++
		}
		if c.sys {
			q.sys++
		}
	}
	q.mu.Unlock()
	if err != nil {
		err.Kind = q.kind
		if count {
			q.m.refused(err.Scope, q.kind)
		}
		return err
	}
	return nil
}

func full(n, limit int) bool { return limit > 0 && n >= limit }

// Release gives back what c counted. Releasing the zero Charge does
// nothing; releasing one Charge twice is a bug the counts would show.
func (q *Quota) Release(c Charge) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !c.peer.IsZero() {
		dec(q.peer, c.peer)
	}
	if c.ip.IsValid() {
		dec(q.ip, c.ip)
	}
	if c.pfx.IsValid() {
		dec(q.pfx, c.pfx)
	}
	if c.sys && q.sys > 0 {
		q.sys--
	}
}

func dec[K comparable](m map[K]int, k K) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

// Used returns how many resources the quota holds in total, for peer, and
// in addr's IP and prefix scopes (0 for scopes addr does not count in).
func (q *Quota) Used(peer key.NodeID, addr netip.Addr) (total, perPeer, perIP, perPrefix int) {
	ip, pfx := addrScopes(addr, q.local)
	q.mu.Lock()
	defer q.mu.Unlock()
	total, perPeer = q.sys, q.peer[peer]
	if ip {
		perIP = q.ip[addr.Unmap()]
	}
	if pfx {
		perPrefix = q.pfx[Prefix(addr)]
	}
	return
}

func (q *Quota) total() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.sys
}
