package core

import (
	"net"
	"testing"
	"time"
)

// TestIdleConn: a served tunnel that moves no byte for the idle timeout is
// closed; one that keeps moving bytes is not.
func TestIdleConn(t *testing.T) {
	// Bytes every 100 ms against a 1 s timeout: a wide margin, so a loaded
	// machine's late wake-ups do not look idle.
	const d = time.Second
	const gap = 100 * time.Millisecond
	a, b := net.Pipe()
	defer b.Close()
	c := newIdleConn(a, d)
	defer c.stop()
	go func() {
		for range 5 {
			b.Write([]byte{1})
			time.Sleep(gap)
		}
	}()
	start := time.Now()
	buf := make([]byte, 1)
	n := 0
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
		n++
	}
	if n != 5 {
		t.Fatalf("read %d bytes before the close, want 5", n)
	}
	if el := time.Since(start); el < 4*gap+d || el > 4*gap+d+2*time.Second {
		t.Fatalf("closed after %v", el)
	}
}
