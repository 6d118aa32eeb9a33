package transport

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/quic-go/quic-go"
)

// streamResetCode waits for s to fail and returns the peer's reset code.
func streamResetCode(t *testing.T, s *quic.Stream) (quic.StreamErrorCode, time.Duration) {
	t.Helper()
	start := time.Now()
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(s)
	var se *quic.StreamError
	if !errors.As(err, &se) || !se.Remote {
		t.Fatalf("stream ended with %v, want a reset by the peer", err)
	}
	return se.ErrorCode, time.Since(start)
}

// TestFirstFrameTimeout: a stream whose opener sends the protocol byte and
// stops is cut off at the first-frame deadline and reset with
// CodeProtocolTimeout; a quick request needs no Opened; one whose handler
// calls Opened outlives the deadline.
func TestFirstFrameTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	a := newTestEndpoint(t)
	b, err := Listen(Options{Identity: key.NewKeypair(), FirstFrameTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	handlerErr := make(chan error, 1)
	// ProtoDHT: reads one frame and echoes it, never calls Opened.
	b.Handle(ProtoDHT, func(ctx context.Context, peer Peer, s *quic.Stream) {
		f, err := ReadFrame(s, 1024)
		if err != nil {
			handlerErr <- err
			return
		}
		WriteFrame(s, f)
	})
	// ProtoTunnel: reads one frame (with a deadline of its own that
	// Within keeps inside the opening's), calls Opened, then waits for a
	// second frame that comes after the deadline.
	b.Handle(ProtoTunnel, func(ctx context.Context, peer Peer, s *quic.Stream) {
		od, ok := OpeningDeadline(ctx)
		if !ok || Within(ctx, time.Now().Add(time.Hour)) != od || !Within(ctx, time.Now()).Before(od) {
			handlerErr <- errors.New("no opening deadline, or Within does not keep to it")
			return
		}
		s.SetReadDeadline(Within(ctx, time.Now().Add(time.Hour)))
		if _, err := ReadFrame(s, 1024); err != nil {
			return
		}
		Opened(ctx)
		if _, ok := OpeningDeadline(ctx); ok {
			handlerErr <- errors.New("an opening deadline after Opened")
			return
		}
		f, err := ReadFrame(s, 1024)
		if err != nil {
			return
		}
		WriteFrame(s, f)
	})

	t.Run("stalled after the protocol byte", func(t *testing.T) {
		s, err := a.OpenStream(testCtx(t), b.ID(), b.LocalAddr(), ProtoDHT)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := s.Write([]byte{0, 0}); err != nil { // half a frame header
			t.Fatal(err)
		}
		code, _ := streamResetCode(t, s)
		if code != CodeProtocolTimeout {
			t.Fatalf("reset code %d, want CodeProtocolTimeout", code)
		}
		if el := time.Since(start); el < timeout-50*time.Millisecond || el > timeout+2*time.Second {
			t.Fatalf("cut off after %v, want about %v", el, timeout)
		}
		if err := <-handlerErr; err == nil {
			t.Fatal("the handler's read did not fail")
		}
	})
	t.Run("quick request without Opened", func(t *testing.T) {
		checkEcho(t, a, b, ProtoDHT, 0)
	})
	t.Run("opened outlives the deadline", func(t *testing.T) {
		checkEcho(t, a, b, ProtoTunnel, 2*timeout)
		select {
		case err := <-handlerErr:
			t.Fatal(err)
		default:
		}
	})
}

// checkEcho sends a frame, waits pause, sends another (ProtoTunnel's
// handler echoes the second; ProtoDHT's the first) and checks the echo.
func checkEcho(t *testing.T, a, b *Endpoint, p Protocol, pause time.Duration) {
	t.Helper()
	s, err := a.OpenStream(testCtx(t), b.ID(), b.LocalAddr(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if err := WriteFrame(s, []byte("one")); err != nil {
		t.Fatal(err)
	}
	want := "one"
	if p == ProtoTunnel {
		time.Sleep(pause)
		if err := WriteFrame(s, []byte("two")); err != nil {
			t.Fatal(err)
		}
		want = "two"
	}
	got, err := ReadFrame(s, 1024)
	if err != nil || string(got) != want {
		t.Fatalf("echo %q, %v; want %q", got, err, want)
	}
}
