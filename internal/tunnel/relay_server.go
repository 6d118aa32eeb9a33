package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/quic-go/quic-go"
)

// reservation is one node's reservation on this relay.
type reservation struct {
	node     key.NodeID
	expires  time.Time
	bytes    atomic.Int64 // spliced so far, both directions, all circuits
	circuits int          // open now; guarded by Relay.mu
	// gone is closed when the reservation expires, its stream ends or the
	// relay closes: its circuits end then. A replaced reservation's
	// circuits keep running until its own expiry.
	gone     chan struct{}
	goneOnce sync.Once
	replaced chan struct{} // closed when the node reserved again
}

func (rs *reservation) end() { rs.goneOnce.Do(func() { close(rs.gone) }) }

// serveReserve holds a reservation for peer for as long as its stream stays
// open, up to the TTL.
func (r *Relay) serveReserve(ctx context.Context, peer transport.Peer, s *quic.Stream) {
	if !r.opts.Serve {
		r.reply(s, peer, relayReply{Code: RelayNotRelay, Msg: "this node does not relay"})
		return
	}
	lim := r.opts.Limits
	rs := &reservation{node: peer.ID, expires: time.Now().Add(lim.ReservationTTL), gone: make(chan struct{}), replaced: make(chan struct{})}
	r.mu.Lock()
	old := r.res[peer.ID]
	if old == nil && len(r.res) >= lim.MaxReservations {
		r.mu.Unlock()
		r.reply(s, peer, relayReply{Code: RelayLimit, Msg: fmt.Sprintf("relay holds %d reservations, its limit", lim.MaxReservations)})
		return
	}
	r.res[peer.ID] = rs
	r.mu.Unlock()
	if old != nil {
		close(old.replaced)
	}
	defer func() {
		r.mu.Lock()
		if r.res[peer.ID] == rs {
			delete(r.res, peer.ID)
		}
		r.mu.Unlock()
	}()

	err := r.reply(s, peer, relayReply{
		Code:        RelayOK,
		TTLSeconds:  uint32(lim.ReservationTTL / time.Second),
		MaxBytes:    lim.MaxBytes,
		MaxCircuits: uint32(lim.MaxCircuits),
	})
	if err != nil {
		rs.end()
		return
	}
	r.log.Debug("reservation", "node", peer.ID.String(), "addr", peer.Addr, "ttl", lim.ReservationTTL)

	// The node sends nothing more; a read returns when it closes the
	// stream or the connection ends.
	closedByNode := make(chan struct{})
	go func() {
		var b [1]byte
		s.Read(b[:])
		close(closedByNode)
	}()
	expire := time.NewTimer(time.Until(rs.expires))
	defer expire.Stop()
	code := CodeRelayExpired
	select {
	case <-expire.C:
	case <-closedByNode:
	case <-rs.replaced:
		code = CodeRelayReplaced
	case <-ctx.Done():
		if r.ctx.Err() != nil {
			code = CodeRelayClosed
		}
	}
	if code != CodeRelayReplaced {
		rs.end()
	} else {
		// Its circuits run on until its own expiry.
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			t := time.NewTimer(time.Until(rs.expires))
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.ctx.Done():
			}
			rs.end()
		}()
	}
	s.CancelRead(code)
	s.CancelWrite(code)
	<-closedByNode
}

// serveConnect joins the initiator's stream s to a new stream to target
// over target's reserved connection, after the target accepts.
func (r *Relay) serveConnect(ctx context.Context, peer transport.Peer, s *quic.Stream, target key.NodeID) {
	if !r.opts.Serve {
		r.reply(s, peer, relayReply{Code: RelayNotRelay, Msg: "this node does not relay"})
		return
	}
	lim := r.opts.Limits
	r.mu.Lock()
	rs := r.res[target]
	var refuse relayReply
	switch {
	case rs == nil:
		refuse = relayReply{Code: RelayNoReservation, Msg: fmt.Sprintf("%s holds no reservation here", target)}
	case rs.circuits >= lim.MaxCircuits:
		refuse = relayReply{Code: RelayLimit, Msg: fmt.Sprintf("%d circuits to %s open, the limit", rs.circuits, target)}
	case rs.bytes.Load() >= lim.MaxBytes:
		refuse = relayReply{Code: RelayLimit, Msg: fmt.Sprintf("reservation of %s spent its %d bytes", target, lim.MaxBytes)}
	default:
		rs.circuits++
	}
	r.mu.Unlock()
	if refuse.Code != RelayOK {
		r.reply(s, peer, refuse)
		return
	}
	r.circuits.Add(1)
	defer func() {
		r.circuits.Add(-1)
		r.mu.Lock()
		rs.circuits--
		r.mu.Unlock()
	}()

	// The circuit lives until the reservation ends.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-rs.gone:
			cancel()
		case <-ctx.Done():
		}
	}()

	dctx, dcancel := context.WithTimeout(ctx, lim.DialTimeout)
	ts, _, err := roundTrip(dctx, r.ep, transport.Peer{ID: target}, relayRequest{Op: opIncoming, Peer: peer.ID})
	dcancel()
	if err != nil {
		code, msg := RelayTargetUnreachable, err.Error()
		var re *RelayError
		if errors.As(err, &re) {
			code, msg = RelayRefused, re.Msg
		}
		r.reply(s, peer, relayReply{Code: code, Msg: msg})
		return
	}
	if err := r.reply(s, peer, relayReply{Code: RelayOK}); err != nil {
		ts.CancelRead(CodeRelayBroken)
		ts.CancelWrite(CodeRelayBroken)
		return
	}
	r.splice(ctx, s, ts, rs)
}

// splice copies a->b and b->a until both directions end, counting every
// byte against rs's budget. A clean end of one direction is passed on as
// FIN; an error, the budget running out or ctx ending resets both streams.
func (r *Relay) splice(ctx context.Context, a, b *quic.Stream, rs *reservation) {
	var once sync.Once
	abort := func(code quic.StreamErrorCode) {
		once.Do(func() {
			for _, s := range []*quic.Stream{a, b} {
				s.CancelRead(code)
				s.CancelWrite(code)
			}
		})
	}
	stop := context.AfterFunc(ctx, func() {
		code := CodeRelayExpired
		if r.ctx.Err() != nil {
			code = CodeRelayClosed
		}
		abort(code)
	})
	defer stop()
	id := r.spliced.Add(1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.pipe(b, a, rs, abort, r.tap(id, true)) }()
	go func() { defer wg.Done(); r.pipe(a, b, rs, abort, r.tap(id, false)) }()
	wg.Wait()
	b.CancelRead(transport.CodeNoError)
}

// tap returns RelayOptions.Tap's writer for one direction of circuit id,
// or nil.
func (r *Relay) tap(id uint64, toTarget bool) io.WriteCloser {
	if r.opts.Tap == nil {
		return nil
	}
	return r.opts.Tap(id, toTarget)
}

// pipe copies src to dst until src ends, then closes dst's send side. tap,
// if not nil, gets a copy of every byte and is closed at the end.
func (r *Relay) pipe(dst, src *quic.Stream, rs *reservation, abort func(quic.StreamErrorCode), tap io.WriteCloser) {
	defer func() {
		if tap != nil {
			tap.Close()
		}
	}()
	buf := make([]byte, 32<<10)
	max := r.opts.Limits.MaxBytes
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if rs.bytes.Add(int64(n)) > max {
				abort(CodeRelayBytes)
				return
			}
			r.bytes.Add(uint64(n))
			if tap != nil {
				if _, terr := tap.Write(buf[:n]); terr != nil {
					r.log.Debug("relay tap", "err", terr)
					tap.Close()
					tap = nil
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				abort(CodeRelayBroken)
				return
			}
		}
		if err == io.EOF {
			dst.Close()
			return
		}
		if err != nil {
			abort(CodeRelayBroken)
			return
		}
	}
}

// serveIncoming accepts a circuit that relay peer brings in from the node
// from, if this node holds a reservation on peer.
func (r *Relay) serveIncoming(ctx context.Context, peer transport.Peer, s *quic.Stream, from key.NodeID) {
	r.mu.Lock()
	_, reserved := r.held[peer.ID]
	r.mu.Unlock()
	switch {
	case r.opts.Incoming == nil:
		r.reply(s, peer, relayReply{Code: RelayRefused, Msg: "this node takes no relayed circuits"})
		return
	case !reserved:
		r.reply(s, peer, relayReply{Code: RelayRefused, Msg: "no reservation held with you"})
		return
	}
	if err := r.reply(s, peer, relayReply{Code: RelayOK}); err != nil {
		return
	}
	r.opts.Incoming(ctx, transport.Peer{ID: from, Addr: netip.AddrPort{}}, s)
}
