package transport

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/dwebkit/dweb/internal/transport/rcmgr/rcmgrtest"
	"github.com/quic-go/quic-go"
)

// listenOn starts an endpoint on listen with opts and closes it at the end
// of the test.
func listenOn(t *testing.T, listen string, opts Options) *Endpoint {
	t.Helper()
	opts.Identity = key.NewKeypair()
	opts.ListenAddr = listen
	e, err := Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// TestConnLimitsByAddress: connections are refused by their source address
// before the TLS handshake (the dialer sees CONNECTION_REFUSED, and the
// listener's handler never learns of them), per IP and per /24; another
// /24 still gets in.
func TestConnLimitsByAddress(t *testing.T) {
	rm := rcmgr.New(rcmgr.Limits{Conns: rcmgr.Limit{IP: 2, Prefix: 3}, LocalAddrs: true})
	b := listenOn(t, "127.0.0.1:0", Options{Resources: rm})
	b.Handle(ProtoDHT, echoID)
	dial := func(listen string) error {
		a := listenOn(t, listen, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return a.Connect(ctx, b.ID(), b.LocalAddr())
	}
	for i := range 2 {
		if err := dial("127.0.5.1:0"); err != nil {
			t.Fatalf("connection %d from 127.0.5.1: %v", i, err)
		}
	}
	err := dial("127.0.5.1:0")
	if err == nil || !Refused(err) {
		t.Fatalf("third connection from one IP: %v, want refused", err)
	}
	if err := dial("127.0.5.2:0"); err != nil {
		t.Fatalf("another IP of the /24: %v", err)
	}
	if err := dial("127.0.5.3:0"); !Refused(err) {
		t.Fatalf("fourth connection from one /24: %v, want refused", err)
	}
	if err := dial("127.0.6.1:0"); err != nil {
		t.Fatalf("another /24: %v", err)
	}
	if got := rcmgrtest.Refused(t, rm, rcmgr.ScopeIP, rcmgr.KindConn); got != 1 {
		t.Errorf("refused{ip,conn} = %v, want 1", got)
	}
	if got := rcmgrtest.Refused(t, rm, rcmgr.ScopePrefix, rcmgr.KindConn); got != 1 {
		t.Errorf("refused{prefix,conn} = %v, want 1", got)
	}
	for deadline := time.Now().Add(2 * time.Second); b.Stats().Accepted != 4; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("accepted %d connections, want 4", b.Stats().Accepted)
		}
	}
}

// TestConnLimitPerPeer: a node ID gets at most its connections; the next
// is closed after its handshake with the refusal code.
func TestConnLimitPerPeer(t *testing.T) {
	rm := rcmgr.New(rcmgr.Limits{Conns: rcmgr.Limit{Peer: 1}})
	b := listenOn(t, "127.0.0.1:0", Options{Resources: rm})
	b.Handle(ProtoDHT, echoID)
	kp := key.NewKeypair()
	a1, err := Listen(Options{Identity: kp})
	if err != nil {
		t.Fatal(err)
	}
	defer a1.Close()
	checkReply(t, roundTrip(t, a1, b, ProtoDHT, "one"), "one", kp.ID())
	a2, err := Listen(Options{Identity: kp}) // same ID, another socket
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	s, err := a2.OpenStream(testCtx(t), b.ID(), b.LocalAddr(), ProtoDHT)
	if err == nil {
		s.SetDeadline(time.Now().Add(5 * time.Second))
		WriteFrame(s, []byte("two"))
		_, err = ReadFrame(s, 1024)
	}
	if !Refused(err) {
		t.Fatalf("second connection of one peer: %v, want refused", err)
	}
	// At least the one refusal; a loaded machine can make the dialer send
	// its handshake again, and each attempt is refused and counted.
	if got := rcmgrtest.Refused(t, rm, rcmgr.ScopePeer, rcmgr.KindConn); got < 1 {
		t.Errorf("refused{peer,conn} = %v, want at least 1", got)
	}
}

// TestStreamLimits: a peer's stalled streams are bounded by its handshake
// (opening) limit, the others are reset with CodeRefused at once, and the
// opening deadline gives the slots back; its QUIC stream credit is its
// stream limit.
func TestStreamLimits(t *testing.T) {
	const timeout = 400 * time.Millisecond
	rm := rcmgr.New(rcmgr.Limits{Streams: rcmgr.Limit{Peer: 6}, Handshakes: rcmgr.Limit{Peer: 3}})
	b := listenOn(t, "127.0.0.1:0", Options{Resources: rm, FirstFrameTimeout: timeout})
	b.Handle(ProtoDHT, echoID)
	a := newTestEndpoint(t)
	if b.qconf.MaxIncomingStreams != 6 {
		t.Fatalf("QUIC stream credit %d, want the per-peer stream limit 6", b.qconf.MaxIncomingStreams)
	}
	var stalled []*quic.Stream
	for range 5 {
		s, err := a.OpenStream(testCtx(t), b.ID(), b.LocalAddr(), ProtoDHT)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte{0}); err != nil { // a byte of a frame header, then nothing
			t.Fatal(err)
		}
		stalled = append(stalled, s)
	}
	codes := map[quic.StreamErrorCode]int{}
	for _, s := range stalled {
		code, _ := streamResetCode(t, s)
		codes[code]++
	}
	if codes[CodeRefused] != 2 || codes[CodeProtocolTimeout] != 3 {
		t.Fatalf("reset codes %v, want 2 refused and 3 timed out", codes)
	}
	if got := rcmgrtest.Refused(t, rm, rcmgr.ScopePeer, rcmgr.KindHandshake); got != 2 {
		t.Errorf("refused{peer,handshake} = %v, want 2", got)
	}
	// Everything is given back: a request works again.
	deadline := time.Now().Add(2 * time.Second)
	for rm.Usage().Streams != 0 || rm.Usage().Handshakes != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("usage after the timeouts: %+v", rm.Usage())
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkReply(t, roundTrip(t, a, b, ProtoDHT, "after"), "after", a.ID())
}

func TestRefusedClassifies(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&quic.StreamError{ErrorCode: CodeRefused, Remote: true}, true},
		{fmt.Errorf("x: %w", &quic.StreamError{ErrorCode: CodeRefused, Remote: true}), true},
		{&quic.StreamError{ErrorCode: CodeRefused}, false},
		{&quic.StreamError{ErrorCode: CodeProtocolTimeout, Remote: true}, false},
		{&quic.ApplicationError{ErrorCode: connCodeRefused, Remote: true}, true},
		{&quic.TransportError{ErrorCode: quic.ConnectionRefused, Remote: true}, true},
		{errors.New("other"), false},
	} {
		if got := Refused(c.err); got != c.want {
			t.Errorf("Refused(%v) = %v", c.err, got)
		}
	}
}
