package transport

import (
	"bytes"
	"context"
	"testing"

	"github.com/quic-go/quic-go"
)

// TestStreamBinding: both ends of a connection see the same 32-byte
// binding; another connection (a third node) gets a different one; a
// context that is not a handler's has none.
func TestStreamBinding(t *testing.T) {
	a, b, c := newTestEndpoint(t), newTestEndpoint(t), newTestEndpoint(t)
	seen := make(chan []byte, 2)
	b.Handle(ProtoTunnel, func(ctx context.Context, _ Peer, s *quic.Stream) {
		seen <- StreamBinding(ctx)
	})
	open := func(from *Endpoint) []byte {
		s, bind, err := from.OpenStreamBinding(testCtx(t), b.ID(), b.LocalAddr(), ProtoTunnel)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if got := <-seen; !bytes.Equal(got, bind) {
			t.Fatalf("opener's binding %x, handler's %x", bind, got)
		}
		if len(bind) != BindingSize {
			t.Fatalf("binding is %d bytes", len(bind))
		}
		return bind
	}
	ab, cb := open(a), open(c)
	if bytes.Equal(ab, cb) {
		t.Fatal("two connections have the same binding")
	}
	if again := open(a); !bytes.Equal(again, ab) {
		t.Fatal("two streams of one connection have different bindings")
	}
	if StreamBinding(context.Background()) != nil {
		t.Fatal("binding outside a handler")
	}
}
