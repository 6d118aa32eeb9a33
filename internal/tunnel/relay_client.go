package tunnel

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/quic-go/quic-go"
)

// Reservation is a reservation this node holds on a relay: while it lasts,
// the relay brings circuits addressed to this node in over the connection
// the reservation keeps open (RelayOptions.Incoming gets them).
type Reservation struct {
	Relay       transport.Peer // the relay, as dialled
	Observed    netip.AddrPort // this node's UDP address as the relay sees it (zero if not reported)
	Expires     time.Time      // when the relay ends the reservation
	MaxBytes    int64          // the relay's byte budget for it, both directions
	MaxCircuits int            // the relay's bound on concurrent circuits
	Member      bool           // the relay took this node's membership proof (RelayOptions.GroupPSKs)

	r        *Relay
	s        *quic.Stream
	done     chan struct{}
	stopOnce sync.Once
}

// Done is closed once the reservation has ended (expiry, relay gone,
// Close).
func (res *Reservation) Done() <-chan struct{} { return res.done }

// Close gives the reservation up.
func (res *Reservation) Close() {
	res.stopOnce.Do(func() {
		res.s.CancelRead(transport.CodeNoError)
		res.s.Close()
	})
	<-res.done
}

// Reserve asks relay (dialled at relay.Addr unless a connection to it is
// pooled) for a reservation and returns it once granted. The request
// carries this node's membership proofs (RelayOptions.GroupPSKs), so a
// relay in one of its groups grants a member's reservation. Errors: a
// *RelayError (ErrNotRelay, ErrRelayLimit) on refusal, ErrRelayClosed after
// Close, transport errors and ctx's error otherwise. ctx bounds the request
// only, not the reservation.
func (r *Relay) Reserve(ctx context.Context, relay transport.Peer) (*Reservation, error) {
	if !r.enter() {
		return nil, ErrRelayClosed
	}
	s, rep, err := roundTrip(ctx, r.ep, relay, relayRequest{Op: opReserve, Proofs: r.proofs(relay.ID)})
	if err != nil {
		r.wg.Done()
		return nil, err
	}
	res := &Reservation{
		Relay:       relay,
		Observed:    parseObserved(rep.Observed),
		Expires:     time.Now().Add(time.Duration(rep.TTLSeconds) * time.Second),
		MaxBytes:    rep.MaxBytes,
		MaxCircuits: int(rep.MaxCircuits),
		Member:      rep.Member,
		r:           r,
		s:           s,
		done:        make(chan struct{}),
	}
	r.mu.Lock()
	old := r.held[relay.ID]
	r.held[relay.ID] = res
	r.mu.Unlock()
	if old != nil {
		go old.Close()
	}
	go res.watch()
	return res, nil
}

// proofs returns this node's membership proofs to relay, one per group
// (RelayOptions.GroupPSKs), at most maxProofs.
func (r *Relay) proofs(relay key.NodeID) [][]byte {
	if r.opts.GroupPSKs == nil {
		return nil
	}
	var out [][]byte
	for _, psk := range r.opts.GroupPSKs() {
		if len(out) == maxProofs {
			break
		}
		p := MembershipProof(psk, relay, r.ep.ID())
		out = append(out, p[:])
	}
	return out
}

// watch waits for the reservation stream to end, then forgets it.
func (res *Reservation) watch() {
	r := res.r
	defer r.wg.Done()
	stop := context.AfterFunc(r.ctx, func() {
		res.stopOnce.Do(func() {
			res.s.CancelRead(CodeRelayClosed)
			res.s.CancelWrite(CodeRelayClosed)
		})
	})
	defer stop()
	var b [1]byte
	res.s.Read(b[:]) // the relay never sends more: this returns when it ends
	res.stopOnce.Do(func() {
		res.s.CancelRead(transport.CodeNoError)
		res.s.Close()
	})
	r.mu.Lock()
	if r.held[res.Relay.ID] == res {
		delete(r.held, res.Relay.ID)
	}
	r.mu.Unlock()
	close(res.done)
}

// Reservations lists the reservations this node holds now, ordered by
// relay node ID.
func (r *Relay) Reservations() []*Reservation {
	r.mu.Lock()
	out := make([]*Reservation, 0, len(r.held))
	for _, res := range r.held {
		out = append(out, res)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Relay.ID.String() < out[j].Relay.ID.String() })
	return out
}

// Connect asks relay to join a new stream to target, which must hold a
// reservation there, and returns the stream once target has accepted: run
// the tunnel handshake (Dial) on it. Errors: a *RelayError
// (ErrNoReservation, ErrRelayLimit, ErrRelayRefused,
// ErrRelayTargetUnreachable, ErrNotRelay), transport errors, ctx's error.
func (r *Relay) Connect(ctx context.Context, relay transport.Peer, target key.NodeID) (*quic.Stream, error) {
	s, _, err := roundTrip(ctx, r.ep, relay, relayRequest{Op: opConnect, Peer: target})
	if err != nil {
		return nil, fmt.Errorf("connect to %s through %s: %w", target, relay.ID, err)
	}
	return s, nil
}

// Backoff bounds for Keep.
const (
	keepMinBackoff = time.Second
	keepMaxBackoff = time.Minute
)

// Keep holds a reservation on each relay until ctx ends or the Relay
// closes: it reserves, waits for the reservation to end, and reserves again,
// after a backoff that doubles from 1 s to 1 min (with jitter) while
// attempts fail, and is reset by a reservation that lasted over a minute.
// onChange, if not nil, is called (from Keep's goroutines) each time a
// reservation starts or ends. Keep returns at once.
func (r *Relay) Keep(ctx context.Context, relays []transport.Peer, onChange func()) {
	if onChange == nil {
		onChange = func() {}
	}
	for _, relay := range relays {
		if !r.enter() {
			return
		}
		go func() {
			defer r.wg.Done()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(r.ctx, cancel)
			defer stop()
			backoff := keepMinBackoff
			for ctx.Err() == nil {
				rctx, rcancel := context.WithTimeout(ctx, r.opts.Limits.DialTimeout+requestTimeout)
				res, err := r.Reserve(rctx, relay)
				rcancel()
				if err == nil {
					r.log.Debug("reserved", "relay", relay.ID.String(), "observed", res.Observed, "expires", res.Expires)
					onChange()
					start := time.Now()
					select {
					case <-res.Done():
					case <-ctx.Done():
						res.Close()
					}
					onChange()
					if time.Since(start) > keepMaxBackoff {
						backoff = keepMinBackoff
						continue
					}
				} else {
					r.log.Debug("reserve failed", "relay", relay.ID.String(), "err", err, "retry_in", backoff)
				}
				wait := backoff/2 + rand.N(backoff/2+1)
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
				backoff = min(2*backoff, keepMaxBackoff)
			}
		}()
	}
}
