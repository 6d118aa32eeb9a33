package tunnel

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/quic-go/quic-go"
)

// DialBackResult is what a dial-back probe learned.
type DialBackResult struct {
	// Reachable: a fresh QUIC connection from another UDP socket of the
	// prober, to the probed address, completed its handshake with this
	// node's identity and answered a ping.
	Reachable bool
	// Probed is the address the prober dialled.
	Probed netip.AddrPort
	// Observed is this node's UDP address as the prober sees it: the
	// public address when this node is behind NAT.
	Observed netip.AddrPort
}

// Ping asks peer for this node's UDP address as peer sees it.
func (r *Relay) Ping(ctx context.Context, peer transport.Peer) (netip.AddrPort, error) {
	s, rep, err := roundTrip(ctx, r.ep, peer, relayRequest{Op: opPing})
	if err != nil {
		return netip.AddrPort{}, err
	}
	s.CancelRead(transport.CodeNoError)
	s.Close()
	return parseObserved(rep.Observed), nil
}

// DialBack asks peer to dial this node afresh at addr, from a new UDP socket
// and a throwaway identity, so that only an address open to unsolicited
// packets passes: the test of whether this node is reachable (the NAT
// mapping our own connection to peer opened does not help a new socket
// through an address- and port-dependent filter). A zero addr means the
// address peer sees this request come from. peer refuses (ErrDialBackRefused)
// an address whose IP is not the observed one, so the probe cannot be aimed
// at third parties, and runs at most RelayLimits.MaxDialBacks at once
// (ErrRelayLimit).
func (r *Relay) DialBack(ctx context.Context, peer transport.Peer, addr netip.AddrPort) (DialBackResult, error) {
	req := relayRequest{Op: opDialBack}
	if addr.IsValid() {
		req.Addr = addr.String()
	}
	s, rep, err := roundTrip(ctx, r.ep, peer, req)
	if err != nil {
		return DialBackResult{}, err
	}
	s.CancelRead(transport.CodeNoError)
	s.Close()
	obs := parseObserved(rep.Observed)
	probed := addr
	if !probed.IsValid() {
		probed = obs
	}
	return DialBackResult{Reachable: rep.Reachable, Probed: probed, Observed: obs}, nil
}

// serveDialBack probes addr (or peer's observed address) from a temporary
// endpoint and reports whether peer answered there.
func (r *Relay) serveDialBack(ctx context.Context, peer transport.Peer, s *quic.Stream, addrText string) {
	target, refuse := dialBackTarget(addrText, peer.Addr)
	if refuse != nil {
		r.reply(s, peer, *refuse)
		return
	}
	select {
	case r.probes <- struct{}{}:
		defer func() { <-r.probes }()
	default:
		r.reply(s, peer, relayReply{Code: RelayLimit, Msg: "too many dial-backs in progress"})
		return
	}
	reachable := r.probe(ctx, peer.ID, target)
	r.reply(s, peer, relayReply{Code: RelayOK, Reachable: reachable})
}

// dialBackTarget picks the address a dial-back request asks to probe:
// addrText (a UDP host:port, as the request's Addr carries it) or, when it
// is empty, observed, the address the request came from. The target must
// be on observed's IP with a non-zero port, so a probe cannot be aimed at a
// third party; otherwise it returns the refusal to answer with
// (RelayBadRequest for an address that does not parse,
// RelayDialBackRefused for one elsewhere).
func dialBackTarget(addrText string, observed netip.AddrPort) (netip.AddrPort, *relayReply) {
	target := observed
	if addrText != "" {
		ap, err := netip.ParseAddrPort(addrText)
		if err != nil {
			return netip.AddrPort{}, &relayReply{Code: RelayBadRequest, Msg: fmt.Sprintf("dial-back address %q: %v", addrText, err)}
		}
		target = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if !target.IsValid() || target.Addr() != observed.Addr() || target.Port() == 0 {
		return netip.AddrPort{}, &relayReply{Code: RelayDialBackRefused, Msg: fmt.Sprintf("dial-back address %s is not on your observed address %s", target, observed)}
	}
	return target, nil
}

// probe dials id at addr from a fresh endpoint and pings it.
func (r *Relay) probe(ctx context.Context, id key.NodeID, addr netip.AddrPort) bool {
	lim := r.opts.Limits
	bind := "0.0.0.0:0"
	if la := r.ep.LocalAddr(); la.IsValid() && !la.Addr().IsUnspecified() && la.Addr().Is4() == addr.Addr().Is4() {
		bind = netip.AddrPortFrom(la.Addr(), 0).String()
	} else if !addr.Addr().Is4() {
		bind = "[::]:0"
	}
	tmp, err := transport.Listen(transport.Options{
		Identity:         key.NewKeypair(),
		ListenAddr:       bind,
		DialTimeout:      lim.DialTimeout,
		HandshakeTimeout: lim.DialTimeout,
		KeepAlive:        -1,
	})
	if err != nil {
		r.log.Debug("dial-back: temporary endpoint", "err", err)
		return false
	}
	defer tmp.Close()
	ctx, cancel := context.WithTimeout(ctx, lim.DialTimeout)
	defer cancel()
	ps, _, err := roundTrip(ctx, tmp, transport.Peer{ID: id, Addr: addr}, relayRequest{Op: opPing})
	if err != nil {
		r.log.Debug("dial-back: not reachable", "node", id.String(), "addr", addr, "err", err)
		return false
	}
	ps.CancelRead(transport.CodeNoError)
	ps.Close()
	return true
}
