package tunnel

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

const pskVector = "0638791bf7209b4a1ef96cc32357fbc1c9af40ab0f5d7c659d2adb53cf3d2acc"

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flipper flips one bit of the byte at stream offset at of what passes
// through its Write.
type flipper struct {
	net.Conn
	mu  sync.Mutex
	off int
	at  int
}

func (f *flipper) Write(p []byte) (int, error) {
	f.mu.Lock()
	if f.at >= f.off && f.at < f.off+len(p) {
		q := append([]byte(nil), p...)
		q[f.at-f.off] ^= 0x40
		p = q
	}
	f.off += len(p)
	f.mu.Unlock()
	return f.Conn.Write(p)
}

func TestTamperedFrame(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	for _, at := range []int{
		0,                   // a length byte of the first data frame
		2,                   // ciphertext
		2 + 5 + TagSize - 1, // tag
	} {
		ca, cb := tcpPair(t)
		// Alice's handshake bytes: hello frame, message 1, confirmation.
		hs := 2 + helloLen + 2 + msg1Len + 2 + TagSize
		f := &flipper{Conn: ca, at: hs + at}
		d, a := handshake(context.Background(), f, cb, alice.dialConfig(bob), bob.acceptConfig())
		if d.err != nil || a.err != nil {
			t.Fatalf("dial: %v, accept: %v", d.err, a.err)
		}
		if _, err := d.s.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		d.s.Close() // so a corrupted length cannot leave Read waiting
		buf := make([]byte, 64)
		_, err := a.s.Read(buf)
		if !errors.Is(err, ErrFrame) {
			t.Fatalf("flip at %d: Read err = %v, want ErrFrame", at, err)
		}
		if _, err2 := a.s.Read(buf); !errors.Is(err2, ErrFrame) {
			t.Fatalf("flip at %d: second Read err = %v, want sticky ErrFrame", at, err2)
		}
		a.s.Close()
	}
}

func TestReplayedFrame(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	ca, cb := net.Pipe()
	rec := &recorder{Conn: ca}
	d, a := handshake(context.Background(), rec, cb, alice.dialConfig(bob), bob.acceptConfig())
	if d.err != nil || a.err != nil {
		t.Fatalf("dial: %v, accept: %v", d.err, a.err)
	}
	before := len(rec.written())
	go d.s.Write([]byte("pay 10"))
	buf := make([]byte, 16)
	n, err := a.s.Read(buf)
	if err != nil || string(buf[:n]) != "pay 10" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	frame := rec.written()[before:]
	go ca.Write(frame) // the same frame again, bypassing the session
	if _, err := a.s.Read(buf); !errors.Is(err, ErrFrame) {
		t.Fatalf("replayed frame: err = %v, want ErrFrame", err)
	}
	d.s.Close()
	a.s.Close()
}

func TestLargeWriteSplits(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	ca, cb := net.Pipe()
	rec := &recorder{Conn: ca}
	d, a := handshake(context.Background(), rec, cb, alice.dialConfig(bob), bob.acceptConfig())
	if d.err != nil || a.err != nil {
		t.Fatalf("dial: %v, accept: %v", d.err, a.err)
	}
	defer d.s.Close()
	defer a.s.Close()
	before := len(rec.written())
	data := bytes.Repeat([]byte{7}, 2*MaxPlaintext+1)
	errc := make(chan error, 1)
	go func() { _, err := d.s.Write(data); errc <- err }()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(a.s, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	wire := rec.written()[before:]
	if want := 3*(2+TagSize) + len(data); len(wire) != want {
		t.Fatalf("wire bytes = %d, want %d (three frames)", len(wire), want)
	}
	if n := int(wire[0])<<8 | int(wire[1]); n != MaxFrame {
		t.Fatalf("first frame is %d bytes, want %d", n, MaxFrame)
	}
}

// silent is a peer that reads everything and never answers.
func silent(c net.Conn) { io.Copy(io.Discard, c) }

// noDeadline hides SetDeadline, like a stream type without deadlines.
type noDeadline struct{ rw io.ReadWriteCloser }

func (n noDeadline) Read(p []byte) (int, error)  { return n.rw.Read(p) }
func (n noDeadline) Write(p []byte) (int, error) { return n.rw.Write(p) }
func (n noDeadline) Close() error                { return n.rw.Close() }

func TestHandshakeContext(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	wrap := map[string]func(net.Conn) io.ReadWriteCloser{
		"deadline":   func(c net.Conn) io.ReadWriteCloser { return c },
		"noDeadline": func(c net.Conn) io.ReadWriteCloser { return noDeadline{c} },
	}
	for name, w := range wrap {
		t.Run("dial/"+name, func(t *testing.T) {
			ca, cb := tcpPair(t)
			go silent(cb)
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			start := time.Now()
			_, err := Dial(ctx, w(ca), alice.dialConfig(bob))
			if !errors.Is(err, context.Canceled) || errors.Is(err, ErrHandshake) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Fatalf("Dial took %v after cancel", el)
			}
			// rw was closed.
			if _, err := ca.Write([]byte{1}); err == nil {
				t.Fatal("rw still open after failed Dial")
			}
		})
		t.Run("accept/"+name, func(t *testing.T) {
			_, cb := tcpPair(t) // the initiator never writes
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			_, err := Accept(ctx, w(cb), bob.acceptConfig())
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want context.DeadlineExceeded", err)
			}
		})
	}
	t.Run("already done", func(t *testing.T) {
		ca, _ := net.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Dial(ctx, ca, alice.dialConfig(bob)); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestHandshakeTimeout: with no deadline on ctx, a peer that stalls in the
// handshake (after its first bytes, or before any) is cut off by the
// handshake timeout, on either side, and rw is closed.
func TestHandshakeTimeout(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	const timeout = 100 * time.Millisecond
	check := func(t *testing.T, start time.Time, err error, rw net.Conn) {
		t.Helper()
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrHandshake) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
		if el := time.Since(start); el < timeout || el > timeout+2*time.Second {
			t.Fatalf("cut off after %v, want about %v", el, timeout)
		}
		if _, err := rw.Write([]byte{1}); err == nil {
			t.Fatal("rw still open after the timeout")
		}
	}
	t.Run("accept/hello only", func(t *testing.T) {
		ca, cb := tcpPair(t)
		ca.Write([]byte{0, helloLen, Version}) // the start of a hello, then nothing
		cfg := bob.acceptConfig()
		cfg.HandshakeTimeout = timeout
		start := time.Now()
		_, err := Accept(context.Background(), cb, cfg)
		check(t, start, err, cb)
	})
	t.Run("dial/silent responder", func(t *testing.T) {
		ca, cb := tcpPair(t)
		go silent(cb)
		cfg := alice.dialConfig(bob)
		cfg.HandshakeTimeout = timeout
		start := time.Now()
		_, err := Dial(context.Background(), ca, cfg)
		check(t, start, err, ca)
	})
	t.Run("default", func(t *testing.T) {
		if DefaultHandshakeTimeout <= 0 || DefaultHandshakeTimeout > 30*time.Second {
			t.Fatalf("DefaultHandshakeTimeout = %v", DefaultHandshakeTimeout)
		}
	})
}

func TestConcurrentClose(t *testing.T) {
	g, secret := testGroup(t)
	alice, bob := newMember(t, g, secret), newMember(t, g, secret)
	ca, cb := net.Pipe()
	d, a := handshake(context.Background(), ca, cb, alice.dialConfig(bob), bob.acceptConfig())
	if d.err != nil || a.err != nil {
		t.Fatalf("dial: %v, accept: %v", d.err, a.err)
	}
	done := make(chan error, 2)
	go func() { _, err := a.s.Read(make([]byte, 10)); done <- err }()
	go func() { _, err := a.s.Write(make([]byte, 10)); done <- err }() // nobody reads on d
	time.Sleep(20 * time.Millisecond)
	a.s.Close()
	a.s.Close()
	for range 2 {
		if err := <-done; err == nil {
			t.Fatal("blocked call returned nil after Close")
		}
	}
	d.s.Close()
}

func BenchmarkPipeThroughput(b *testing.B) {
	g, secret := testGroup(b)
	alice, bob := newMember(b, g, secret), newMember(b, g, secret)
	ca, cb := net.Pipe()
	d, a := handshake(context.Background(), ca, cb, alice.dialConfig(bob), bob.acceptConfig())
	if d.err != nil || a.err != nil {
		b.Fatalf("dial: %v, accept: %v", d.err, a.err)
	}
	defer d.s.Close()
	defer a.s.Close()
	chunk := make([]byte, 256<<10)
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, a.s)
		done <- err
	}()
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := d.s.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	d.s.Close()
	<-done
}
