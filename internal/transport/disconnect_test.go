package transport

import (
	"testing"
	"time"
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
