package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/quic-go/quic-go"
)

// relayNode is one test node: an endpoint on 127.0.0.1 and its Relay.
type relayNode struct {
	ep    *transport.Endpoint
	relay *Relay
}

func (n *relayNode) peer() transport.Peer {
	return transport.Peer{ID: n.ep.ID(), Addr: n.ep.LocalAddr()}
}

func newRelayNode(t testing.TB, opts RelayOptions) *relayNode {
	t.Helper()
	ep, err := transport.Listen(transport.Options{Identity: key.NewKeypair(), ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRelay(ep, opts)
	t.Cleanup(func() {
		r.Close()
		ep.Close()
	})
	return &relayNode{ep: ep, relay: r}
}

// tapRecorder keeps what a relay's RelayOptions.Tap saw, per circuit and
// direction.
type tapRecorder struct {
	mu     sync.Mutex
	bufs   map[tapDir]*bytes.Buffer
	closed map[tapDir]bool
}

type tapDir struct {
	circuit  uint64
	toTarget bool
}

func newTapRecorder() *tapRecorder {
	return &tapRecorder{bufs: map[tapDir]*bytes.Buffer{}, closed: map[tapDir]bool{}}
}

func (tr *tapRecorder) tap(circuit uint64, toTarget bool) io.WriteCloser {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	d := tapDir{circuit, toTarget}
	tr.bufs[d] = new(bytes.Buffer)
	return tapWriter{tr, d}
}

// bytes returns a copy of what direction d carried so far, and whether it
// ended.
func (tr *tapRecorder) bytes(d tapDir) ([]byte, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.bufs[d] == nil {
		return nil, false
	}
	return bytes.Clone(tr.bufs[d].Bytes()), tr.closed[d]
}

type tapWriter struct {
	tr *tapRecorder
	d  tapDir
}

func (w tapWriter) Write(p []byte) (int, error) {
	w.tr.mu.Lock()
	defer w.tr.mu.Unlock()
	return w.tr.bufs[w.d].Write(p)
}

func (w tapWriter) Close() error {
	w.tr.mu.Lock()
	defer w.tr.mu.Unlock()
	w.tr.closed[w.d] = true
	return nil
}

// echoMember accepts tunnels for m on incoming circuits and echoes every
// byte back.
func echoIncoming(m member) func(ctx context.Context, from transport.Peer, s *quic.Stream) {
	return func(ctx context.Context, from transport.Peer, s *quic.Stream) {
		sess, err := Accept(ctx, s, m.acceptConfig())
		if err != nil {
			return
		}
		defer sess.Close()
		io.Copy(sess, sess)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestRelayCircuitCarriesOnlyCiphertext: A reserves on R, B reaches A
// through R and moves 10 MiB both ways through a Noise session; R splices
// every byte, as its Tap shows, but none of them shows the plaintext
// marker. A second circuit that carries the marker in the clear shows it
// in the tap: the check can fail.
func TestRelayCircuitCarriesOnlyCiphertext(t *testing.T) {
	ctx := testCtx(t)
	group, secret := testGroup(t)
	ma, mb := newMember(t, group, secret), newMember(t, group, secret)

	tr := newTapRecorder()
	r := newRelayNode(t, RelayOptions{Serve: true, Tap: tr.tap})
	a := newRelayNode(t, RelayOptions{Incoming: echoIncoming(ma)})
	b := newRelayNode(t, RelayOptions{})

	res, err := a.relay.Reserve(ctx, r.peer())
	if err != nil {
		t.Fatal(err)
	}
	if res.Observed != a.ep.LocalAddr() {
		t.Errorf("observed %s, want %s", res.Observed, a.ep.LocalAddr())
	}
	if got := r.relay.Stats().Reservations; got != 1 {
		t.Errorf("relay holds %d reservations, want 1", got)
	}

	s, err := b.relay.Connect(ctx, r.peer(), a.ep.ID())
	if err != nil {
		t.Fatal(err)
	}
	sess, err := Dial(ctx, s, mb.dialConfig(ma))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	const size = 10 << 20
	marker := []byte("PLAINTEXT-MARKER-7d1f")
	data := make([]byte, size)
	rand.Read(data)
	for off := 0; off+len(marker) < size; off += 1 << 16 {
		copy(data[off:], marker)
	}
	got := make([]byte, size)
	errc := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(sess, got)
		errc <- err
	}()
	if _, err := sess.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("echoed data differs")
	}
	for _, d := range []tapDir{{1, true}, {1, false}} {
		b, _ := tr.bytes(d)
		if len(b) < size {
			t.Fatalf("circuit %d, to target %v: the relay spliced %d bytes, want at least %d", d.circuit, d.toTarget, len(b), size)
		}
		if bytes.Contains(b, marker) {
			t.Fatalf("circuit %d, to target %v: the relay saw the plaintext marker", d.circuit, d.toTarget)
		}
	}
	if st := r.relay.Stats(); st.Bytes < 2*size {
		t.Errorf("stats bytes %d, want >= %d", st.Bytes, 2*size)
	}

	// The control: bytes sent in the clear through a circuit reach the
	// tap as they are (A's Noise responder refuses them and ends it).
	s2, err := b.relay.Connect(ctx, r.peer(), a.ep.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.CancelRead(0)
	clear := bytes.Repeat(marker, 100)
	if _, err := s2.Write(clear); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, ended := tr.bytes(tapDir{2, true})
		if bytes.Contains(b, marker) {
			break
		}
		if ended || time.Now().After(deadline) {
			t.Fatalf("the tap of a circuit that carried the marker in the clear holds %d bytes without it (ended %v)", len(b), ended)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRelayRefusals(t *testing.T) {
	ctx := testCtx(t)
	group, secret := testGroup(t)
	ma := newMember(t, group, secret)
	r := newRelayNode(t, RelayOptions{Serve: true, Limits: RelayLimits{MaxReservations: 1}})
	plain := newRelayNode(t, RelayOptions{})
	a := newRelayNode(t, RelayOptions{Incoming: echoIncoming(ma)})
	b := newRelayNode(t, RelayOptions{})

	// Unreserved target.
	if _, err := b.relay.Connect(ctx, r.peer(), a.ep.ID()); !errors.Is(err, ErrNoReservation) {
		t.Fatalf("connect to unreserved node: %v, want ErrNoReservation", err)
	}
	// A node that does not relay.
	if _, err := a.relay.Reserve(ctx, plain.peer()); !errors.Is(err, ErrNotRelay) {
		t.Fatalf("reserve on non-relay: %v, want ErrNotRelay", err)
	}
	if _, err := b.relay.Connect(ctx, plain.peer(), a.ep.ID()); !errors.Is(err, ErrNotRelay) {
		t.Fatalf("connect via non-relay: %v, want ErrNotRelay", err)
	}
	// MaxReservations.
	if _, err := a.relay.Reserve(ctx, r.peer()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.relay.Reserve(ctx, r.peer()); !errors.Is(err, ErrRelayLimit) {
		t.Fatalf("second reservation: %v, want ErrRelayLimit", err)
	}
	// A node refuses circuits from a relay it holds no reservation on.
	if _, err := b.relay.Reserve(ctx, plain.peer()); err == nil {
		t.Fatal("reserved on a non-relay")
	}
	var re *RelayError
	_, _, err := roundTrip(ctx, r.ep, b.peer(), relayRequest{Op: opIncoming, Peer: a.ep.ID()})
	if !errors.As(err, &re) || re.Code != RelayRefused {
		t.Fatalf("incoming without reservation: %v, want RelayRefused", err)
	}
	// Unknown op.
	_, _, err = roundTrip(ctx, b.ep, r.peer(), relayRequest{Op: 99})
	if !errors.Is(err, ErrRelayBadRequest) {
		t.Fatalf("unknown op: %v, want ErrRelayBadRequest", err)
	}
}

// dialThrough opens a tunnel session from mb to ma through relay r.
func dialThrough(ctx context.Context, t *testing.T, b *relayNode, r *relayNode, a *relayNode, mb, ma member) (*Session, error) {
	t.Helper()
	s, err := b.relay.Connect(ctx, r.peer(), a.ep.ID())
	if err != nil {
		return nil, err
	}
	return Dial(ctx, s, mb.dialConfig(ma))
}

func TestRelayLimits(t *testing.T) {
	ctx := testCtx(t)
	group, secret := testGroup(t)
	ma, mb := newMember(t, group, secret), newMember(t, group, secret)
	const budget = 256 << 10
	r := newRelayNode(t, RelayOptions{Serve: true, Limits: RelayLimits{MaxCircuits: 1, MaxBytes: budget}})
	a := newRelayNode(t, RelayOptions{Incoming: echoIncoming(ma)})
	b := newRelayNode(t, RelayOptions{})
	if _, err := a.relay.Reserve(ctx, r.peer()); err != nil {
		t.Fatal(err)
	}

	sess, err := dialThrough(ctx, t, b, r, a, mb, ma)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	// One circuit at a time.
	if _, err := b.relay.Connect(ctx, r.peer(), a.ep.ID()); !errors.Is(err, ErrRelayLimit) {
		t.Fatalf("second circuit: %v, want ErrRelayLimit", err)
	}
	// The byte budget: echoing 1 MiB needs 2 MiB of relaying.
	data := make([]byte, 1<<20)
	go sess.Write(data)
	n, err := io.Copy(io.Discard, io.LimitReader(sess, int64(len(data))))
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != CodeRelayBytes {
		t.Fatalf("read through a spent budget: %d bytes, %v; want reset with CodeRelayBytes", n, err)
	}
	if n > budget {
		t.Fatalf("got %d bytes back through a %d-byte budget", n, budget)
	}
	// The circuit is gone and the budget spent: a new one is refused.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := b.relay.Connect(ctx, r.peer(), a.ep.ID())
		if errors.Is(err, ErrRelayLimit) && bytes.Contains([]byte(err.Error()), []byte("bytes")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect after the budget: %v, want ErrRelayLimit (bytes)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRelayReservationExpires(t *testing.T) {
	ctx := testCtx(t)
	group, secret := testGroup(t)
	ma, mb := newMember(t, group, secret), newMember(t, group, secret)
	r := newRelayNode(t, RelayOptions{Serve: true, Limits: RelayLimits{ReservationTTL: time.Second}})
	a := newRelayNode(t, RelayOptions{Incoming: echoIncoming(ma)})
	b := newRelayNode(t, RelayOptions{})
	res, err := a.relay.Reserve(ctx, r.peer())
	if err != nil {
		t.Fatal(err)
	}
	sess, err := dialThrough(ctx, t, b, r, a, mb, ma)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	select {
	case <-res.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("reservation did not end after its TTL")
	}
	// Its circuit ends with it.
	_, err = sess.Read(make([]byte, 1))
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != CodeRelayExpired {
		t.Fatalf("read on an expired circuit: %v, want reset with CodeRelayExpired", err)
	}
	if n := len(a.relay.Reservations()); n != 0 {
		t.Fatalf("node still lists %d reservations", n)
	}
}

// TestRelayKeep: Keep renews a reservation the relay ends, and reports
// each change.
func TestRelayKeep(t *testing.T) {
	ctx := testCtx(t)
	r := newRelayNode(t, RelayOptions{Serve: true, Limits: RelayLimits{ReservationTTL: time.Second}})
	a := newRelayNode(t, RelayOptions{})
	var changes atomic.Int32
	kctx, cancel := context.WithCancel(ctx)
	a.relay.Keep(kctx, []transport.Peer{r.peer()}, func() { changes.Add(1) })
	deadline := time.Now().Add(10 * time.Second)
	// start, end (TTL), start again.
	for changes.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d changes, want 3", changes.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for len(a.relay.Reservations()) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no reservation after renewal")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	for len(a.relay.Reservations()) != 0 || r.relay.Stats().Reservations != 0 {
		if time.Now().After(deadline) {
			t.Fatal("reservation kept after Keep's context ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDialBack(t *testing.T) {
	ctx := testCtx(t)
	r := newRelayNode(t, RelayOptions{Serve: true, Limits: RelayLimits{DialTimeout: time.Second}})
	a := newRelayNode(t, RelayOptions{})

	res, err := a.relay.DialBack(ctx, r.peer(), netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reachable || res.Observed != a.ep.LocalAddr() || res.Probed != a.ep.LocalAddr() {
		t.Fatalf("dial-back = %+v, want reachable at %s", res, a.ep.LocalAddr())
	}
	obs, err := a.relay.Ping(ctx, r.peer())
	if err != nil || obs != a.ep.LocalAddr() {
		t.Fatalf("ping observed %s, %v; want %s", obs, err, a.ep.LocalAddr())
	}

	// A port where nothing listens: not reachable.
	dead := newRelayNode(t, RelayOptions{})
	deadAddr := dead.ep.LocalAddr()
	dead.relay.Close()
	dead.ep.Close()
	res, err = a.relay.DialBack(ctx, r.peer(), deadAddr)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reachable {
		t.Fatalf("dial-back to a closed port reported reachable")
	}
	// Another IP than the observed one is refused.
	_, err = a.relay.DialBack(ctx, r.peer(), netip.MustParseAddrPort("127.0.0.2:4000"))
	if !errors.Is(err, ErrDialBackRefused) {
		t.Fatalf("dial-back to another IP: %v, want ErrDialBackRefused", err)
	}
}

// BenchmarkTunnelPath moves 64 MiB through a Noise session, directly over a
// QUIC stream and through a relay, all on loopback:
//
//	go test ./internal/tunnel -run '^$' -bench TunnelPath -benchtime 5x
func BenchmarkTunnelPath(b *testing.B) {
	for _, path := range []string{"direct", "relay"} {
		b.Run(path, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			group, secret := testGroup(b)
			ma, mb := newMember(b, group, secret), newMember(b, group, secret)
			sink := func(ctx context.Context, _ transport.Peer, s *quic.Stream) {
				sess, err := Accept(ctx, s, ma.acceptConfig())
				if err != nil {
					return
				}
				transport.Opened(ctx)
				defer sess.Close()
				n, _ := io.Copy(io.Discard, sess)
				var lenBuf [8]byte
				for i := range lenBuf {
					lenBuf[i] = byte(n >> (8 * i))
				}
				sess.Write(lenBuf[:])
			}
			a := newRelayNode(b, RelayOptions{Incoming: sink})
			a.ep.Handle(transport.ProtoTunnel, sink)
			c := newRelayNode(b, RelayOptions{})
			var r *relayNode
			if path == "relay" {
				r = newRelayNode(b, RelayOptions{Serve: true, Limits: RelayLimits{MaxBytes: 1 << 40}})
				if _, err := a.relay.Reserve(ctx, r.peer()); err != nil {
					b.Fatal(err)
				}
			}
			const size = 64 << 20
			buf := make([]byte, 1<<20)
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var s *quic.Stream
				var err error
				if r != nil {
					s, err = c.relay.Connect(ctx, r.peer(), a.ep.ID())
				} else {
					s, err = c.ep.OpenStream(ctx, a.ep.ID(), a.ep.LocalAddr(), transport.ProtoTunnel)
				}
				if err != nil {
					b.Fatal(err)
				}
				sess, err := Dial(ctx, s, mb.dialConfig(ma))
				if err != nil {
					b.Fatal(err)
				}
				for sent := 0; sent < size; sent += len(buf) {
					if _, err := sess.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				s.Close() // FIN under the Noise frames: end of stream
				var lenBuf [8]byte
				if _, err := io.ReadFull(sess, lenBuf[:]); err != nil {
					b.Fatal(err)
				}
				sess.Close()
			}
		})
	}
}
