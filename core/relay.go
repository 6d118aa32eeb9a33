package core

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/tunnel"
)

// How often a node re-checks its reachability, and how long one check may
// take.
const (
	reachInterval = 10 * time.Minute
	reachTimeout  = 15 * time.Second
	// maxReachCandidates bounds the peers asked for one dial-back check.
	maxReachCandidates = 4
)

// Reachability is what this node learned about how others reach it, from a
// dial-back probe (docs/tunnel.md, "Reachability").
type Reachability struct {
	// Checked is false until a peer has answered a dial-back probe.
	Checked bool `json:"checked"`
	// Reachable: a fresh connection from the peer's other socket reached
	// this node at Observed, so direct dials work.
	Reachable bool `json:"reachable"`
	// Observed is this node's UDP address as the peer saw it: its public
	// address when it is behind NAT.
	Observed netip.AddrPort `json:"observed"`
	// By is the peer that answered; At is when.
	By key.NodeID `json:"by"`
	At time.Time  `json:"at"`
}

// Tunnel paths PeerPath.Path reports.
const (
	PathDirect = "direct" // a QUIC connection between the two nodes
	PathRelay  = "relay"  // a circuit through a relay
)

// PeerPath is the path the last tunnel to a node took.
type PeerPath struct {
	Node key.NodeID `json:"node"`
	Path string     `json:"path"` // PathDirect or PathRelay
	Via  string     `json:"via"`  // the address dialled, or the relay as nodeID@host:port
	// Encryption is what protects the tunnel's bytes after the handshake:
	// "tls" (a direct path: the QUIC connection's TLS, the Noise handshake
	// bound to it) or "noise" (through a relay, or a peer that declined).
	Encryption string    `json:"encryption"`
	At         time.Time `json:"at"`
}

// relayState is the Backend's relay and reachability state.
type relayState struct {
	relays  []transport.Peer // from Options.Relays
	changed chan struct{}    // the tunnel descriptor may have changed
	recheck chan struct{}    // run a reachability check now

	// hideDirect (tests only) publishes no direct address, as a node that
	// nothing can dial, so peers must come through its relays.
	hideDirect bool

	closing atomic.Bool // Close has begun: publish no more descriptors
	pubMu   sync.Mutex  // held while the republisher writes descriptors

	mu       sync.Mutex
	reach    Reachability
	paths    map[key.NodeID]PeerPath
	observed map[key.NodeID]netip.AddrPort // per relay, from its reservation
}

// parseRelays parses Options.Relays ("nodeID@host:port" each).
func parseRelays(ss []string) ([]transport.Peer, error) {
	out := make([]transport.Peer, 0, len(ss))
	for _, s := range ss {
		c, err := dht.ParseContact(s)
		if err != nil {
			return nil, badInput(fmt.Errorf("relay %q: %w", s, err))
		}
		out = append(out, transport.Peer{ID: c.ID, Addr: c.Addr})
	}
	return out, nil
}

// startRelay runs the relay protocol on r's endpoint (serving as a relay
// if Options.ServeRelay) and holds reservations on Options.Relays for as
// long as r lasts. startNet then starts the reachability checker and the
// descriptor republisher. The state that outlives a run (paths, observed
// addresses, the last reachability) is kept across runs.
func (b *Backend) startRelay(r *netRun, relays []transport.Peer) {
	rs := &b.rs
	rs.mu.Lock()
	rs.relays = relays
	if rs.paths == nil {
		rs.changed = make(chan struct{}, 1)
		rs.recheck = make(chan struct{}, 1)
		rs.paths = make(map[key.NodeID]PeerPath)
		rs.observed = make(map[key.NodeID]netip.AddrPort)
	}
	rs.mu.Unlock()
	r.relay = tunnel.NewRelay(r.ep, tunnel.RelayOptions{
		Serve:     b.opts.ServeRelay,
		Limits:    b.opts.RelayLimits,
		Incoming:  b.serveRelayedTunnel,
		GroupPSKs: b.groupPSKs,
		Tap:       b.opts.RelayTap,
		Logger:    b.log,
	})
	if len(relays) > 0 {
		r.relay.Keep(r.ctx, relays, func() { b.reservationsChanged(r.relay) })
	}
}

// groupPSKs returns the tunnel PSKs of this node's groups: as a relay it
// grants members of its groups a member's reservation (longer, from a
// larger share than strangers get), and it proves its own membership to
// the relays it reserves on (docs/tunnel.md, "Relays").
func (b *Backend) groupPSKs() [][32]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([][32]byte, 0, len(b.groups))
	for _, gs := range b.groups {
		out = append(out, tunnel.PSK(gs.g.TunnelSecret()))
	}
	return out
}

// stopPublishing makes the republisher stop and waits for a write in
// flight, so that Close's clearing of the descriptors is the last write.
func (b *Backend) stopPublishing() {
	b.rs.closing.Store(true)
	b.rs.pubMu.Lock()
	b.rs.pubMu.Unlock() //nolint:staticcheck // a barrier: wait for the republisher's write in flight
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// reservationsChanged runs when a reservation starts or ends: the relays
// listed in the descriptor change, and a new observed address asks for a
// reachability check.
func (b *Backend) reservationsChanged(relay *tunnel.Relay) {
	rs := &b.rs
	recheck := false
	rs.mu.Lock()
	for _, res := range relay.Reservations() {
		if res.Observed.IsValid() && rs.observed[res.Relay.ID] != res.Observed {
			rs.observed[res.Relay.ID] = res.Observed
			recheck = recheck || res.Observed != rs.reach.Observed
		}
	}
	rs.mu.Unlock()
	if recheck {
		signal(rs.recheck)
	}
	signal(rs.changed)
}

// Relays lists the relays this node holds a reservation on now, as
// "nodeID@host:port": the ones its tunnel descriptors name.
func (b *Backend) Relays() []string {
	r := b.run()
	if r == nil {
		return nil
	}
	var out []string
	for _, res := range r.relay.Reservations() {
		out = append(out, dht.Contact{ID: res.Relay.ID, Addr: res.Relay.Addr}.String())
	}
	return out
}

// Reachability returns what the last dial-back check found.
func (b *Backend) Reachability() Reachability {
	b.rs.mu.Lock()
	defer b.rs.mu.Unlock()
	return b.rs.reach
}

// PeerPaths lists, per node, the path the last tunnel to it took, ordered
// by node ID.
func (b *Backend) PeerPaths() []PeerPath {
	b.rs.mu.Lock()
	out := make([]PeerPath, 0, len(b.rs.paths))
	for _, p := range b.rs.paths {
		out = append(out, p)
	}
	b.rs.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Node.String() < out[j].Node.String() })
	return out
}

func (b *Backend) notePath(p PeerPath) {
	b.rs.mu.Lock()
	b.rs.paths[p.Node] = p
	b.rs.mu.Unlock()
	b.log.Info("tunnel opened", "peer", p.Node, "path", p.Path, "via", p.Via)
}

// tunnelDescriptor is what this node publishes in its repos: its direct
// addresses (the observed public one first when a dial-back proved it
// reachable), then the relays it holds reservations on; the first
// datarepo.MaxTunnelAddrs and MaxTunnelRelays of them, as many as readers
// take.
func (b *Backend) tunnelDescriptor() datarepo.TunnelDescriptor {
	addrs := b.advertiseAddrs()
	if r := b.Reachability(); r.Reachable && r.Observed.IsValid() {
		obs := r.Observed.String()
		addrs = append([]string{obs}, slices.DeleteFunc(addrs, func(a string) bool { return a == obs })...)
	}
	if b.rs.hideDirect {
		addrs = nil
	}
	relays := b.Relays()
	return datarepo.TunnelDescriptor{Node: b.NodeID(), Static: b.static.Public,
		Addrs:  addrs[:min(len(addrs), datarepo.MaxTunnelAddrs)],
		Relays: relays[:min(len(relays), datarepo.MaxTunnelRelays)]}
}

// republishLoop rewrites the tunnel descriptors of every group when they
// change (a reservation started or ended, the reachability check found a new
// address), until the Backend closes.
func (b *Backend) republishLoop(ctx context.Context) {
	var last datarepo.TunnelDescriptor
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.rs.changed:
		}
		// Let a burst of changes settle into one write.
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		td := b.tunnelDescriptor()
		if sameDescriptor(td, last) {
			continue
		}
		if b.publishAll(ctx, td) {
			last = td
		}
	}
}

// publishAll writes td into every group; false if any write failed or the
// Backend is closing.
func (b *Backend) publishAll(ctx context.Context, td datarepo.TunnelDescriptor) bool {
	b.rs.pubMu.Lock()
	defer b.rs.pubMu.Unlock()
	if b.rs.closing.Load() {
		return false
	}
	b.mu.Lock()
	states := make([]*groupState, 0, len(b.groups))
	for _, gs := range b.groups {
		states = append(states, gs)
	}
	b.mu.Unlock()
	ok := true
	for _, gs := range states {
		ctx, cancel := context.WithTimeout(ctx, publishTimeout)
		err := gs.repo.SetTunnel(ctx, 0, td)
		cancel()
		if err != nil {
			ok = false
			b.log.Warn("republish tunnel descriptor", "group", gs.info.ID, "err", err)
			continue
		}
		b.emit(KindPublicationState, gs.info.ID, gs.info.Repo, PublicationEvent{Record: "tunnel", State: "published"})
	}
	if ok && len(states) > 0 {
		b.log.Info("tunnel descriptor republished", "addrs", td.Addrs, "relays", td.Relays)
	}
	return ok
}

func sameDescriptor(a, b datarepo.TunnelDescriptor) bool {
	return a.Node == b.Node && a.Static == b.Static && slices.Equal(a.Addrs, b.Addrs) && slices.Equal(a.Relays, b.Relays)
}

// reachLoop checks reachability at start, every reachInterval, when a
// relay reports a new observed address and after a network change.
func (b *Backend) reachLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.rs.recheck:
			// A check that ran since the signal may have seen the new
			// address already (the first check races the first
			// reservation): then there is nothing new to check. A
			// network change forgets what was checked (netchange.go).
			if b.Reachability().Checked && !b.observedChanged() {
				continue
			}
			t.Stop()
		}
		b.checkReach(ctx)
		t.Reset(reachInterval)
	}
}

// checkReach asks the first peer that answers (relays, then bootstrap
// nodes, then routing-table contacts) to dial this node back, and puts the
// DHT in client mode when the answer is "not reachable" (out of it when
// reachable).
func (b *Backend) checkReach(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	relay := b.run().relay
	for _, p := range b.reachCandidates() {
		res, err := relay.DialBack(ctx, p, netip.AddrPort{})
		if err != nil {
			b.log.Debug("dial-back check", "peer", p.ID, "err", err)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		now := Reachability{Checked: true, Reachable: res.Reachable, Observed: res.Observed, By: p.ID, At: time.Now()}
		// A node nothing can dial joins the DHT as a client: others keep it
		// out of their routing tables and holder sets (docs/dht.md).
		b.curDHT().SetClient(!now.Reachable)
		b.rs.mu.Lock()
		prev := b.rs.reach
		b.rs.reach = now
		b.rs.mu.Unlock()
		if prev.Reachable != now.Reachable || prev.Observed != now.Observed {
			b.log.Info("reachability", "reachable", now.Reachable, "observed", now.Observed, "by", p.ID)
			signal(b.rs.changed)
		}
		return
	}
}

// observedChanged reports whether a relay observed this node at another
// address than the last reachability check did.
func (b *Backend) observedChanged() bool {
	b.rs.mu.Lock()
	defer b.rs.mu.Unlock()
	for _, a := range b.rs.observed {
		if a != b.rs.reach.Observed {
			return true
		}
	}
	return false
}

func (b *Backend) reachCandidates() []transport.Peer {
	seen := map[key.NodeID]bool{b.NodeID(): true}
	var out []transport.Peer
	add := func(p transport.Peer) {
		if !seen[p.ID] && p.Addr.IsValid() && len(out) < maxReachCandidates {
			seen[p.ID] = true
			out = append(out, p)
		}
	}
	for _, p := range b.rs.relays {
		add(p)
	}
	for _, s := range b.opts.Bootstrap {
		if c, err := dht.ParseContact(s); err == nil {
			add(transport.Peer{ID: c.ID, Addr: c.Addr})
		}
	}
	for _, c := range b.curDHT().Contacts() {
		add(transport.Peer{ID: c.ID, Addr: c.Addr})
	}
	return out
}
