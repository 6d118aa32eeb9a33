package core

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/tunnel"
	"github.com/quic-go/quic-go"
)

// serveTunnel answers an inbound tunnel stream: a Noise handshake keyed by
// the PSK of one of our groups (a node outside every group cannot finish
// it), then blob requests limited to what that group may see.
func (b *Backend) serveTunnel(ctx context.Context, peer transport.Peer, s *quic.Stream) {
	sess, err := tunnel.Accept(ctx, s, tunnel.AcceptConfig{Static: b.static, LookupPSK: b.lookupPSK})
	if err != nil {
		b.log.Debug("tunnel handshake refused", "peer", peer.ID, "err", err)
		return
	}
	defer sess.Close()
	gs, err := b.group(sess.Group())
	if err != nil {
		return
	}
	allow := func(h blobsync.Hash) bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return gs.servable[h]
	}
	if err := b.blobs.Serve(ctx, sess, allow); err != nil && ctx.Err() == nil {
		b.log.Debug("blob serve ended", "peer", peer.ID, "err", err)
	}
}

func (b *Backend) lookupPSK(g key.RecordKey) ([32]byte, bool) {
	gs, err := b.group(g)
	if err != nil {
		return [32]byte{}, false
	}
	return tunnel.PSK(gs.g.Secret()), true
}

// fetchFrom returns a group.FetchFrom that downloads blob h through a
// tunnel to the node td names, trying its addresses in order.
func (b *Backend) fetchFrom(gs *groupState, h blobsync.Hash, progress func(done, total int64)) func(ctx context.Context, td datarepo.TunnelDescriptor) error {
	return func(ctx context.Context, td datarepo.TunnelDescriptor) error {
		var errs []error
		for _, a := range td.Addrs {
			addr, err := netip.ParseAddrPort(a)
			if err != nil {
				errs = append(errs, fmt.Errorf("address %q: %w", a, err))
				continue
			}
			err = b.fetchVia(ctx, gs, td, addr, h, progress)
			if err == nil {
				return nil
			}
			errs = append(errs, fmt.Errorf("via %s: %w", addr, err))
			if errors.Is(err, blobsync.ErrCorrupt) || ctx.Err() != nil {
				break
			}
		}
		if len(errs) == 0 {
			return errors.New("tunnel descriptor lists no address")
		}
		return errors.Join(errs...)
	}
}

func (b *Backend) fetchVia(ctx context.Context, gs *groupState, td datarepo.TunnelDescriptor, addr netip.AddrPort, h blobsync.Hash, progress func(done, total int64)) error {
	s, err := b.ep.OpenStream(ctx, td.Node, addr, transport.ProtoTunnel)
	if err != nil {
		return err
	}
	sess, err := tunnel.Dial(ctx, s, tunnel.DialConfig{
		Static: b.static, RemoteStatic: td.Static,
		Group: gs.info.ID, PSK: tunnel.PSK(gs.g.Secret()),
	})
	if err != nil {
		s.Close()
		return err
	}
	defer sess.Close()
	_, err = b.blobs.Fetch(ctx, sess, h, progress)
	return err
}
