package wakeups

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestCountSeesATicker: a goroutine ticking every 10 ms in this process
// makes at least 20 wakeups in 500 ms.
func TestCountSeesATicker(t *testing.T) {
	before, threads, err := Count(os.Getpid())
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil || threads < 1 {
		t.Fatalf("Count: %d threads, %v", threads, err)
	}
	tk := time.NewTicker(10 * time.Millisecond)
	for i := 0; i < 50; i++ {
		<-tk.C
	}
	tk.Stop()
	after, _, err := Count(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 20 {
		t.Fatalf("%d wakeups counted over 50 ticks", after-before)
	}
}

func TestCountNoProcess(t *testing.T) {
	if _, _, err := Count(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}
