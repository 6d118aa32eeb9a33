package main

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// TestServeLimitsFlag: --limits takes phone or server; anything else is a
// usage error before the node starts.
func TestServeLimitsFlag(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := &app{dataDir: t.TempDir(), stdout: io.Discard, stderr: io.Discard}
	var ue *usageError
	if err := a.serve(ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error", limits: "huge"}); !errors.As(err, &ue) {
		t.Fatalf("--limits huge: %v, want a usage error", err)
	}
	_, ready := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error", limits: "server"})
	if ready.NodeID == "" {
		t.Fatal("no ready line with --limits server")
	}
}
