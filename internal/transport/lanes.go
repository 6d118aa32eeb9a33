package transport

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/quic-go/quic-go"
)

// MaxLanes is the most lanes OpenStreamLane opens to one peer: lane 0,
// the pooled connection, and MaxLanes-1 connections of their own. It
// stays within the smallest per-peer connection limit a node grants
// (rcmgr's phone preset allows 4 connections per peer).
const MaxLanes = 4

// laneKey names lane n (>= 1) to a peer.
type laneKey struct {
	id key.NodeID
	n  int
}

// OpenStreamLane opens a stream of protocol p to id on lane lane: lane 0
// is the pooled connection (OpenStreamBinding); lanes 1..MaxLanes-1 are
// connections of their own to the same peer, dialed at addr (or at the
// pooled connection's address when addr is not valid) on first use and
// kept while they live. A transfer striped over several lanes has a
// congestion window per lane, so that loss that is not congestion (a
// phone's radio path) halves one lane's rate rather than the whole
// transfer's: the parallel-streams remedy of bulk transfer over lossy
// paths (as GridFTP's parallel TCP streams; quic-go's congestion control
// cannot be replaced). It returns the stream and the channel binding of
// its connection (ConnBinding). Errors as OpenStream's; a lane outside
// 0..MaxLanes-1 is an error.
func (e *Endpoint) OpenStreamLane(ctx context.Context, id key.NodeID, addr netip.AddrPort, p Protocol, lane int) (*quic.Stream, []byte, error) {
	switch {
	case lane == 0:
		return e.OpenStreamBinding(ctx, id, addr, p)
	case lane < 0 || lane >= MaxLanes:
		return nil, nil, fmt.Errorf("open %s stream to %s: lane %d outside 0..%d", p, id, lane, MaxLanes-1)
	case id == e.id:
		return nil, nil, fmt.Errorf("open %s stream: %s is this node", p, id)
	}
	if !addr.IsValid() {
		addr, _ = e.PooledAddr(id)
	}
	k := laneKey{id, lane}
	st, c, err := e.openStreamOn(ctx, id, p,
		func(ctx context.Context) (*quic.Conn, error) { return e.laneConn(ctx, k, addr) },
		func(c *quic.Conn, _ error) { e.pool.dropLane(k, c) })
	if err != nil {
		return nil, nil, fmt.Errorf("lane %d: %w", lane, err)
	}
	b, err := ConnBinding(c)
	if err != nil {
		st.CancelRead(CodeNoError)
		st.CancelWrite(CodeNoError)
		return nil, nil, fmt.Errorf("open %s stream to %s on lane %d: %w", p, id, lane, err)
	}
	return st, b, nil
}

// laneConn returns lane k's live connection, or dials one (callers of
// the same lane share the dial).
func (e *Endpoint) laneConn(ctx context.Context, k laneKey, addr netip.AddrPort) (*quic.Conn, error) {
	p := e.pool
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if c := p.lanes[k]; alive(c) {
		p.mu.Unlock()
		return c, nil
	}
	if p.goneLocked(k.id) {
		p.mu.Unlock()
		return nil, fmt.Errorf("connect to %s: %w", k.id, ErrPeerShutdown)
	}
	call := p.laneDials[k]
	if call == nil {
		if !addr.IsValid() {
			p.mu.Unlock()
			return nil, fmt.Errorf("connect to %s: no address", k.id)
		}
		call = &dialCall{done: make(chan struct{})}
		p.laneDials[k] = call
		e.wg.Add(1) // under p.mu with p.closed false, as connTo
		go e.dialLane(k, addr, call)
	}
	p.mu.Unlock()
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("connect to %s: %w", k.id, ctx.Err())
	case <-call.done:
		return call.conn, call.err
	}
}

// dialLane dials lane k and publishes the result in call.
func (e *Endpoint) dialLane(k laneKey, addr netip.AddrPort, call *dialCall) {
	e.dialThen(k.id, addr, call, func() { delete(e.pool.laneDials, k) }, func(c *quic.Conn) *quic.Conn {
		e.pool.all[c] = k.id
		e.pool.lanes[k] = c
		e.wg.Add(1)
		go e.serveConn(k.id, c)
		return c
	})
}

// PeerRTT is the smoothed round-trip time (RFC 9002 §5.3) of the pooled
// connection to id, if there is one: what a caller weighs before
// striping a transfer over lanes.
func (e *Endpoint) PeerRTT(id key.NodeID) (time.Duration, bool) {
	p := e.pool
	p.mu.Lock()
	c := p.liveLocked(id)
	p.mu.Unlock()
	if c == nil {
		return 0, false
	}
	return c.ConnectionStats().SmoothedRTT, true
}
