package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/dwebkit/dweb/internal/transport"
	"github.com/quic-go/quic-go"
)

// TestTLSTransportOverQUIC: over a real QUIC connection, a tunnel bound to
// the connection's TLS exporter negotiates TLS transport mode, after which
// the stream carries the plaintext as is (the recorder sees it), both ways.
func TestTLSTransportOverQUIC(t *testing.T) {
	ctx := testCtx(t)
	group, secret := testGroup(t)
	ma, mb := newMember(t, group, secret), newMember(t, group, secret)
	a, b := newRelayNode(t, RelayOptions{}), newRelayNode(t, RelayOptions{})
	type accepted struct {
		plain   bool
		binding []byte
		err     error
	}
	got := make(chan accepted, 1)
	b.ep.Handle(transport.ProtoTunnel, func(ctx context.Context, _ transport.Peer, s *quic.Stream) {
		cfg := mb.acceptConfig()
		cfg.Binding, cfg.AllowTLSTransport = transport.StreamBinding(ctx), true
		sess, err := Accept(ctx, s, cfg)
		if err != nil {
			got <- accepted{err: err}
			return
		}
		transport.Opened(ctx)
		defer sess.Close()
		got <- accepted{plain: sess.TLSTransport(), binding: cfg.Binding}
		io.Copy(sess, sess)
	})
	s, binding, err := a.ep.OpenStreamBinding(ctx, b.ep.ID(), b.ep.LocalAddr(), transport.ProtoTunnel)
	if err != nil {
		t.Fatal(err)
	}
	if len(binding) != transport.BindingSize {
		t.Fatalf("binding is %d bytes", len(binding))
	}
	rec := &streamRecorder{ReadWriteCloser: s}
	dc := ma.dialConfig(mb)
	dc.Binding, dc.TLSTransport = binding, true
	sess, err := Dial(ctx, rec, dc)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	acc := <-got
	if acc.err != nil {
		t.Fatal(acc.err)
	}
	if !sess.TLSTransport() || !acc.plain {
		t.Fatalf("TLS transport: dialer %v, acceptor %v", sess.TLSTransport(), acc.plain)
	}
	if !bytes.Equal(acc.binding, binding) {
		t.Fatal("the two ends of one connection see different bindings")
	}
	msg := make([]byte, 300<<10)
	rand.Read(msg)
	copy(msg, "PLAINTEXT-MARKER")
	if _, err := sess.Write(msg); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(sess, back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, msg) {
		t.Fatal("echo differs")
	}
	if !bytes.Contains(rec.written(), []byte("PLAINTEXT-MARKER")) {
		t.Fatal("TLS transport mode still Noise-encrypted the bytes")
	}

	// Another connection's binding does not open a tunnel here: the
	// handshake is bound to this connection.
	s2, _, err := a.ep.OpenStreamBinding(ctx, b.ep.ID(), b.ep.LocalAddr(), transport.ProtoTunnel)
	if err != nil {
		t.Fatal(err)
	}
	dc.Binding = bytes.Repeat([]byte{7}, transport.BindingSize)
	if _, err := Dial(ctx, s2, dc); !errors.Is(err, ErrHandshake) {
		t.Fatalf("dial with a foreign binding: err = %v, want ErrHandshake", err)
	}
	if acc := <-got; !errors.Is(acc.err, ErrHandshake) {
		t.Fatalf("accept of a foreign binding: err = %v, want ErrHandshake", acc.err)
	}
}

// streamRecorder keeps what one end writes.
type streamRecorder struct {
	io.ReadWriteCloser
	out bytes.Buffer
}

func (r *streamRecorder) Write(p []byte) (int, error) {
	r.out.Write(p)
	return r.ReadWriteCloser.Write(p)
}

func (r *streamRecorder) written() []byte { return r.out.Bytes() }

// TestTLSTransportNegotiation: the mode is used only when asked for and
// allowed with a binding; otherwise the session encrypts as before, and a
// plain dial is byte for byte the old handshake.
func TestTLSTransportNegotiation(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	binding := bytes.Repeat([]byte{1}, 32)
	for _, tc := range []struct {
		name       string
		ask, allow bool
		want       bool
	}{
		{"asked and allowed", true, true, true},
		{"asked, not allowed", true, false, false},
		{"allowed, not asked", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, cb := tcpPair(t)
			ctx := testCtx(t)
			dc := alice.dialConfig(bob)
			dc.Binding, dc.TLSTransport = binding, tc.ask
			ac := bob.acceptConfig()
			ac.Binding, ac.AllowTLSTransport = binding, tc.allow
			d, a := handshake(ctx, ca, cb, dc, ac)
			if d.err != nil || a.err != nil {
				t.Fatalf("dial: %v, accept: %v", d.err, a.err)
			}
			defer d.s.Close()
			defer a.s.Close()
			if d.s.TLSTransport() != tc.want || a.s.TLSTransport() != tc.want {
				t.Fatalf("TLS transport: dialer %v, acceptor %v, want %v", d.s.TLSTransport(), a.s.TLSTransport(), tc.want)
			}
			moveBoth(t, d.s, a.s, 1<<20)
		})
	}
}

func TestTLSTransportConfig(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	ca, _ := tcpPair(t)
	dc := alice.dialConfig(bob)
	dc.TLSTransport, dc.Binding = true, make([]byte, MinTLSBinding-1)
	if _, err := Dial(testCtx(t), ca, dc); !errors.Is(err, ErrConfig) {
		t.Fatalf("TLS transport with a short binding: err = %v, want ErrConfig", err)
	}
}

// TestTLSTransportFlagTampered: flipping a byte of message 1 (which
// carries the flags) or of message 2 (the answer) fails the handshake; the
// flags cannot be stripped or added in transit.
func TestTLSTransportFlagTampered(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	binding := bytes.Repeat([]byte{2}, 32)
	for _, at := range []int{2 + helloLen + 2 + msg1Len, 2 + helloLen + 2 + 40} {
		ca, cb := tcpPair(t)
		dc := alice.dialConfig(bob)
		dc.Binding, dc.TLSTransport = binding, true
		ac := bob.acceptConfig()
		ac.Binding, ac.AllowTLSTransport = binding, true
		fl := &byteFlipper{ReadWriteCloser: ca, at: at}
		d, a := handshake(testCtx(t), fl, cb, dc, ac)
		if !errors.Is(d.err, ErrHandshake) || !errors.Is(a.err, ErrHandshake) {
			t.Fatalf("flip at %d: dial %v, accept %v; want ErrHandshake on both", at, d.err, a.err)
		}
	}
}

// byteFlipper flips the byte at offset at of what is written through it.
type byteFlipper struct {
	io.ReadWriteCloser
	n, at int
}

func (f *byteFlipper) Write(p []byte) (int, error) {
	q := append([]byte(nil), p...)
	if i := f.at - f.n; i >= 0 && i < len(q) {
		q[i] ^= 0x40
	}
	f.n += len(p)
	return f.ReadWriteCloser.Write(q)
}
