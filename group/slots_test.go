package group_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/testnet"
)

// logBuffer is a slog logger whose text output a test can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// TestRepoKeysSkipBadSlots: two repo slots of the group record hold
// garbage a member wrote, validly signed: one seals 5 bytes instead of a
// 32-byte key, one is not sealed at all. Listing skips both with a
// warning and returns the other repos; a new claim takes the first free
// slot, not a garbage one.
func TestRepoKeysSkipBadSlots(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := testnet.New(t, 3)
	g, err := group.Create(ctx, net[0].DHT, "newsroom")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := record.NewDescriptor(g.Owner(), group.Schema)
	if err != nil {
		t.Fatal(err)
	}
	r0, r1, r2 := key.RecordKey{1}, key.RecordKey{2}, key.RecordKey{3}
	if sk, err := g.ClaimRepo(ctx, r0); err != nil || sk != 1 {
		t.Fatalf("claim r0 = %d, %v", sk, err)
	}
	if _, err := datarepo.WriteSealed(ctx, net[1].DHT, desc, 2, g.Owner(), g.Keys(), []byte("short")); err != nil {
		t.Fatal(err)
	}
	if sk, err := g.ClaimRepo(ctx, r1); err != nil || sk != 3 {
		t.Fatalf("claim r1 = %d, %v; want 3", sk, err)
	}
	clear, err := record.NewValue(g.Key(), 4, 0, bytes.Repeat([]byte{7}, 64), g.Owner())
	if err != nil {
		t.Fatal(err)
	}
	if err := net[1].DHT.Set(ctx, desc, 4, clear); err != nil {
		t.Fatal(err)
	}
	if sk, err := g.ClaimRepo(ctx, r2); err != nil || sk != 5 {
		t.Fatalf("claim r2 = %d, %v; want 5", sk, err)
	}

	var logs logBuffer
	reader, _, err := group.Join(ctx, net[2].DHT, g.Key(), g.Secret(), g.Owner())
	if err != nil {
		t.Fatal(err)
	}
	reader.SetLogger(logs.logger())
	keys, err := reader.RepoKeys(ctx)
	if err != nil || len(keys) != 3 || keys[0] != r0 || keys[1] != r1 || keys[2] != r2 {
		t.Fatalf("RepoKeys = %v, %v; want [r0 r1 r2]", keys, err)
	}
	out := logs.String()
	for _, want := range []string{"level=WARN", "subkey=2", "subkey=4"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// A group record that cannot be read at all is still an error.
	other, err := group.Open(net[2].DHT, g.Secret(), key.NewKeypair())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.RepoKeys(ctx); err == nil {
		t.Fatal("RepoKeys of a record nobody wrote: no error")
	}
}
