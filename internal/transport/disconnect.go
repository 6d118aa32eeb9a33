package transport

import (
	"github.com/dwebkit/dweb/internal/key"
	"github.com/quic-go/quic-go"
)

// Disconnect closes every connection to node id, pooled or not, inbound or
// outbound (CONNECTION_CLOSE with application code 0, reason
// "disconnected"; the peer's streams on them fail), and returns how many it
// closed. The next OpenStream to id dials again. It is for callers that
// know a peer's connection is stale, and for tests that need it gone (a
// peer that moved, a NAT mapping that expired). After Close it closes
// nothing and returns 0.
func (e *Endpoint) Disconnect(id key.NodeID) int {
	p := e.pool
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0
	}
	var conns []*quic.Conn
	for c, cid := range p.all {
		if cid == id {
			conns = append(conns, c)
		}
	}
	delete(p.byID, id)
	p.mu.Unlock()
	for _, c := range conns {
		c.CloseWithError(connCodeClosed, "disconnected")
	}
	return len(conns)
}

// DisconnectAll closes every connection of the endpoint, as Disconnect
// does for one node, and returns how many it closed: for a node whose
// own addresses changed (Wi-Fi to mobile data), whose connections are
// bound to a path that may be gone. The next OpenStream to each peer
// dials again from the new addresses. After Close it closes nothing and
// returns 0.
func (e *Endpoint) DisconnectAll() int {
	p := e.pool
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0
	}
	conns := make([]*quic.Conn, 0, len(p.all))
	for c := range p.all {
		conns = append(conns, c)
	}
	clear(p.byID)
	p.mu.Unlock()
	for _, c := range conns {
		c.CloseWithError(connCodeClosed, "disconnected")
	}
	return len(conns)
}
