package netem

import (
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

func listenLoopback(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConnShapesBothWays sends 2000 datagrams each way between a plain
// socket and a Conn with 20 % loss and 5 ms delay: about a fifth are lost
// in each direction, none arrive early, and every datagram that arrives is
// whole and from the right address.
func TestConnShapesBothWays(t *testing.T) {
	c, err := NewConn(listenLoopback(t), Options{Delay: 5 * time.Millisecond, Loss: 0.2, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer := listenLoopback(t)
	defer peer.Close()
	const n = 2000
	msg := []byte("datagram through a shaped socket")

	// The peer reads as the datagrams come: the link delivers them in a
	// burst that would overflow a socket buffer nobody reads.
	type result struct {
		got   int
		early bool
		bad   string
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		var r result
		buf := make([]byte, 2048)
		for {
			peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			m, from, err := peer.ReadFromUDP(buf)
			if err != nil {
				break
			}
			if r.got == 0 && time.Since(start) < 5*time.Millisecond {
				r.early = true
			}
			if string(buf[:m]) != string(msg) || from.Port != c.LocalAddr().(*net.UDPAddr).Port {
				r.bad = fmt.Sprintf("got %q from %v", buf[:m], from)
			}
			r.got++
		}
		done <- r
	}()
	for i := range n {
		if _, err := c.WriteTo(msg, peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // the link keeps the spacing: the peer's buffer does not overflow
		}
	}
	r := <-done
	if r.early || r.bad != "" {
		t.Fatalf("up: early %v, %s", r.early, r.bad)
	}
	got := r.got
	buf := make([]byte, 2048)
	if got < n*7/10 || got > n*9/10 || uint64(got) > n-c.Up().Lost {
		t.Fatalf("up: %d of %d arrived, %+v", got, n, c.Up())
	}

	for i := range n {
		peer.WriteTo(msg, c.LocalAddr())
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // the Conn's reader keeps up with the kernel's buffer
		}
	}
	got = 0
	for {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		m, from, err := c.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read: %v, want a deadline error", err)
			}
			break
		}
		if string(buf[:m]) != string(msg) || from.(*net.UDPAddr).Port != peer.LocalAddr().(*net.UDPAddr).Port {
			t.Fatalf("got %q from %v", buf[:m], from)
		}
		got++
	}
	if got < n*7/10 || got > n*9/10 {
		t.Fatalf("down: %d of %d arrived, %+v", got, n, c.Down())
	}
}

// TestConnCloseUnblocksRead: a reader blocked with no deadline returns
// net.ErrClosed when the Conn closes, and a write after that fails.
func TestConnCloseUnblocksRead(t *testing.T) {
	c, err := NewConn(listenLoopback(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read still blocked 5 s after close")
	}
	if _, err := c.WriteTo([]byte("x"), c.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// TestNewConnRefusesBadOptions: a loss of 1 or more is refused.
func TestNewConnRefusesBadOptions(t *testing.T) {
	u := listenLoopback(t)
	defer u.Close()
	if _, err := NewConn(u, Options{Loss: 1}); err == nil {
		t.Fatal("loss 1 accepted")
	}
}

// TestParseOptions reads the --emulate-link syntax and refuses bad input.
func TestParseOptions(t *testing.T) {
	o, err := ParseOptions("delay=20ms, jitter=5ms,loss=2%,rate=1000000,queue=50ms,seed=7")
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 0.02, Rate: 1e6, QueueDelay: 50 * time.Millisecond, Seed: 7}
	if o != want {
		t.Fatalf("got %+v, want %+v", o, want)
	}
	if o, err := ParseOptions("loss=0.5"); err != nil || o.Loss != 0.5 {
		t.Fatalf("loss=0.5: %+v, %v", o, err)
	}
	if o, err := ParseOptions(""); err != nil || o != (Options{}) {
		t.Fatalf("empty: %+v, %v", o, err)
	}
	for _, bad := range []string{"delay", "delay=fast", "loss=100%", "loss=-0.1", "rate=-5", "mtu=1400", "delay=2h"} {
		if _, err := ParseOptions(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
