package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/quic-go/quic-go"
)

// newTestEndpoint listens on 127.0.0.1 with a fresh identity and closes at
// the end of the test.
func newTestEndpoint(t *testing.T) *Endpoint {
	t.Helper()
	e, err := Listen(Options{Identity: key.NewKeypair()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// echoID answers each request frame with the request followed by the
// caller's node ID as the handler saw it.
func echoID(ctx context.Context, peer Peer, s *quic.Stream) {
	for {
		b, err := ReadFrame(s, 1024)
		if err != nil {
			return
		}
		if err := WriteFrame(s, append(b, peer.ID[:]...)); err != nil {
			return
		}
	}
}

// roundTrip opens a stream from a to b, sends msg and returns the reply.
func roundTrip(t *testing.T, a, b *Endpoint, p Protocol, msg string) []byte {
	t.Helper()
	s, err := a.OpenStream(testCtx(t), b.ID(), b.LocalAddr(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := WriteFrame(s, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	reply, err := ReadFrame(s, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

func checkReply(t *testing.T, reply []byte, msg string, caller key.NodeID) {
	t.Helper()
	if string(reply[:len(msg)]) != msg {
		t.Fatalf("reply %q does not start with %q", reply, msg)
	}
	if got := key.NodeID(reply[len(msg):]); got != caller {
		t.Fatalf("handler saw caller %s, want %s", got, caller)
	}
}

func TestExchangeBothWays(t *testing.T) {
	a, b := newTestEndpoint(t), newTestEndpoint(t)
	a.Handle(ProtoDHT, echoID)
	b.Handle(ProtoDHT, echoID)

	checkReply(t, roundTrip(t, a, b, ProtoDHT, "a to b"), "a to b", a.ID())
	checkReply(t, roundTrip(t, b, a, ProtoDHT, "b to a"), "b to a", b.ID())

	// The peer address the handler sees is the other endpoint's socket.
	got := make(chan Peer, 1)
	b.Handle(ProtoBlobs, func(ctx context.Context, peer Peer, s *quic.Stream) {
		got <- peer
	})
	s, err := a.OpenStream(testCtx(t), b.ID(), b.LocalAddr(), ProtoBlobs)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case p := <-got:
		if p.ID != a.ID() || p.Addr != a.LocalAddr() {
			t.Fatalf("handler saw %v %v, want %v %v", p.ID, p.Addr, a.ID(), a.LocalAddr())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blobs handler not called")
	}
}

func TestWrongPeer(t *testing.T) {
	a, b := newTestEndpoint(t), newTestEndpoint(t)
	called := make(chan struct{}, 1)
	b.Handle(ProtoDHT, func(context.Context, Peer, *quic.Stream) { called <- struct{}{} })

	other := key.NewKeypair().ID()
	_, err := a.OpenStream(testCtx(t), other, b.LocalAddr(), ProtoDHT)
	if !errors.Is(err, ErrWrongPeer) {
		t.Fatalf("got %v, want ErrWrongPeer", err)
	}
	if st := a.Stats(); st.Dials != 0 || st.Conns != 0 {
		t.Fatalf("dialer kept a connection: %+v", st)
	}
	// The handshake failed before the dialer finished it: the listener
	// never accepted a connection, so no stream could reach the handler.
	time.Sleep(50 * time.Millisecond)
	if st := b.Stats(); st.Accepted != 0 {
		t.Fatalf("listener accepted the connection: %+v", st)
	}
	select {
	case <-called:
		t.Fatal("handler ran for a wrong-peer dial")
	default:
	}
	// The right ID still works afterwards.
	if _, err := a.OpenStream(testCtx(t), b.ID(), b.LocalAddr(), ProtoDHT); err != nil {
		t.Fatal(err)
	}
}

func TestPoolReusesOneConnection(t *testing.T) {
	a, b := newTestEndpoint(t), newTestEndpoint(t)
	b.Handle(ProtoDHT, echoID)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			s, err := a.OpenStream(testCtx(t), b.ID(), b.LocalAddr(), ProtoDHT)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			msg := []byte{byte(i)}
			if err := WriteFrame(s, msg); err != nil {
				errs <- err
				return
			}
			reply, err := ReadFrame(s, 1024)
			if err != nil {
				errs <- err
				return
			}
			if reply[0] != byte(i) || key.NodeID(reply[1:]) != a.ID() {
				errs <- errors.New("wrong reply")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Dials != 1 || st.Conns != 1 || st.Pooled != 1 {
		t.Fatalf("dialer stats %+v, want one dial and one connection", st)
	}
	if st := b.Stats(); st.Accepted != 1 || st.Conns != 1 {
		t.Fatalf("listener stats %+v, want one accepted connection", st)
	}
}

func TestInboundConnectionReusedForOutbound(t *testing.T) {
	a, b := newTestEndpoint(t), newTestEndpoint(t)
	a.Handle(ProtoDHT, echoID)
	b.Handle(ProtoDHT, echoID)
	roundTrip(t, a, b, ProtoDHT, "hello")

	// b has no address for a that works: it must use the inbound connection.
	s, err := b.OpenStream(testCtx(t), a.ID(), netip.AddrPort{}, ProtoDHT)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(s, []byte("back")); err != nil {
		t.Fatal(err)
	}
	reply, err := ReadFrame(s, 1024)
	if err != nil {
		t.Fatal(err)
	}
	checkReply(t, reply, "back", b.ID())
	s.Close()
	if st := b.Stats(); st.Dials != 0 || st.Conns != 1 {
		t.Fatalf("b stats %+v, want no dial", st)
	}
	if st := a.Stats(); st.Accepted != 0 || st.Conns != 1 {
		t.Fatalf("a stats %+v, want no accepted connection", st)
	}
}

func TestUnknownProtocolResetsStream(t *testing.T) {
	a, b := newTestEndpoint(t), newTestEndpoint(t)
	b.Handle(ProtoDHT, echoID)
	s, err := a.OpenStream(testCtx(t), b.ID(), b.LocalAddr(), Protocol(200))
	if err != nil {
		t.Fatal(err)
	}
	WriteFrame(s, []byte("anyone?"))
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = ReadFrame(s, 1024)
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != CodeUnknownProtocol || !se.Remote {
		t.Fatalf("got %v, want remote stream reset with CodeUnknownProtocol", err)
	}
	// The connection survives and serves known protocols.
	checkReply(t, roundTrip(t, a, b, ProtoDHT, "still here"), "still here", a.ID())
	if st := a.Stats(); st.Dials != 1 {
		t.Fatalf("stats %+v, want the same connection", st)
	}
}

func TestHandlerPanicResetsStream(t *testing.T) {
	a, b := newTestEndpoint(t), newTestEndpoint(t)
	b.Handle(ProtoRelay, func(context.Context, Peer, *quic.Stream) { panic("boom") })
	s, err := a.OpenStream(testCtx(t), b.ID(), b.LocalAddr(), ProtoRelay)
	if err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(s)
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != CodeInternal {
		t.Fatalf("got %v, want stream reset with CodeInternal", err)
	}
}

func TestRedialAfterPeerRestart(t *testing.T) {
	a := newTestEndpoint(t)
	kb := key.NewKeypair()
	b, err := Listen(Options{Identity: kb})
	if err != nil {
		t.Fatal(err)
	}
	b.Handle(ProtoDHT, echoID)
	addr := b.LocalAddr()
	roundTrip(t, a, b, ProtoDHT, "one")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, err := Listen(Options{Identity: kb, ListenAddr: addr.String()})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	b2.Handle(ProtoDHT, echoID)
	// b's CONNECTION_CLOSE reached a, so its pooled connection is dead.
	deadline := time.Now().Add(5 * time.Second)
	for a.Stats().Pooled != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// b shut down cleanly: for ShutdownHold a does not dial it (b2 has
	// not called a), then it does.
	closed := time.Now()
	if _, err := a.OpenStream(testCtx(t), kb.ID(), addr, ProtoDHT); !errors.Is(err, ErrPeerShutdown) {
		t.Fatalf("OpenStream within ShutdownHold: %v, want ErrPeerShutdown", err)
	}
	time.Sleep(ShutdownHold - time.Since(closed) + 10*time.Millisecond)
	checkReply(t, roundTrip(t, a, b2, ProtoDHT, "two"), "two", a.ID())
	if st := a.Stats(); st.Dials != 2 || st.Conns != 1 {
		t.Fatalf("stats %+v, want a second dial and one live connection", st)
	}
}

func TestCloseCancelsHandlersAndLeaksNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	a, err := Listen(Options{Identity: key.NewKeypair()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Listen(Options{Identity: key.NewKeypair()})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 4)
	ended := make(chan error, 4)
	b.Handle(ProtoTunnel, func(ctx context.Context, peer Peer, s *quic.Stream) {
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
	})
	for range 3 {
		s, err := a.OpenStream(testCtx(t), b.ID(), b.LocalAddr(), ProtoTunnel)
		if err != nil {
			t.Fatal(err)
		}
		WriteFrame(s, []byte("x"))
		<-started
	}
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for range 3 {
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("handler ctx ended with %v", err)
		}
	}
	if _, err := b.OpenStream(testCtx(t), a.ID(), a.LocalAddr(), ProtoDHT); !errors.Is(err, ErrClosed) {
		t.Fatalf("OpenStream after Close: %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestListenerRejectsClientWithoutCertificate(t *testing.T) {
	b := newTestEndpoint(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, b.LocalAddr().String(), &tls.Config{
		InsecureSkipVerify: true,
		NextProtos:         []string{ALPN},
		MinVersion:         tls.VersionTLS13,
	}, nil)
	if err == nil {
		// TLS 1.3 clients finish before the server checks them; the
		// server's rejection arrives as the connection closing.
		select {
		case <-conn.Context().Done():
		case <-ctx.Done():
			t.Fatal("listener kept a connection without a client certificate")
		}
	}
	time.Sleep(20 * time.Millisecond)
	if st := b.Stats(); st.Accepted != 0 {
		t.Fatalf("accepted: %+v", st)
	}
}

func TestVerifyPeerCert(t *testing.T) {
	kp := key.NewKeypair()
	good, err := selfSignedCert(kp)
	if err != nil {
		t.Fatal(err)
	}
	id, err := verifyPeerCert(good.Certificate)
	if err != nil || id != kp.ID() {
		t.Fatalf("own cert: %v %v", id, err)
	}

	// Signed by another ed25519 key: not self-signed.
	other := key.NewKeypair()
	parent := *good.Leaf
	parent.PublicKey = other.Public()
	forged, err := x509.CreateCertificate(rand.Reader, good.Leaf, &parent, kp.Public(), other.Private)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifyPeerCert([][]byte{forged}); !errors.Is(err, ErrBadCertificate) {
		t.Fatalf("cert signed by another key: %v", err)
	}

	// ECDSA key.
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	ec, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ek.PublicKey, ek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifyPeerCert([][]byte{ec}); !errors.Is(err, ErrBadCertificate) {
		t.Fatalf("ecdsa cert: %v", err)
	}

	for name, chain := range map[string][][]byte{
		"none":    nil,
		"two":     {good.Certificate[0], good.Certificate[0]},
		"garbage": {[]byte("not a certificate")},
	} {
		if _, err := verifyPeerCert(chain); !errors.Is(err, ErrBadCertificate) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestListenBadOptions(t *testing.T) {
	if _, err := Listen(Options{}); err == nil {
		t.Fatal("Listen without identity succeeded")
	}
	if _, err := Listen(Options{Identity: key.NewKeypair(), ListenAddr: "not an address"}); err == nil {
		t.Fatal("Listen with bad address succeeded")
	}
	a := newTestEndpoint(t)
	if _, err := a.OpenStream(testCtx(t), a.ID(), a.LocalAddr(), ProtoDHT); err == nil {
		t.Fatal("OpenStream to self succeeded")
	}
	if _, err := a.OpenStream(testCtx(t), key.NewKeypair().ID(), netip.AddrPort{}, ProtoDHT); err == nil {
		t.Fatal("OpenStream without connection or address succeeded")
	}
}

func TestSimultaneousDials(t *testing.T) {
	a, b := newTestEndpoint(t), newTestEndpoint(t)
	a.Handle(ProtoDHT, echoID)
	b.Handle(ProtoDHT, echoID)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { checkReply(t, roundTrip(t, a, b, ProtoDHT, "ab"), "ab", a.ID()) })
		wg.Go(func() { checkReply(t, roundTrip(t, b, a, ProtoDHT, "ba"), "ba", b.ID()) })
	}
	wg.Wait()
	// At most one connection each way survives a dial race.
	for _, e := range []*Endpoint{a, b} {
		if st := e.Stats(); st.Conns > 2 || st.Pooled != 1 || st.Dials > 1 {
			t.Fatalf("stats %+v", st)
		}
	}
}

// TestConnect: Connect dials once and pools the connection, so the next
// OpenStream dials nothing; it checks the peer's key like OpenStream.
func TestConnect(t *testing.T) {
	a, b := newTestEndpoint(t), newTestEndpoint(t)
	b.Handle(ProtoDHT, echoID)
	if err := a.Connect(testCtx(t), b.ID(), b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(testCtx(t), b.ID(), b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Dials != 1 || st.Pooled != 1 {
		t.Fatalf("after two Connects: %+v, want one dial, one pooled connection", st)
	}
	checkReply(t, roundTrip(t, a, b, ProtoDHT, "after connect"), "after connect", a.ID())
	if st := a.Stats(); st.Dials != 1 {
		t.Fatalf("OpenStream dialed again after Connect: %+v", st)
	}
	c := newTestEndpoint(t)
	if err := a.Connect(testCtx(t), c.ID(), b.LocalAddr()); !errors.Is(err, ErrWrongPeer) {
		t.Fatalf("Connect to the wrong node: %v, want ErrWrongPeer", err)
	}
	if err := a.Connect(testCtx(t), a.ID(), b.LocalAddr()); err == nil {
		t.Fatal("Connect to itself succeeded")
	}
}
