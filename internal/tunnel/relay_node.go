package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/quic-go/quic-go"
)

// requestTimeout bounds reading a relay request or reply frame.
const requestTimeout = 10 * time.Second

// RelayOptions configure a Relay.
type RelayOptions struct {
	// Serve makes this node a relay: it accepts reservations and connects
	// circuits to reserved nodes. Without it those requests are refused with
	// RelayNotRelay; pings, dial-backs and incoming circuits are served
	// either way.
	Serve bool
	// Limits bound what this node carries as a relay, and its dial-backs.
	Limits RelayLimits
	// Incoming is called, in the stream's handler goroutine, for each
	// circuit a relay this node holds a reservation on brings in. from is
	// the initiator as the relay names it (not authenticated: the tunnel
	// handshake that runs on s is what authenticates). s carries the
	// initiator's bytes end to end; Incoming owns it until it returns and
	// must return soon after ctx ends. Nil refuses incoming circuits.
	Incoming func(ctx context.Context, from transport.Peer, s *quic.Stream)
	// Tap, if set, is called as a relay starts splicing a circuit, once
	// per direction (toTarget: the bytes the initiator sends to the
	// reserved node; else the reserved node's replies), and every byte
	// that direction carries is written, in order, to the writer it
	// returns (nil: that direction is not tapped). The relay closes the
	// writer when the direction ends. circuit numbers this relay's
	// circuits from 1. A write error ends the tapping, not the circuit.
	// For checks: `dweb serve --relay-dump` shows with it what a relay
	// sees, which must be ciphertext only.
	Tap func(circuit uint64, toTarget bool) io.WriteCloser
	// GroupPSKs returns the tunnel PSKs (PSK) of the groups this node is
	// in. As a relay it takes a reserve request that carries a
	// MembershipProof under one of them as a member's (RelayLimits); as a
	// node it sends the proofs of up to 16 of them with its own reserve
	// requests. Nil: no groups (every reservation is a stranger's).
	GroupPSKs func() [][32]byte
	// Logger gets refusals at debug level. Nil discards.
	Logger *slog.Logger
}

// RelayStats counts what a Relay did as a relay server.
type RelayStats struct {
	Reservations int    // held on this relay now
	Strangers    int    // of which strangers' (RelayLimits)
	Circuits     int    // open through this relay now
	Bytes        uint64 // spliced in both directions since start
	Refused      uint64 // requests refused with a non-OK code
}

// Relay runs the relay protocol (transport.ProtoRelay) on one endpoint: as a
// relay server (RelayOptions.Serve), as a node that holds reservations on
// relays and accepts circuits through them, and as the answerer and asker of
// pings and dial-back probes. Circuits are spliced byte for byte: the relay
// only ever carries the Noise tunnel that runs end to end inside them.
// Methods are safe for concurrent use.
type Relay struct {
	ep     *transport.Endpoint
	opts   RelayOptions
	log    *slog.Logger
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	probes chan struct{} // dial-back semaphore

	// Reservations held here, in the node's resource manager: every one,
	// and strangers' (RelayLimits).
	resQ, strangerQ *rcmgr.Quota

	mu     sync.Mutex
	closed bool
	res    map[key.NodeID]*reservation // server side: reservations held here
	held   map[key.NodeID]*Reservation // client side: reservations this node holds

	circuits atomic.Int64
	spliced  atomic.Uint64 // circuits spliced since start, numbering RelayOptions.Tap's
	bytes    atomic.Uint64
	refused  atomic.Uint64
}

// NewRelay registers the relay protocol handler on ep and returns the
// Relay. Close it before closing ep.
func NewRelay(ep *transport.Endpoint, opts RelayOptions) *Relay {
	opts.Limits.setDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Relay{
		ep:     ep,
		opts:   opts,
		log:    opts.Logger.With("relay", ep.ID().String()[:8]),
		probes: make(chan struct{}, opts.Limits.MaxDialBacks),
		resQ: ep.Resources().Quota(KindRelayReservation, rcmgr.Limit{
			Prefix: opts.Limits.MaxReservationsPerPrefix, System: opts.Limits.MaxReservations,
		}),
		strangerQ: ep.Resources().Quota(KindRelayStranger, rcmgr.Limit{
			Prefix: opts.Limits.MaxStrangerReservationsPerPrefix, System: opts.Limits.MaxStrangerReservations,
		}),
		res:  make(map[key.NodeID]*reservation),
		held: make(map[key.NodeID]*Reservation),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	ep.Handle(transport.ProtoRelay, r.handle)
	return r
}

// Stats returns the relay server's counters.
func (r *Relay) Stats() RelayStats {
	r.mu.Lock()
	n := len(r.res)
	strangers := 0
	for _, rs := range r.res {
		if !rs.member {
			strangers++
		}
	}
	r.mu.Unlock()
	return RelayStats{Reservations: n, Strangers: strangers, Circuits: int(r.circuits.Load()), Bytes: r.bytes.Load(), Refused: r.refused.Load()}
}

// Close stops serving the relay protocol, ends every reservation held here
// and by this node, resets circuits in flight and waits for them. It is
// idempotent.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.ep.Handle(transport.ProtoRelay, nil)
	r.cancel()
	r.wg.Wait()
	return nil
}

// enter registers one unit of in-flight work; false after Close.
func (r *Relay) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	return true
}

// handle serves one inbound relay stream.
func (r *Relay) handle(ctx context.Context, peer transport.Peer, s *quic.Stream) {
	if !r.enter() {
		s.CancelRead(CodeRelayClosed)
		s.CancelWrite(CodeRelayClosed)
		return
	}
	defer r.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()

	s.SetReadDeadline(transport.Within(ctx, time.Now().Add(requestTimeout)))
	req, err := readRelayRequest(s)
	if err != nil {
		r.log.Debug("bad relay request", "peer", peer.ID.String(), "err", err)
		if !errors.Is(err, io.EOF) {
			r.reply(s, peer, relayReply{Code: RelayBadRequest, Msg: "bad request: " + err.Error()})
		}
		return
	}
	transport.Opened(ctx) // lifts the read deadline too
	switch req.Op {
	case opReserve:
		r.serveReserve(ctx, peer, s, req.Proofs)
	case opConnect:
		r.serveConnect(ctx, peer, s, req.Peer)
	case opIncoming:
		r.serveIncoming(ctx, peer, s, req.Peer)
	case opDialBack:
		r.serveDialBack(ctx, peer, s, req.Addr)
	case opPing:
		r.reply(s, peer, relayReply{Code: RelayOK})
	default:
		r.reply(s, peer, relayReply{Code: RelayBadRequest, Msg: fmt.Sprintf("unknown op %d", req.Op)})
	}
}

// readRelayRequest reads the request frame that opens a relay stream, the
// first thing any node that dials this one may send: at most maxRelayMsg
// bytes (a longer declared length is refused before anything is read or
// allocated). Errors: as transport.ReadMsg (io.EOF for a stream that ends
// before the frame, io.ErrUnexpectedEOF, *transport.LimitError, a CBOR
// decode error). The op is not checked here; handle answers an unknown op
// with RelayBadRequest.
func readRelayRequest(r io.Reader) (relayRequest, error) {
	var req relayRequest
	err := transport.ReadMsg(r, maxRelayMsg, &req)
	return req, err
}

// readRelayReply reads the reply frame that answers a relay request; the
// bounds and errors are readRelayRequest's.
func readRelayReply(r io.Reader) (relayReply, error) {
	var rep relayReply
	err := transport.ReadMsg(r, maxRelayMsg, &rep)
	return rep, err
}

// reply writes rep to s, as forPeer makes it for peer, and counts
// refusals.
func (r *Relay) reply(s *quic.Stream, peer transport.Peer, rep relayReply) error {
	if rep.Code != RelayOK {
		r.refused.Add(1)
		r.log.Debug("relay refused", "peer", peer.ID.String(), "code", rep.Code, "msg", rep.Msg)
	}
	s.SetWriteDeadline(time.Now().Add(requestTimeout))
	defer s.SetWriteDeadline(time.Time{})
	return transport.WriteMsg(s, rep.forPeer(peer.Addr))
}

// maxRelayText bounds a reply's Msg, in bytes (before the "..." that marks
// a cut), so that every reply fits one frame of maxRelayMsg bytes whatever
// the message quotes from the request.
const maxRelayText = 256

// forPeer returns rep as it is sent to the peer at observed: with that
// address in Observed (if valid) and Msg cut to maxRelayText bytes of
// valid UTF-8.
func (rep relayReply) forPeer(observed netip.AddrPort) relayReply {
	if observed.IsValid() {
		rep.Observed = observed.String()
	}
	msg := strings.ToValidUTF8(rep.Msg, "\ufffd")
	if len(msg) > maxRelayText {
		n := maxRelayText
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n] + "..."
	}
	rep.Msg = msg
	return rep
}

// roundTrip opens a relay stream to peer (dialing addr if no connection is
// pooled), sends req and reads the reply. A non-OK reply is a *RelayError.
// The stream is returned open for the operations that continue on it.
func roundTrip(ctx context.Context, ep *transport.Endpoint, peer transport.Peer, req relayRequest) (*quic.Stream, relayReply, error) {
	s, err := ep.OpenStream(ctx, peer.ID, peer.Addr, transport.ProtoRelay)
	if err != nil {
		return nil, relayReply{}, fmt.Errorf("relay %s: %w", req.Op, err)
	}
	fail := func(err error) (*quic.Stream, relayReply, error) {
		s.CancelRead(CodeRelayBroken)
		s.CancelWrite(CodeRelayBroken)
		return nil, relayReply{}, err
	}
	dl := time.Now().Add(requestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	s.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { s.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := transport.WriteMsg(s, req); err != nil {
		return fail(ctxErr(ctx, fmt.Errorf("relay %s to %s: send: %w", req.Op, peer.ID, err)))
	}
	rep, err := readRelayReply(s)
	if err != nil {
		return fail(ctxErr(ctx, fmt.Errorf("relay %s to %s: read reply: %w", req.Op, peer.ID, err)))
	}
	if !stop() {
		return fail(fmt.Errorf("relay %s to %s: %w", req.Op, peer.ID, ctx.Err()))
	}
	s.SetDeadline(time.Time{})
	if rep.Code != RelayOK {
		s.CancelRead(transport.CodeNoError)
		s.Close()
		return nil, rep, &RelayError{Peer: peer.ID, Op: req.Op.String(), Code: rep.Code, Msg: rep.Msg}
	}
	return s, rep, nil
}

// ctxErr prefers ctx's error when ctx has ended (the failure was most
// likely the deadline it set).
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// parseObserved parses a reply's Observed field: an address another node
// could send UDP to, so one with an IPv6 zone (meaningful only on the
// host that wrote it), an unspecified IP or port 0 is bad. Bad or empty
// gives zero. The peer chooses what it says, and a node may publish it in
// its tunnel descriptors (core's reachability check).
func parseObserved(s string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() || ap.Port() == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
