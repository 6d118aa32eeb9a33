package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/tunnel"
	"github.com/quic-go/quic-go"
)

// serveTunnel answers a tunnel stream opened straight to this node (the
// ProtoTunnel handler). The Noise handshake is bound to the QUIC
// connection (its TLS exporter) and may hand the bytes to that connection's
// TLS after it (docs/tunnel.md, "TLS transport").
func (b *Backend) serveTunnel(ctx context.Context, peer transport.Peer, s *quic.Stream) {
	b.serveTunnelWith(ctx, peer, s, transport.StreamBinding(ctx))
}

// serveRelayedTunnel answers a tunnel that a relay spliced to this node:
// the QUIC connection is the relay's, so the handshake is not bound to it
// and Noise encrypts every byte; the relay sees only ciphertext.
func (b *Backend) serveRelayedTunnel(ctx context.Context, peer transport.Peer, s *quic.Stream) {
	b.serveTunnelWith(ctx, peer, s, nil)
}

// serveTunnelWith runs a Noise handshake keyed by the PSK of one of our
// groups (a node outside every group cannot finish it), then serves blob
// requests limited to what that group may see, under the peer's upload
// limits.
func (b *Backend) serveTunnelWith(ctx context.Context, peer transport.Peer, s *quic.Stream, binding []byte) {
	sess, err := tunnel.Accept(ctx, s, tunnel.AcceptConfig{
		Static: b.static, LookupPSK: b.lookupPSK,
		Binding: binding, AllowTLSTransport: binding != nil,
	})
	if err != nil {
		b.log.Debug("tunnel handshake refused", "peer", peer.ID, "err", err)
		return
	}
	transport.Opened(ctx)
	defer sess.Close()
	gs, err := b.group(sess.Group())
	if err != nil {
		return
	}
	// Through a relay, peer is the ID the relay claims: only a direct
	// connection's (authenticated by TLS) tells who answered.
	if binding != nil {
		b.tellPeer(KindPeerReachable, peer.ID, PeerInbound, b.health.answered(peer.ID, gs.info.ID))
	}
	allow := func(h blobsync.Hash) bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return gs.servable[h]
	}
	limit, release := b.limits.Acquire(peer.ID.String())
	defer release()
	idle := newIdleConn(sess, tunnelIdleTimeout)
	defer idle.stop()
	conn := countingConn{ReadWriteCloser: idle, written: &b.traffic.sent}
	if err := b.blobs.ServeWith(ctx, conn, blobsync.ServeOptions{Allow: allow, Limit: limit}); err != nil && ctx.Err() == nil {
		b.log.Debug("blob serve ended", "peer", peer.ID, "err", err)
	}
}

// tunnelIdleTimeout closes a served tunnel session that has moved no byte,
// either way, for this long: a member that opened a tunnel and went quiet,
// or stopped reading an answer, gives its stream and goroutine back. A
// downloader keeps an idle tunnel for 30 s (blobsync.StreamPool), well
// within it.
const tunnelIdleTimeout = 2 * time.Minute

// idleConn closes its ReadWriteCloser when no Read or Write has returned
// for its timeout.
type idleConn struct {
	io.ReadWriteCloser
	d time.Duration
	t *time.Timer
}

func newIdleConn(rw io.ReadWriteCloser, d time.Duration) *idleConn {
	return &idleConn{ReadWriteCloser: rw, d: d, t: time.AfterFunc(d, func() { rw.Close() })}
}

func (c *idleConn) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	c.t.Reset(c.d)
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Write(p)
	c.t.Reset(c.d)
	return n, err
}

// stop disarms the timer.
func (c *idleConn) stop() { c.t.Stop() }

func (b *Backend) lookupPSK(g key.RecordKey) ([32]byte, bool) {
	gs, err := b.group(g)
	if err != nil {
		return [32]byte{}, false
	}
	return tunnel.PSK(gs.g.TunnelSecret()), true
}

// Per-path bounds on opening a tunnel (connection, relay circuit and
// handshake), and how often a memberProvider re-reads a descriptor that
// failed.
const (
	directPathTimeout = 3 * time.Second
	relayPathTimeout  = 10 * time.Second
	resolveRetries    = 2
)

// resolveDescriptor reads, from the DHT, the current tunnel descriptor that
// node publishes in one of gs's repos.
func (b *Backend) resolveDescriptor(ctx context.Context, gs *groupState, node key.NodeID) (datarepo.TunnelDescriptor, error) {
	members, err := gs.g.Providers(ctx, nil, b.NodeID())
	if err != nil {
		return datarepo.TunnelDescriptor{}, err
	}
	b.health.serves(gs.info.ID, members)
	for _, m := range members {
		if m.Tunnel.Node == node {
			return m.Tunnel, nil
		}
	}
	return datarepo.TunnelDescriptor{}, fmt.Errorf("no tunnel descriptor of %s in group %s", node, gs.info.ID)
}

// tunnelPath is one way to reach a node: a direct address or a relay.
type tunnelPath struct {
	path, via string
	timeout   time.Duration
	// open returns the stream and, on a direct path, the channel binding of
	// the QUIC connection that carries it (nil through a relay).
	open func(ctx context.Context) (*quic.Stream, []byte, error)
}

// openTunnel opens a tunnel to the node td names: its direct addresses in
// order first, then its relays, each bounded by its path timeout. The path that worked is recorded (PeerPaths) and logged.
// A relay that is this node itself is a direct stream over the connection
// the node's reservation keeps open.
func (b *Backend) openTunnel(ctx context.Context, gs *groupState, td datarepo.TunnelDescriptor) (*tunnel.Session, error) {
	return b.openTunnelLane(ctx, gs, td, 0)
}

// openTunnelLane is openTunnel on transport lane lane: lane 0 is
// openTunnel's; a lane above 0 is a QUIC connection of its own and takes
// direct paths only (a relay circuit rides one connection).
func (b *Backend) openTunnelLane(ctx context.Context, gs *groupState, td datarepo.TunnelDescriptor, lane int) (*tunnel.Session, error) {
	run := b.run()
	var paths []tunnelPath
	var errs []error
	for _, a := range td.Addrs {
		addr, err := netip.ParseAddrPort(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("address %q: %w", a, err))
			continue
		}
		paths = append(paths, tunnelPath{path: PathDirect, via: addr.String(), timeout: directPathTimeout,
			open: func(ctx context.Context) (*quic.Stream, []byte, error) {
				return run.ep.OpenStreamLane(ctx, td.Node, addr, transport.ProtoTunnel, lane)
			}})
	}
	for _, r := range td.Relays {
		if lane > 0 {
			break
		}
		c, err := dht.ParseContact(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("relay %q: %w", r, err))
			continue
		}
		if c.ID == b.NodeID() {
			paths = append(paths, tunnelPath{path: PathDirect, via: "its reservation on this node", timeout: relayPathTimeout,
				open: func(ctx context.Context) (*quic.Stream, []byte, error) {
					return run.ep.OpenStreamBinding(ctx, td.Node, netip.AddrPort{}, transport.ProtoTunnel)
				}})
			continue
		}
		relay := transport.Peer{ID: c.ID, Addr: c.Addr}
		paths = append(paths, tunnelPath{path: PathRelay, via: c.String(), timeout: relayPathTimeout,
			open: func(ctx context.Context) (*quic.Stream, []byte, error) {
				s, err := run.relay.Connect(ctx, relay, td.Node)
				return s, nil, err
			}})
	}
	cfg := tunnel.DialConfig{Static: b.static, RemoteStatic: td.Static, Group: gs.info.ID, PSK: tunnel.PSK(gs.g.TunnelSecret())}
	for _, p := range paths {
		pctx, cancel := context.WithTimeout(ctx, p.timeout)
		sess, err := b.dialPath(pctx, p, cfg)
		cancel()
		if err == nil {
			via := p.via
			if p.path == PathDirect {
				// A pooled connection is used whatever address was asked.
				if a, ok := run.ep.PooledAddr(td.Node); ok {
					via = a.String()
				}
			}
			enc := "noise"
			if sess.TLSTransport() {
				enc = "tls"
			}
			b.notePath(PeerPath{Node: td.Node, Path: p.path, Via: via, Encryption: enc, At: time.Now()})
			return sess, nil
		}
		errs = append(errs, fmt.Errorf("%s via %s: %w", p.path, p.via, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("tunnel descriptor lists no address and no relay")
	}
	return nil, errors.Join(errs...)
}

// dialPath opens p and runs the Noise handshake over it. On a direct path
// the handshake is bound to the QUIC connection and asks for TLS transport:
// after it, bytes ride the connection's TLS 1.3 (already end to end between
// the two node IDs) instead of being encrypted a second time.
func (b *Backend) dialPath(ctx context.Context, p tunnelPath, cfg tunnel.DialConfig) (*tunnel.Session, error) {
	s, binding, err := p.open(ctx)
	if err != nil {
		return nil, err
	}
	cfg.Binding = binding
	cfg.TLSTransport = binding != nil
	return tunnel.Dial(ctx, s, cfg)
}
