package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
)

// TestBenchOffline runs one round of `dweb bench offline`: the restart
// with dead contacts is ready, and the add with no peers returns, long
// before one DHT request could time out, and the add's publication waits;
// the listing with the provider gone is complete and warns; the first
// byte from the backup server alone comes within a fifth of that timeout;
// the other member hears of an add within a second.
func TestBenchOffline(t *testing.T) {
	t.Setenv("DWEB_TEST_RUN_MAIN", "1") // the paused node's process is this binary running main
	res, err := benchOffline(context.Background(), t.TempDir(), 1, 1024, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	timeout := float64(dht.DefaultRPCTimeout / time.Millisecond)
	if res.ReadyDeadContacts <= 0 || res.ReadyDeadContacts >= timeout/2 || res.ReadyLiveContacts <= 0 {
		t.Fatalf("ready with dead contacts %.1f ms (live %.1f ms); a DHT request times out after %.0f ms", res.ReadyDeadContacts, res.ReadyLiveContacts, timeout)
	}
	if res.AddNoPeers <= 0 || res.AddNoPeers >= timeout/10 || res.AddPeersUp <= 0 {
		t.Fatalf("add with no peers %.1f ms (peers up %.1f ms)", res.AddNoPeers, res.AddPeersUp)
	}
	if res.PendingAfter < 1 {
		t.Fatalf("%d publications pending after the adds with no peers, want the collection's", res.PendingAfter)
	}
	if !res.ListComplete || res.ListWarnings == 0 || res.ListProviderGone <= 0 || res.ListProvidersUp <= 0 {
		t.Fatalf("list with the provider gone: complete %t, %d warnings, %.1f ms (up: %.1f ms)", res.ListComplete, res.ListWarnings, res.ListProviderGone, res.ListProvidersUp)
	}
	if res.EventLatency <= 0 || res.EventLatency >= 1000 || res.EventAfterAdd <= 0 || res.EventAfterAdd > res.EventLatency {
		t.Fatalf("event latency %.1f ms from the add's call, %.1f ms from its return; want under 1 s", res.EventLatency, res.EventAfterAdd)
	}
	// At most one wakeup in the 2 s window (the Go runtime's own, at most
	// once a minute, may fall in it): a loop or timer of the paused node
	// firing every few seconds shows. TestPauseThroughABI (./ffi) asks 0.
	if res.PausedWakeups > 30 || res.WakeupWindowS != 2 || res.ResumeReady <= 0 || res.ResumeRepublished >= 1000 || res.ResumeRepublished < res.ResumeReady {
		t.Fatalf("paused: %.0f wakeups/min (running %.0f, bare process %.0f); resume %.1f ms, republished %.1f ms", res.PausedWakeups, res.RunningWakeups, res.IdleProcessWakeups, res.ResumeReady, res.ResumeRepublished)
	}
	if res.FirstByteBackupOnly <= 0 || res.FirstByteBackupOnly >= timeout/5 || res.FirstByteMembersUp <= 0 {
		t.Fatalf("first byte from the backup alone %.1f ms (members up %.1f ms)", res.FirstByteBackupOnly, res.FirstByteMembersUp)
	}
}

func TestBenchOfflineBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--rounds", "0"}, {"--rounds", "51"}, {"--size", "0"}, {"--size", "lots"}, {"--wakeup-window", "10ms"}} {
		code, _, errOut := runCLI(t, append([]string{"bench", "offline"}, args...)...)
		if code != 2 || !strings.Contains(errOut, strings.TrimLeft(args[0], "-")) {
			t.Errorf("bench offline %v: exit %d, stderr %q; want 2 naming the flag", args, code, errOut)
		}
	}
}
