package tunnel

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/quic-go/quic-go"
)

// reservation is one node's reservation on this relay.
type reservation struct {
	node    key.NodeID
	member  bool // proved membership of a group this relay serves
	expires time.Time
	// charges in Relay.resQ and (strangers) Relay.strangerQ, held while
	// the reservation is in Relay.res; guarded by Relay.mu
	charge, strangerCharge rcmgr.Charge
	bytes                  atomic.Int64 // spliced so far, both directions, all circuits
	circuits               int          // open now; guarded by Relay.mu
	// gone is closed when the reservation expires, its stream ends or the
	// relay closes: its circuits end then. A replaced reservation's
	// circuits keep running until its own expiry.
	gone     chan struct{}
	goneOnce sync.Once
	replaced chan struct{} // closed when the node reserved again
}

func (rs *reservation) end() { rs.goneOnce.Do(func() { close(rs.gone) }) }

// serveReserve holds a reservation for peer for as long as its stream stays
// open, up to the TTL: a member's if one of proofs proves it a member of a
// group this node serves, else a stranger's, with the stranger's shorter
// TTL and smaller shares.
func (r *Relay) serveReserve(ctx context.Context, peer transport.Peer, s *quic.Stream, proofs [][]byte) {
	if !r.opts.Serve {
		r.reply(s, peer, relayReply{Code: RelayNotRelay, Msg: "this node does not relay"})
		return
	}
	lim := r.opts.Limits
	member := r.isMember(peer.ID, proofs)
	ttl := lim.ReservationTTL
	if !member {
		ttl = lim.StrangerReservationTTL
	}
	rs := &reservation{node: peer.ID, member: member, expires: time.Now().Add(ttl), gone: make(chan struct{}), replaced: make(chan struct{})}
	r.mu.Lock()
	old := r.res[peer.ID]
	if err := r.chargeLocked(rs, old, peer.Addr); err != nil {
		r.mu.Unlock()
		r.reply(s, peer, relayReply{Code: RelayLimit, Msg: "reservations: " + err.Error()})
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
			r.releaseLocked(rs)
		}
		r.mu.Unlock()
	}()

	err := r.reply(s, peer, relayReply{
		Code:        RelayOK,
		TTLSeconds:  uint32(ttl / time.Second),
		MaxBytes:    lim.MaxBytes,
		MaxCircuits: uint32(lim.MaxCircuits),
		Member:      member,
	})
	if err != nil {
		rs.end()
		return
	}
	r.log.Debug("reservation", "node", peer.ID.String(), "addr", peer.Addr, "member", member, "ttl", ttl)

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

// chargeLocked counts rs (replacing old, if any, whose charges it takes
// over or gives back) in the relay's quotas, from addr; r.mu is held. On
// a refusal nothing changes and the *rcmgr.LimitError is returned.
func (r *Relay) chargeLocked(rs, old *reservation, addr netip.AddrPort) error {
	if old != nil && old.member == rs.member {
		rs.charge, rs.strangerCharge = old.charge, old.strangerCharge
		old.charge, old.strangerCharge = rcmgr.Charge{}, rcmgr.Charge{}
		return nil
	}
	if old != nil {
		r.releaseLocked(old)
	}
	err := r.takeLocked(rs, addr)
	if err != nil && old != nil {
		r.takeLocked(old, addr) // the room it just gave back: cannot fail under r.mu
	}
	return err
}

// takeLocked takes rs's charges; r.mu is held.
func (r *Relay) takeLocked(rs *reservation, addr netip.AddrPort) error {
	c, err := r.resQ.Take(rs.node, addr.Addr())
	if err != nil {
		return err
	}
	if !rs.member {
		sc, err := r.strangerQ.Take(rs.node, addr.Addr())
		if err != nil {
			r.resQ.Release(c)
			return err
		}
		rs.strangerCharge = sc
	}
	rs.charge = c
	return nil
}

// releaseLocked gives rs's charges back; r.mu is held.
func (r *Relay) releaseLocked(rs *reservation) {
	r.resQ.Release(rs.charge)
	r.strangerQ.Release(rs.strangerCharge)
	rs.charge, rs.strangerCharge = rcmgr.Charge{}, rcmgr.Charge{}
}

// isMember reports whether one of proofs is node's MembershipProof to this
// relay under one of the PSKs of RelayOptions.GroupPSKs.
func (r *Relay) isMember(node key.NodeID, proofs [][]byte) bool {
	if r.opts.GroupPSKs == nil || len(proofs) == 0 {
		return false
	}
	for _, psk := range r.opts.GroupPSKs() {
		want := MembershipProof(psk, r.ep.ID(), node)
		for _, p := range proofs[:min(len(proofs), maxProofs)] {
			if subtle.ConstantTimeCompare(p, want[:]) == 1 {
				return true
			}
		}
	}
	return false
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
