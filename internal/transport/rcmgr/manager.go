package rcmgr

import (
	"net/netip"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// Manager is one node's resource manager: the transport endpoint's counts
// of connections, streams and handshakes, and the quotas and rates the
// layers above make with Quota and Rate, all refusing with *LimitError and
// counted in one set of metrics. Safe for concurrent use. Methods on a nil
// *Manager work as a manager with no metrics (Quota and Rate), so a layer
// run without one still limits.
type Manager struct {
	lim                        Limits
	conns, streams, handshakes *Quota
	metrics                    *metrics

	mu     sync.Mutex
	quotas []*Quota // every quota, for the in-use gauge

	rmu     sync.Mutex
	recent  map[netip.AddrPort]time.Time // connection attempts refused lately
	pruneAt time.Time
}

// recentRefusal is how long a refused connection attempt's source address
// and port are remembered, so that the attempt's further Initial packets
// (a ClientHello with a post-quantum key share takes two, and a client
// retransmits) are refused without counting again; maxRecent bounds the
// memory of them.
const (
	recentRefusal = 2 * time.Second
	maxRecent     = 4096
)

// New returns a manager with lim (its zero fields from PhoneLimits).
func New(lim Limits) *Manager {
	lim = lim.WithDefaults(PhoneLimits())
	m := &Manager{lim: lim, metrics: newMetrics()}
	m.conns = m.Quota(KindConn, lim.Conns)
	m.streams = m.Quota(KindStream, lim.Streams)
	m.handshakes = m.Quota(KindHandshake, lim.Handshakes)
	return m
}

// Limits returns the manager's limits (after defaults).
func (m *Manager) Limits() Limits { return m.lim }

// Quota returns a new quota of kind with limit lim (zero fields: no
// limit), counted in m's metrics, with m's rule for local addresses.
func (m *Manager) Quota(kind Kind, lim Limit) *Quota {
	if m == nil {
		return newQuota(nil, kind, lim, false)
	}
	q := newQuota(m, kind, lim, m.lim.LocalAddrs)
	m.mu.Lock()
	m.quotas = append(m.quotas, q)
	m.mu.Unlock()
	return q
}

// Rate returns a new rate limiter of kind, counted in m's metrics, with
// m's rule for local addresses.
func (m *Manager) Rate(kind Kind, lim RateLimit) *Rate {
	if m == nil {
		return newRate(nil, kind, lim, false)
	}
	return newRate(m, kind, lim, m.lim.LocalAddrs)
}

// RetryNeeded reports whether QUIC handshakes should first prove their
// source address (a Retry round trip, RFC 9000 §8.1.2): when half the
// node's handshake budget is in use. The address scopes key on the
// address of a connection's first packet, which a flood can spoof; after
// a Retry it cannot.
func (m *Manager) RetryNeeded() bool {
	l := m.lim.Handshakes.System
	return l > 0 && 2*m.handshakes.total() >= l
}

// Conn is one inbound connection's share of the manager, from its first
// packet to its end. Safe for concurrent use.
type Conn struct {
	m         *Manager
	mu        sync.Mutex
	conn      Charge // address scopes and total, from AdmitConn
	handshake Charge // until Handshaken
	peer      Charge // from Handshaken
	closed    bool
}

// AdmitConn admits a new inbound connection attempt from the UDP address
// from, before any crypto: a connection and a handshake in its IP's and
// prefix's scopes and in total. It refuses with a *LimitError; one
// attempt's further packets (the same address and port within 2 s) are
// refused without being counted again. Close the Conn when the connection
// ends, however it ends.
func (m *Manager) AdmitConn(from netip.AddrPort) (*Conn, error) {
	now := time.Now()
	m.rmu.Lock()
	t, seen := m.recent[from]
	count := !seen || now.Sub(t) > recentRefusal
	m.rmu.Unlock()
	addr := from.Addr()
	cc := Charge{sys: true}
	if ip, pfx := addrScopes(addr, m.lim.LocalAddrs); ip {
		cc.ip = addr.Unmap()
		if pfx {
			cc.pfx = Prefix(addr)
		}
	}
	err := m.conns.take(cc, count)
	if err == nil {
		if err = m.handshakes.take(cc, count); err != nil {
			m.conns.Release(cc)
		}
	}
	if err != nil {
		m.noteRefusal(from, now)
		return nil, err
	}
	return &Conn{m: m, conn: cc, handshake: cc}, nil
}

func (m *Manager) noteRefusal(from netip.AddrPort, now time.Time) {
	m.rmu.Lock()
	defer m.rmu.Unlock()
	if m.recent == nil {
		m.recent = map[netip.AddrPort]time.Time{}
	}
	if len(m.recent) >= maxRecent || now.After(m.pruneAt) {
		for a, t := range m.recent {
			if now.Sub(t) > recentRefusal {
				delete(m.recent, a)
			}
		}
		m.pruneAt = now.Add(recentRefusal)
		if len(m.recent) >= maxRecent {
			return
		}
	}
	m.recent[from] = now
}

// Handshaken records that the connection's handshake proved peer: its
// handshake is given back and it counts as one of peer's connections, or
// is refused with a *LimitError (then close the connection, and the Conn).
func (c *Conn) Handshaken(peer key.NodeID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m.handshakes.Release(c.handshake)
	c.handshake = Charge{}
	if c.closed {
		return nil
	}
	if err := c.m.conns.take(Charge{peer: peer}, true); err != nil {
		return err
	}
	c.peer = Charge{peer: peer}
	return nil
}

// Close gives back everything the connection holds. Idempotent.
func (c *Conn) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.m.handshakes.Release(c.handshake)
	c.m.conns.Release(c.conn)
	c.m.conns.Release(c.peer)
	c.handshake, c.conn, c.peer = Charge{}, Charge{}, Charge{}
}

// Stream is one inbound stream's share of the manager, from its accept to
// its handler's return. Safe for concurrent use.
type Stream struct {
	m         *Manager
	mu        sync.Mutex
	stream    Charge
	handshake Charge // until Opened
}

// AdmitStream admits an inbound stream of peer, whose connection comes
// from addr: a stream and a handshake (its opening) in every scope. It
// refuses with a *LimitError; the caller then resets the stream. Close the
// Stream when its handler returns.
func (m *Manager) AdmitStream(peer key.NodeID, addr netip.Addr) (*Stream, error) {
	sc, err := m.streams.Take(peer, addr)
	if err != nil {
		return nil, err
	}
	hc, err := m.handshakes.Take(peer, addr)
	if err != nil {
		m.streams.Release(sc)
		return nil, err
	}
	return &Stream{m: m, stream: sc, handshake: hc}, nil
}

// Opened gives back the stream's handshake: it is through its opening.
// Idempotent.
func (s *Stream) Opened() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m.handshakes.Release(s.handshake)
	s.handshake = Charge{}
}

// Close gives back everything the stream holds. Idempotent.
func (s *Stream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m.handshakes.Release(s.handshake)
	s.m.streams.Release(s.stream)
	s.handshake, s.stream = Charge{}, Charge{}
}

// Usage is how many of each transport kind the node holds now.
type Usage struct {
	Conns, Streams, Handshakes int
}

// Usage returns the node-wide counts of the transport kinds.
func (m *Manager) Usage() Usage {
	return Usage{Conns: m.conns.total(), Streams: m.streams.total(), Handshakes: m.handshakes.total()}
}
