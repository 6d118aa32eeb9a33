package transport

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// TestDisconnect: Disconnect closes the pooled connection on both sides;
// the next OpenStream dials a new one.
func TestDisconnect(t *testing.T) {
	a, b := newTestEndpoint(t), newTestEndpoint(t)
	a.Handle(ProtoDHT, echoID)
	b.Handle(ProtoDHT, echoID)
	checkReply(t, roundTrip(t, a, b, ProtoDHT, "one"), "one", a.ID())
	if n := a.Disconnect(b.ID()); n != 1 {
		t.Fatalf("Disconnect closed %d connections, want 1", n)
	}
	if _, ok := a.PooledAddr(b.ID()); ok {
		t.Fatal("a connection to b is still pooled")
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Conns != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("b still has %d connections open", b.Stats().Conns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkReply(t, roundTrip(t, a, b, ProtoDHT, "two"), "two", a.ID())
	if st := a.Stats(); st.Dials != 2 {
		t.Fatalf("a dialled %d times, want 2", st.Dials)
	}
	if n := a.Disconnect(a.ID()); n != 0 {
		t.Fatalf("Disconnect of an unknown peer closed %d", n)
	}
	a.Close()
	if n := a.Disconnect(b.ID()); n != 0 {
		t.Fatalf("Disconnect after Close closed %d", n)
	}
}

// TestPeerShutdown: a peer's Close reaches this endpoint as a shutdown
// (SetPeerShutdown's callback, with its ID); a Disconnect does not.
func TestPeerShutdown(t *testing.T) {
	a, b, c := newTestEndpoint(t), newTestEndpoint(t), newTestEndpoint(t)
	for _, e := range []*Endpoint{a, b, c} {
		e.Handle(ProtoDHT, echoID)
	}
	gone := make(chan key.NodeID, 4)
	a.SetPeerShutdown(func(id key.NodeID) { gone <- id })
	checkReply(t, roundTrip(t, a, b, ProtoDHT, "b"), "b", a.ID())
	checkReply(t, roundTrip(t, a, c, ProtoDHT, "c"), "c", a.ID())

	// c drops its connection to a but stays up: not a shutdown.
	c.Disconnect(a.ID())
	deadline := time.Now().Add(5 * time.Second)
	for a.Stats().Conns != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("a still has %d connections open", a.Stats().Conns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Close()
	select {
	case id := <-gone:
		if id != b.ID() {
			t.Fatalf("shutdown reported of %s, want b (%s); c only disconnected", id, b.ID())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b's Close was not reported as a shutdown")
	}
	if len(gone) != 0 {
		t.Fatalf("a second shutdown reported, of %s", <-gone)
	}
}

// TestDisconnectAll: DisconnectAll closes the connections to every peer,
// which then see them gone, and the next OpenStream dials again.
func TestDisconnectAll(t *testing.T) {
	a, b, c := newTestEndpoint(t), newTestEndpoint(t), newTestEndpoint(t)
	for _, e := range []*Endpoint{a, b, c} {
		e.Handle(ProtoDHT, echoID)
	}
	checkReply(t, roundTrip(t, a, b, ProtoDHT, "b"), "b", a.ID())
	checkReply(t, roundTrip(t, a, c, ProtoDHT, "c"), "c", a.ID())
	if n := a.DisconnectAll(); n != 2 {
		t.Fatalf("DisconnectAll closed %d connections, want 2", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Conns+c.Stats().Conns != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("b and c still have %d and %d connections", b.Stats().Conns, c.Stats().Conns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkReply(t, roundTrip(t, a, b, ProtoDHT, "again"), "again", a.ID())
	if st := a.Stats(); st.Dials != 3 {
		t.Fatalf("a dialled %d times, want 3", st.Dials)
	}
	a.Close()
	if n := a.DisconnectAll(); n != 0 {
		t.Fatalf("DisconnectAll after Close closed %d", n)
	}
}

// TestShutdownHold: right after a peer's clean shutdown, a request to it
// fails at once (ErrPeerShutdown, or the closed connection) instead of
// dialling a node that is gone and waiting out the dial timeout; once the
// peer is back and has connected, it is reached again.
func TestShutdownHold(t *testing.T) {
	for i := range 20 {
		a, b := newTestEndpoint(t), newTestEndpoint(t)
		a.Handle(ProtoDHT, echoID)
		b.Handle(ProtoDHT, echoID)
		checkReply(t, roundTrip(t, a, b, ProtoDHT, "b"), "b", a.ID())
		b.Close()
		time.Sleep(time.Duration(i%4) * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		s, err := a.OpenStream(ctx, b.ID(), b.LocalAddr(), ProtoDHT)
		if err == nil {
			s.SetDeadline(time.Now().Add(5 * time.Second))
			if err = WriteFrame(s, []byte("gone?")); err == nil {
				_, err = ReadFrame(s, 1024)
			}
		}
		cancel()
		if took := time.Since(start); err == nil || took > time.Second {
			t.Fatalf("run %d: a request %d ms after b's Close: %v after %v; want an error at once", i, i%4, err, took)
		}
		a.Close()
	}

	kp := key.NewKeypair()
	a := newTestEndpoint(t)
	a.Handle(ProtoDHT, echoID)
	b, err := Listen(Options{Identity: kp})
	if err != nil {
		t.Fatal(err)
	}
	b.Handle(ProtoDHT, echoID)
	gone := make(chan key.NodeID, 1)
	a.SetPeerShutdown(func(id key.NodeID) { gone <- id })
	addr := b.LocalAddr()
	checkReply(t, roundTrip(t, a, b, ProtoDHT, "b"), "b", a.ID())
	b.Close()
	<-gone
	start := time.Now()
	if _, err := a.OpenStream(testCtx(t), kp.ID(), addr, ProtoDHT); !errors.Is(err, ErrPeerShutdown) || time.Since(start) > 200*time.Millisecond {
		t.Fatalf("OpenStream to a peer that shut down: %v after %v; want ErrPeerShutdown at once", err, time.Since(start))
	}
	// b comes back at its address and calls a: the hold ends.
	b2, err := Listen(Options{Identity: kp, ListenAddr: addr.String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b2.Close() })
	b2.Handle(ProtoDHT, echoID)
	checkReply(t, roundTrip(t, b2, a, ProtoDHT, "back"), "back", b2.ID())
	checkReply(t, roundTrip(t, a, b2, ProtoDHT, "again"), "again", a.ID())
}
