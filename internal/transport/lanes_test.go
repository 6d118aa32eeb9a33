package transport

import (
	"bytes"
	"context"
	"net/netip"
	"testing"

	"github.com/quic-go/quic-go"
)

// TestLanes: each lane to a peer is a QUIC connection of its own (its
// own channel binding, seen by the peer's handler as such), reused by
// the lane's next stream; lane 0 is the pooled connection; a lane out of
// range is refused; Disconnect closes the lanes too.
func TestLanes(t *testing.T) {
	a, b := newTestEndpoint(t), newTestEndpoint(t)
	seen := make(chan []byte, 8)
	b.Handle(ProtoTunnel, func(ctx context.Context, _ Peer, s *quic.Stream) {
		seen <- StreamBinding(ctx)
	})
	open := func(lane int, addr netip.AddrPort) []byte {
		t.Helper()
		s, bind, err := a.OpenStreamLane(testCtx(t), b.ID(), addr, ProtoTunnel, lane)
		if err != nil {
			t.Fatalf("lane %d: %v", lane, err)
		}
		s.Close()
		if got := <-seen; !bytes.Equal(got, bind) {
			t.Fatalf("lane %d: opener's binding %x, handler's %x", lane, bind, got)
		}
		return bind
	}
	l0 := open(0, b.LocalAddr())
	l1 := open(1, b.LocalAddr())
	l2 := open(2, netip.AddrPort{}) // the pooled connection's address
	if bytes.Equal(l0, l1) || bytes.Equal(l1, l2) || bytes.Equal(l0, l2) {
		t.Fatal("two lanes share a connection")
	}
	if again := open(1, b.LocalAddr()); !bytes.Equal(again, l1) {
		t.Fatal("a lane's second stream opened another connection")
	}
	if _, _, err := a.OpenStreamLane(testCtx(t), b.ID(), b.LocalAddr(), ProtoTunnel, MaxLanes); err == nil {
		t.Fatal("a lane out of range was opened")
	}
	if n := a.Disconnect(b.ID()); n != 3 {
		t.Fatalf("Disconnect closed %d connections, want 3", n)
	}
	if again := open(1, b.LocalAddr()); bytes.Equal(again, l1) {
		t.Fatal("a lane kept its connection after Disconnect")
	}
}
