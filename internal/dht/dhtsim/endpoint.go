package dhtsim

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
)

// Endpoint is one node's place on a Network: a dht.StreamEndpoint, with
// PooledAddr and SetPeerShutdown as *transport.Endpoint has them.
type Endpoint struct {
	n    *Network
	id   key.NodeID
	addr netip.AddrPort
	nat  bool

	ctx    context.Context // handlers' context, cancelled when the node goes down
	cancel context.CancelFunc
	done   chan struct{} // closed when the node goes down
	wg     sync.WaitGroup

	mu         sync.Mutex
	isDown     bool
	crashed    bool      // went down by Crash: nobody hears of it
	downAt     time.Time // when it went down
	handlers   map[transport.Protocol]dht.StreamHandler
	conns      map[key.NodeID]*conn
	gone       map[key.NodeID]time.Time // peers that shut down cleanly, when this node heard
	onShutdown func(key.NodeID)
}

// conn is a connection between two endpoints, shared by both ends.
type conn struct {
	last atomic.Int64 // Unix ns of its last use
}

func newEndpoint(n *Network, id key.NodeID, addr netip.AddrPort, nat bool) *Endpoint {
	ctx, cancel := context.WithCancel(context.Background())
	return &Endpoint{
		n: n, id: id, addr: addr, nat: nat,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		handlers: map[transport.Protocol]dht.StreamHandler{},
		conns:    map[key.NodeID]*conn{},
		gone:     map[key.NodeID]time.Time{},
	}
}

// ID returns the node's ID.
func (e *Endpoint) ID() key.NodeID { return e.id }

// LocalAddr returns the node's simulated public address (for a NATed node,
// an address nothing can dial).
func (e *Endpoint) LocalAddr() netip.AddrPort { return e.addr }

// NAT reports whether nothing can dial the node.
func (e *Endpoint) NAT() bool { return e.nat }

// HandleStreams sets (nil: removes) the handler of protocol p.
func (e *Endpoint) HandleStreams(p transport.Protocol, h dht.StreamHandler) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if h == nil {
		delete(e.handlers, p)
	} else {
		e.handlers[p] = h
	}
}

// SetPeerShutdown sets fn to be called, in its own goroutine, with the ID
// of each peer that closes cleanly while it has a live connection to this
// node (as transport.Endpoint.SetPeerShutdown).
func (e *Endpoint) SetPeerShutdown(fn func(key.NodeID)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onShutdown = fn
}

// PooledAddr returns id's address and true if this node has a live
// connection to it (a request need not dial).
func (e *Endpoint) PooledAddr(id key.NodeID) (netip.AddrPort, bool) {
	e.mu.Lock()
	c := e.liveLocked(id, time.Now())
	e.mu.Unlock()
	if c == nil {
		return netip.AddrPort{}, false
	}
	if p := e.n.endpoint(id); p != nil {
		return p.addr, true
	}
	return netip.AddrPort{}, false
}

// liveLocked returns the connection to id if it has been used within
// IdleTimeout, dropping it otherwise.
func (e *Endpoint) liveLocked(id key.NodeID, now time.Time) *conn {
	c := e.conns[id]
	if c == nil {
		return nil
	}
	if now.UnixNano()-c.last.Load() >= int64(e.n.opts.IdleTimeout) {
		delete(e.conns, id)
		return nil
	}
	return c
}

// down reports whether the node crashed or closed.
func (e *Endpoint) down() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// OpenStream opens a stream of protocol p to node id, dialling addr first
// when no connection is pooled (one RTT; see the package comment). A
// dial to a node that is down, behind NAT or not at addr hangs until ctx
// ends and fails with its error, as a QUIC handshake that gets no answer
// does. With the zero addr and no pooled connection it fails at once. It
// fails with transport.ErrClosed once this node is down, and with
// transport.ErrPeerShutdown for transport.ShutdownHold after id closed
// cleanly.
func (e *Endpoint) OpenStream(ctx context.Context, id key.NodeID, addr netip.AddrPort, p transport.Protocol) (dht.Stream, error) {
	if id == e.id {
		return nil, fmt.Errorf("open %s stream: %s is this node", p, id)
	}
	if e.down() {
		return nil, transport.ErrClosed
	}
	now := time.Now()
	e.mu.Lock()
	if t, ok := e.gone[id]; ok {
		if now.Sub(t) < transport.ShutdownHold {
			e.mu.Unlock()
			return nil, fmt.Errorf("open %s stream to %s: %w", p, id, transport.ErrPeerShutdown)
		}
		delete(e.gone, id)
	}
	c := e.liveLocked(id, now)
	e.mu.Unlock()
	peer := e.n.endpoint(id)
	rtt := e.n.RTT(e.id, id)
	if c == nil {
		if !addr.IsValid() {
			return nil, fmt.Errorf("connect to %s: no connection and no address", id)
		}
		if peer == nil || peer.addr != addr || peer.nat || peer.down() {
			return nil, e.hang(ctx, id)
		}
		if err := e.sleep(ctx, e.n.handshake(rtt)); err != nil {
			return nil, err
		}
		if peer.down() {
			return nil, e.hang(ctx, id)
		}
		c = &conn{}
		c.last.Store(time.Now().UnixNano())
		e.mu.Lock()
		if old := e.liveLocked(id, time.Now()); old != nil {
			c = old
		} else {
			e.conns[id] = c
		}
		e.mu.Unlock()
		peer.mu.Lock()
		peer.conns[e.id] = c
		delete(peer.gone, e.id)
		peer.mu.Unlock()
	}
	if peer == nil {
		return nil, e.hang(ctx, id)
	}
	c.last.Store(time.Now().UnixNano())
	local, remote := newStreamPair(e, peer, rtt)
	time.AfterFunc(rtt/2, func() { peer.accept(p, transport.Peer{ID: e.id, Addr: e.addr}, remote) })
	return local, nil
}

// hang waits, as an unanswered dial does, until ctx ends or this node
// goes down.
func (e *Endpoint) hang(ctx context.Context, id key.NodeID) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("dial %s: no answer: %w", id, ctx.Err())
	case <-e.done:
		return transport.ErrClosed
	}
}

// sleep waits d unless ctx ends or this node goes down first.
func (e *Endpoint) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dial: %w", ctx.Err())
	case <-e.done:
		return transport.ErrClosed
	}
}

// accept runs the handler of p for an inbound stream s from peer, as the
// transport does: in its own goroutine, then closes s's send side and
// drops unread input. A stream for a node that is down, or for a
// protocol without a handler, is reset.
func (e *Endpoint) accept(p transport.Protocol, peer transport.Peer, s *stream) {
	e.mu.Lock()
	h := e.handlers[p]
	if e.isDown {
		e.mu.Unlock()
		return // nobody there: the caller times out
	}
	if h == nil {
		e.mu.Unlock()
		s.CancelRead(transport.CodeNoError)
		s.CancelWrite(transport.CodeNoError)
		return
	}
	e.wg.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.wg.Done()
		h(e.ctx, peer, s)
		s.Close()
		s.CancelRead(transport.CodeNoError)
	}()
}

// Crash takes the node off the network without a word: its peers keep
// their connections to it until they idle out, and their dials and
// requests to it hang until their deadlines. The node's own handlers see
// their context cancelled and its streams fail with transport.ErrClosed.
// Crash waits for the handlers to return.
func (e *Endpoint) Crash() { e.goDown(true) }

// Close shuts the node down cleanly: each peer with a live connection to
// it hears of it RTT/2 later, as from transport.Endpoint.Close (see the
// package comment). It waits for the node's handlers to return.
func (e *Endpoint) Close() error {
	e.goDown(false)
	return nil
}

func (e *Endpoint) goDown(crash bool) {
	e.mu.Lock()
	if e.isDown {
		e.mu.Unlock()
		return
	}
	e.isDown, e.crashed, e.downAt = true, crash, time.Now()
	peers := make([]key.NodeID, 0, len(e.conns))
	for id := range e.conns {
		if e.liveLocked(id, e.downAt) != nil {
			peers = append(peers, id)
		}
	}
	e.conns = map[key.NodeID]*conn{}
	e.mu.Unlock()
	close(e.done)
	e.cancel()
	if !crash {
		for _, id := range peers {
			if p := e.n.endpoint(id); p != nil {
				time.AfterFunc(e.n.RTT(e.id, id)/2, func() { p.peerShutdown(e.id) })
			}
		}
	}
	e.wg.Wait()
}

// peerShutdown is the news that id closed cleanly.
func (e *Endpoint) peerShutdown(id key.NodeID) {
	e.mu.Lock()
	if e.isDown {
		e.mu.Unlock()
		return
	}
	delete(e.conns, id)
	e.gone[id] = time.Now()
	fn := e.onShutdown
	e.mu.Unlock()
	if fn != nil {
		go fn(id)
	}
}

// shutdownSeen returns when this node heard that peer shut down cleanly
// (the moment its streams from peer fail), and false if it has not, or
// peer crashed instead.
func (e *Endpoint) shutdownSeen(peer *Endpoint) (time.Time, bool) {
	peer.mu.Lock()
	defer peer.mu.Unlock()
	if !peer.isDown || peer.crashed {
		return time.Time{}, false
	}
	return peer.downAt.Add(e.n.RTT(e.id, peer.id) / 2), true
}
