package transport

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// TestStatelessResetAfterPeerCrash: a peer that dies without closing its
// connections (no CONNECTION_CLOSE) and comes back with the same identity
// on the same address resets the old connection (RFC 9000 §10.3), so the
// caller reaches the new process within moments, not after the idle
// timeout (30 s).
func TestStatelessResetAfterPeerCrash(t *testing.T) {
	a := newTestEndpoint(t)
	kb := key.NewKeypair()
	b, err := Listen(Options{Identity: kb})
	if err != nil {
		t.Fatal(err)
	}
	b.Handle(ProtoDHT, echoID)
	addr := b.LocalAddr()
	checkReply(t, roundTrip(t, a, b, ProtoDHT, "one"), "one", a.ID())

	// The crash: b's socket goes away, no CONNECTION_CLOSE is sent.
	b.udp.Close()
	defer b.Close()
	b2, err := Listen(Options{Identity: kb, ListenAddr: addr.String()})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	b2.Handle(ProtoDHT, echoID)

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := exchange(ctx, a, kb.ID(), addr, "two")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no working stream to the restarted peer within 5 s (%d attempts): %v", attempt, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("reached the restarted peer after %v; a stateless reset should end the old connection at once", d)
	}
}

// exchange sends msg on a new stream and waits for the echo, each attempt
// bounded to one second.
func exchange(ctx context.Context, a *Endpoint, id key.NodeID, addr netip.AddrPort, msg string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := a.OpenStream(ctx, id, addr, ProtoDHT)
	if err != nil {
		return err
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	if err := WriteFrame(s, []byte(msg)); err != nil {
		return err
	}
	_, err = ReadFrame(s, 1024)
	return err
}
