package rcmgr

// Scope is where a count is kept. The values are metric labels.
type Scope string

// The scopes, narrowest first.
const (
	ScopePeer   Scope = "peer"   // one node ID
	ScopeIP     Scope = "ip"     // one IP address
	ScopePrefix Scope = "prefix" // one IPv4 /24 or IPv6 /48 (Prefix)
	ScopeSystem Scope = "system" // the whole node
)

// Kind is what is counted. The values are metric labels; packages above
// the transport declare their own (the DHT's "dht_record", a relay's
// "relay_reservation").
type Kind string

// The kinds the transport endpoint counts.
const (
	KindConn      Kind = "conn"      // inbound QUIC connections
	KindStream    Kind = "stream"    // inbound streams with a running handler
	KindHandshake Kind = "handshake" // QUIC handshakes in progress and streams in their opening
)

// Limit is the most of one kind each scope may hold. Zero: the default
// (the preset's value); negative: no limit.
type Limit struct {
	Peer   int // per node ID
	IP     int // per IP address
	Prefix int // per IPv4 /24 or IPv6 /48
	System int // in total
}

// WithDefaults returns l with its zero fields taken from d.
func (l Limit) WithDefaults(d Limit) Limit {
	def := func(v *int, dv int) {
		if *v == 0 {
			*v = dv
		}
	}
	def(&l.Peer, d.Peer)
	def(&l.IP, d.IP)
	def(&l.Prefix, d.Prefix)
	def(&l.System, d.System)
	return l
}

// of returns the limit of scope s; <= 0 means none.
func (l Limit) of(s Scope) int {
	switch s {
	case ScopePeer:
		return l.Peer
	case ScopeIP:
		return l.IP
	case ScopePrefix:
		return l.Prefix
	}
	return l.System
}

// Limits are the transport endpoint's limits. The zero value means
// PhoneLimits.
type Limits struct {
	// Conns bounds inbound QUIC connections. The address scopes count a
	// connection from its first packet; the peer scope once its TLS
	// handshake has proved the node ID.
	Conns Limit
	// Streams bounds inbound streams while their handler runs. The peer
	// limit is also each connection's QUIC stream credit
	// (MaxIncomingStreams), so a peer cannot even open more on one
	// connection.
	Streams Limit
	// Handshakes bounds work not yet past its opening: QUIC handshakes in
	// progress (address scopes: the peer is not known yet) and inbound
	// streams before their handler calls transport.Opened.
	Handshakes Limit
	// LocalAddrs counts loopback, private and link-local addresses in the
	// IP and prefix scopes like any other (see the package doc); for tests
	// that emulate many networks on loopback.
	LocalAddrs bool
}

// WithDefaults returns l with its zero limits taken from d. LocalAddrs is
// l's.
func (l Limits) WithDefaults(d Limits) Limits {
	l.Conns = l.Conns.WithDefaults(d.Conns)
	l.Streams = l.Streams.WithDefaults(d.Streams)
	l.Handshakes = l.Handshakes.WithDefaults(d.Handshakes)
	return l
}

// What one resource costs the node, measured (docs/limits.md): an inbound
// connection about 100 KiB (quic-go's state; 65 KiB of heap), a stream
// with a running handler about 15 KiB (its goroutine's stack and quic-go's
// stream), and a stream in its opening up to 98 KiB more (the DHT
// allocates the request a frame header announces, at most
// dht.MaxMessageSize, before it reads the body).

// PhoneLimits are the limits of a node on a phone or a laptop: a member of
// a few small groups, often behind NAT, on a device whose memory and
// battery belong to its user. At these totals strangers can make it hold
// about 50 MB at worst (128 connections, 1024 streams, 256 openings), one
// address about 11 MB and one network about 22 MB. Legitimate use is far
// below: a member downloads over at most 16 streams at once
// (core.DefaultMaxPeerRequests), a DHT peer has a few requests in flight,
// and a burst of 64 new streams from one peer is still served.
func PhoneLimits() Limits {
	return Limits{
		Conns:      Limit{Peer: 4, IP: 8, Prefix: 16, System: 128},
		Streams:    Limit{Peer: 128, IP: 256, Prefix: 512, System: 1024},
		Handshakes: Limit{Peer: 64, IP: 64, Prefix: 128, System: 256},
	}
}

// ServerLimits are the limits of a public node: a relay, a bootstrap node
// or a backup server that the members of many groups (and the whole DHT)
// reach, many of them behind one carrier NAT's address. The totals let
// 2048 peers in at once within about 420 MB at worst, which a 1 GB server
// holds with room to serve; one address gets at most an eighth of that,
// one network a quarter, so no single attacker host or network takes the
// node.
func ServerLimits() Limits {
	return Limits{
		Conns:      Limit{Peer: 8, IP: 64, Prefix: 256, System: 2048},
		Streams:    Limit{Peer: 512, IP: 1024, Prefix: 2048, System: 8192},
		Handshakes: Limit{Peer: 128, IP: 256, Prefix: 512, System: 1024},
	}
}
