package transport

import (
	"context"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/quic-go/quic-go"
)

// pool holds the endpoint's connections: every live one (for Close) and, per
// peer node ID, the one OpenStream uses. It also tracks in-flight dials so
// concurrent OpenStream calls to one peer share a single dial.
type pool struct {
	mu     sync.Mutex
	closed bool
	byID   map[key.NodeID]*quic.Conn
	all    map[*quic.Conn]key.NodeID
	dials  map[key.NodeID]*dialCall
	// lanes are the extra connections of OpenStreamLane, per peer and
	// lane, and their in-flight dials.
	lanes     map[laneKey]*quic.Conn
	laneDials map[laneKey]*dialCall
	// gone is when each peer's pooled connection ended because the
	// peer shut down cleanly (isShutdown); see ShutdownHold.
	gone map[key.NodeID]time.Time
}

// ShutdownHold is how long after a peer's clean shutdown (its endpoint
// closed its connection to this one, see SetPeerShutdown) OpenStream and
// Connect to it fail at once with ErrPeerShutdown instead of dialling:
// a dial to a node that is gone waits out DialTimeout. The DHT and the
// tunnels stop asking the node as soon as SetPeerShutdown's callback
// runs; the hold covers the requests already on their way then. A new
// connection from the peer (it came back) ends the hold early.
const ShutdownHold = time.Second

// dialCall is one in-flight dial; done is closed once conn/err are set.
type dialCall struct {
	done chan struct{}
	conn *quic.Conn
	err  error
}

func newPool() *pool {
	return &pool{
		byID:  make(map[key.NodeID]*quic.Conn),
		all:   make(map[*quic.Conn]key.NodeID),
		dials: make(map[key.NodeID]*dialCall),

		lanes:     make(map[laneKey]*quic.Conn),
		laneDials: make(map[laneKey]*dialCall),
		gone:      make(map[key.NodeID]time.Time),
	}
}

func alive(c *quic.Conn) bool { return c != nil && c.Context().Err() == nil }

// liveLocked returns the pooled live connection to id, dropping a dead one
// (and noting when it died of the peer's shutdown: goneLocked).
func (p *pool) liveLocked(id key.NodeID) *quic.Conn {
	c := p.byID[id]
	if c == nil {
		return nil
	}
	if !alive(c) {
		delete(p.byID, id)
		p.endedLocked(id, c, nil)
		return nil
	}
	return c
}

// endedLocked notes that c, a connection to id, has ended (with err, if
// the caller saw one): if the peer closed it as it shut down, id is gone
// from now (goneLocked). err counts as well as c's context: quic-go fails
// the connection's calls before it cancels the context.
func (p *pool) endedLocked(id key.NodeID, c *quic.Conn, err error) {
	if isShutdown(err) || isShutdown(context.Cause(c.Context())) {
		if _, ok := p.gone[id]; !ok {
			p.gone[id] = time.Now()
		}
	}
}

// goneLocked reports whether id shut down within ShutdownHold and has not
// connected since, forgetting older shutdowns.
func (p *pool) goneLocked(id key.NodeID) bool {
	t, ok := p.gone[id]
	if ok && time.Since(t) >= ShutdownHold {
		delete(p.gone, id)
		return false
	}
	return ok
}

// addLocked records c as a connection to id and pools it unless another live
// connection to id is pooled already. It returns the pooled connection (c or
// the older one). The caller has checked p.closed.
func (p *pool) addLocked(id key.NodeID, c *quic.Conn) *quic.Conn {
	p.all[c] = id
	delete(p.gone, id)
	if cur := p.liveLocked(id); cur != nil {
		return cur
	}
	p.byID[id] = c
	return c
}

// remove forgets c, which has ended with err.
func (p *pool) remove(id key.NodeID, c *quic.Conn, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.all, c)
	if p.byID[id] == c {
		delete(p.byID, id)
		p.endedLocked(id, c, err)
	}
	for k, lc := range p.lanes {
		if lc == c {
			delete(p.lanes, k)
		}
	}
}

// dropLane unpools c if it is lane k's (it failed to open a stream).
func (p *pool) dropLane(k laneKey, c *quic.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lanes[k] == c {
		delete(p.lanes, k)
	}
}

// drop unpools c if it is pooled for id (it failed to open a stream,
// with err).
func (p *pool) drop(id key.NodeID, c *quic.Conn, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byID[id] == c {
		delete(p.byID, id)
		p.endedLocked(id, c, err)
	}
}

// closeAll marks the pool closed and returns every connection it held.
// It reports false if the pool was closed already.
func (p *pool) closeAll() ([]*quic.Conn, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, false
	}
	p.closed = true
	conns := make([]*quic.Conn, 0, len(p.all))
	for c := range p.all {
		conns = append(conns, c)
	}
	clear(p.byID)
	return conns, true
}

func (p *pool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byID)
}
