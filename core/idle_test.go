package core

import (
	"net"
	"testing"
	"time"
)

// TestIdleConn: a served tunnel that moves no byte for the idle timeout is
// closed; one that keeps moving bytes is not.
func TestIdleConn(t *testing.T) {
	const d = 100 * time.Millisecond
	a, b := net.Pipe()
	defer b.Close()
	c := newIdleConn(a, d)
	defer c.stop()
	go func() {
		for range 5 {
			b.Write([]byte{1})
			time.Sleep(d / 2)
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
	if el := time.Since(start); el < 5*d/2 || el > 5*d/2+2*time.Second {
		t.Fatalf("closed after %v", el)
	}
}
