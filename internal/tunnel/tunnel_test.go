package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// member is one node of a test group.
type member struct {
	static StaticKey
	group  key.RecordKey
	psk    [32]byte
}

func newMember(t testing.TB, group key.RecordKey, secret key.Secret) member {
	t.Helper()
	sk, err := NewStaticKey()
	if err != nil {
		t.Fatal(err)
	}
	return member{static: sk, group: group, psk: PSK(secret)}
}

func testGroup(t testing.TB) (key.RecordKey, key.Secret) {
	t.Helper()
	var g key.RecordKey
	if _, err := rand.Read(g[:]); err != nil {
		t.Fatal(err)
	}
	return g, key.NewSecret()
}

func (m member) acceptConfig() AcceptConfig {
	return AcceptConfig{
		Static: m.static,
		LookupPSK: func(g key.RecordKey) ([32]byte, bool) {
			if g != m.group {
				return [32]byte{}, false
			}
			return m.psk, true
		},
	}
}

func (m member) dialConfig(to member) DialConfig {
	return DialConfig{Static: m.static, RemoteStatic: to.static.Public, Group: m.group, PSK: m.psk}
}

// tcpPair returns both ends of a real TCP connection on 127.0.0.1.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

type result struct {
	s   *Session
	err error
}

// handshake runs Dial on a and Accept on b concurrently.
func handshake(ctx context.Context, a, b io.ReadWriteCloser, dc DialConfig, ac AcceptConfig) (dial, accept result) {
	ch := make(chan result, 1)
	go func() {
		s, err := Accept(ctx, b, ac)
		ch <- result{s, err}
	}()
	s, err := Dial(ctx, a, dc)
	return result{s, err}, <-ch
}

func TestPSK(t *testing.T) {
	// Regression vector, cross-checked against lukechampine.com/blake3
	// DeriveKey and `b3sum --derive-key "dweb 2026 tunnel psk"`.
	var secret key.Secret
	for i := range secret {
		secret[i] = byte(i)
	}
	got := PSK(secret)
	want := mustHex(t, pskVector)
	if !bytes.Equal(got[:], want) {
		t.Fatalf("PSK = %x, want %x", got, want)
	}
	other := secret
	other[0] ^= 1
	if PSK(other) == got {
		t.Fatal("different secrets gave the same PSK")
	}
}

func TestStaticKeyFromPrivate(t *testing.T) {
	k, err := NewStaticKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := StaticKeyFromPrivate(k.Private[:])
	if err != nil || k2 != k {
		t.Fatalf("round trip: %v %v", k2, err)
	}
	if _, err := StaticKeyFromPrivate(make([]byte, 31)); !errors.Is(err, ErrConfig) {
		t.Fatalf("31 bytes: err = %v, want ErrConfig", err)
	}
	if s := k.String(); bytes.Contains([]byte(s), []byte("Private")) || len(s) != len("StaticKey()")+43 {
		t.Fatalf("String() = %q", s)
	}
}

// moveBoth sends n random bytes each way at once and checks both arrive intact.
func moveBoth(t *testing.T, a, b *Session, n int) {
	t.Helper()
	dataA := make([]byte, n)
	dataB := make([]byte, n)
	rand.Read(dataA)
	rand.Read(dataB)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	send := func(s *Session, d []byte) {
		defer wg.Done()
		// Uneven write sizes exercise frame splitting and partial reads.
		for off, step := 0, 1; off < len(d); step = step*7%200003 + 1 {
			end := min(off+step, len(d))
			if _, err := s.Write(d[off:end]); err != nil {
				errs <- err
				return
			}
			off = end
		}
	}
	recv := func(s *Session, want []byte) {
		defer wg.Done()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(s, got); err != nil {
			errs <- err
			return
		}
		if !bytes.Equal(got, want) {
			errs <- errors.New("received bytes differ from sent bytes")
		}
	}
	wg.Add(4)
	go send(a, dataA)
	go send(b, dataB)
	go recv(b, dataA)
	go recv(a, dataB)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestMemberTunnel(t *testing.T) {
	for _, tc := range []struct {
		name string
		pair func(testing.TB) (net.Conn, net.Conn)
	}{
		{"pipe", func(testing.TB) (net.Conn, net.Conn) { return net.Pipe() }},
		{"tcp", tcpPair},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, secret := testGroup(t)
			alice, bob := newMember(t, g, secret), newMember(t, g, secret)
			ca, cb := tc.pair(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d, a := handshake(ctx, ca, cb, alice.dialConfig(bob), bob.acceptConfig())
			if d.err != nil || a.err != nil {
				t.Fatalf("dial: %v, accept: %v", d.err, a.err)
			}
			defer d.s.Close()
			defer a.s.Close()
			if d.s.Group() != g || a.s.Group() != g {
				t.Fatal("wrong group on session")
			}
			if d.s.RemoteStatic() != bob.static.Public || a.s.RemoteStatic() != alice.static.Public {
				t.Fatal("wrong remote static on session")
			}
			if !bytes.Equal(d.s.ChannelBinding(), a.s.ChannelBinding()) || len(d.s.ChannelBinding()) != 32 {
				t.Fatal("channel bindings differ")
			}
			// The handshake context ending later must not disturb the session.
			cancel()
			moveBoth(t, d.s, a.s, 10<<20)

			// Close at a frame boundary reads as io.EOF on the other side.
			if err := d.s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := a.s.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				t.Fatalf("read after peer close: %v", err)
			}
		})
	}
}

// recorder counts the bytes one end writes.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(p)
	r.mu.Unlock()
	return r.Conn.Write(p)
}

func (r *recorder) written() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.out.Bytes()...)
}

// refusal runs a handshake expected to fail on both ends and returns what
// the responder wrote.
func refusal(t *testing.T, dc DialConfig, ac AcceptConfig) []byte {
	t.Helper()
	ca, cb := tcpPair(t)
	rec := &recorder{Conn: cb}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, a := handshake(ctx, ca, rec, dc, ac)
	if !errors.Is(d.err, ErrHandshake) {
		t.Fatalf("dial: err = %v, want ErrHandshake", d.err)
	}
	if !errors.Is(a.err, ErrHandshake) {
		t.Fatalf("accept: err = %v, want ErrHandshake", a.err)
	}
	if d.s != nil || a.s != nil {
		t.Fatal("a failed handshake returned a session")
	}
	return rec.written()
}

func TestWrongPSK(t *testing.T) {
	g, secret := testGroup(t)
	bob := newMember(t, g, secret)
	mallory := newMember(t, g, key.NewSecret()) // knows the group key, not the secret
	out := refusal(t, mallory.dialConfig(bob), bob.acceptConfig())
	// The responder sent its handshake reply and nothing else.
	if len(out) != 2+msg2Len {
		t.Fatalf("responder wrote %d bytes, want only message 2 (%d)", len(out), 2+msg2Len)
	}
}

func TestUnknownGroup(t *testing.T) {
	g, secret := testGroup(t)
	bob := newMember(t, g, secret)
	other, otherSecret := testGroup(t)
	carol := newMember(t, other, otherSecret)
	out := refusal(t, carol.dialConfig(bob), bob.acceptConfig())
	// Indistinguishable on the wire from a wrong PSK: a message 2 that the
	// initiator cannot decrypt.
	if len(out) != 2+msg2Len {
		t.Fatalf("responder wrote %d bytes, want %d", len(out), 2+msg2Len)
	}
}

func TestWrongRemoteStatic(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	impostor := newMember(t, g, secret)
	// Alice dials believing bob's key is impostor's; bob cannot decrypt.
	out := refusal(t, alice.dialConfig(impostor), bob.acceptConfig())
	if len(out) != 0 {
		t.Fatalf("responder wrote %d bytes to a message 1 it could not decrypt", len(out))
	}
}

func TestBindingMismatch(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	dc := alice.dialConfig(bob)
	dc.Binding = []byte("connection A")
	ac := bob.acceptConfig()
	ac.Binding = []byte("connection B")
	refusal(t, dc, ac)

	// The same binding on both ends works.
	ac.Binding = dc.Binding
	ca, cb := net.Pipe()
	d, a := handshake(context.Background(), ca, cb, dc, ac)
	if d.err != nil || a.err != nil {
		t.Fatalf("dial: %v, accept: %v", d.err, a.err)
	}
	d.s.Close()
}

func TestBadVersion(t *testing.T) {
	g, secret := testGroup(t)
	bob := newMember(t, g, secret)
	ca, cb := net.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := Accept(context.Background(), cb, bob.acceptConfig())
		errc <- err
	}()
	hello := append([]byte{0, helloLen, 2}, g[:]...)
	go ca.Write(hello)
	if err := <-errc; !errors.Is(err, ErrHandshake) {
		t.Fatalf("err = %v, want ErrHandshake", err)
	}
	ca.Close()
}

func TestConfigErrors(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	ctx := context.Background()
	ca, _ := net.Pipe()
	dc := alice.dialConfig(bob)
	dc.RemoteStatic = [32]byte{}
	if _, err := Dial(ctx, ca, dc); !errors.Is(err, ErrConfig) {
		t.Fatalf("zero RemoteStatic: %v", err)
	}
	ac := bob.acceptConfig()
	ac.LookupPSK = nil
	if _, err := Accept(ctx, ca, ac); !errors.Is(err, ErrConfig) {
		t.Fatalf("nil LookupPSK: %v", err)
	}
	// u = 1 is a low-order point: refused before any I/O.
	dc = alice.dialConfig(bob)
	dc.RemoteStatic = [32]byte{1}
	if _, err := Dial(ctx, ca, dc); !errors.Is(err, ErrConfig) {
		t.Fatalf("low-order RemoteStatic: %v", err)
	}
}
