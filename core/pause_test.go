package core

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
)

// TestPauseResume: a paused bob is gone from the network (his tunnel
// descriptor cleared, alice hears of his shutdown, her pings to him fail)
// yet lists and adds from his store,
// his add queued; a join fails with ErrPaused. Resume makes him ready and
// his tunnel descriptor published within a second; then he hears of the
// file alice added while he was paused, and she of his.
func TestPauseResume(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "boot", "alice", "bob")
	alice, bob := nodes[1], nodes[2]
	g, _, inv := newGroup(ctx, t, alice, "pause")
	join(ctx, t, inv, bob)
	pa, _ := writeFile(t, tmp, "before.txt", 1000)
	if _, err := alice.AddFiles(ctx, g.ID, []string{pa}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob to list before.txt", func() bool {
		l, err := bob.List(ctx, g.ID)
		return err == nil && len(l.Files) == 1
	})
	aliceSub := alice.Subscribe(SubscribeOptions{Kinds: []string{KindPeerUnreachable, KindFileAdded}})
	defer aliceSub.Close()
	bobSub := bob.Subscribe(SubscribeOptions{Kinds: []string{KindPublicationState, KindFileAdded}})
	defer bobSub.Close()

	t0 := time.Now()
	if err := bob.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Logf("pause took %v", time.Since(t0))
	if !bob.Paused() || bob.Pause() != nil {
		t.Fatal("bob not paused, or a second Pause failed")
	}
	nextEvent(t, aliceSub, 5*time.Second, "peer.unreachable of bob on alice", isPeer(KindPeerUnreachable, bob.NodeID()))
	// His tunnel descriptor was cleared before he went: nobody dials him.
	ags, _ := alice.group(g.ID)
	members, err := ags.g.Providers(ctx, nil, alice.NodeID())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Tunnel.Node == bob.NodeID() {
			t.Fatalf("alice still reads bob's tunnel descriptor while he is paused: %+v", m.Tunnel)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := alice.curDHT().Ping(pctx, dht.Contact{ID: bob.NodeID(), Addr: bob.Addr()}); err == nil {
		t.Fatal("alice's ping reached the paused bob")
	}
	if _, err := bob.JoinGroup(ctx, inv); !errors.Is(err, ErrPaused) && err != nil {
		// Already a member: the join is answered locally. A new group needs the network.
		t.Fatalf("join while paused: %v", err)
	}
	if _, err := bob.CreateGroup(ctx, "while-paused"); !errors.Is(err, ErrPaused) {
		t.Fatalf("CreateGroup while paused: %v, want ErrPaused", err)
	}
	pb, _ := writeFile(t, tmp, "bob-paused.txt", 500)
	if _, err := bob.AddFiles(ctx, g.ID, []string{pb}); err != nil {
		t.Fatalf("add while paused: %v", err)
	}
	nextEvent(t, bobSub, time.Second, "bob's add queued", func(ev Event) bool {
		pe, ok := ev.Payload.(PublicationEvent)
		return ok && pe.Record == "collection" && pe.State == "queued"
	})
	if l, err := bob.List(ctx, g.ID); err != nil || len(l.Files) != 2 {
		t.Fatalf("bob's listing while paused: %+v, %v; want before.txt and his own file", l.Files, err)
	}
	pc, _ := writeFile(t, tmp, "alice-while-bob-paused.txt", 700)
	if _, err := alice.AddFiles(ctx, g.ID, []string{pc}); err != nil {
		t.Fatal(err)
	}

	last := bob.LastEventID()
	bobFiles := bob.Subscribe(SubscribeOptions{Kinds: []string{KindFileAdded}})
	defer bobFiles.Close()
	t0 = time.Now()
	if err := bob.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(t0)
	nextEvent(t, bobSub, time.Second, "bob's tunnel descriptor published", func(ev Event) bool {
		pe, ok := ev.Payload.(PublicationEvent)
		return ok && ev.ID > last && pe.Record == "tunnel" && pe.State == "published" && ev.Group == g.ID
	})
	republished := time.Since(t0)
	t.Logf("resume: ready in %v, tunnel descriptor republished in %v", ready, republished)
	if bob.Paused() {
		t.Fatal("bob still paused after Resume")
	}
	// After the resume each side hears of the file the other added
	// meanwhile, from the watches, which place their leases as soon as the
	// network answers (dht.Watch), not a renewal later.
	nextEvent(t, bobFiles, 5*time.Second, "file.added on bob of alice's file added while he was paused", isFile(KindFileAdded, "alice-while-bob-paused.txt"))
	nextEvent(t, aliceSub, 5*time.Second, "file.added on alice of bob's file added while he was paused", isFile(KindFileAdded, "bob-paused.txt"))
	t.Logf("resume: both sides heard of the other's change in %v", time.Since(t0))
}

// nodeGoroutines lists the goroutines running code of a node's network
// half (core's loops, the DHT, transport, tunnels, quic-go), leaving out
// the event subscriptions, which wait for events and never wake by
// themselves, and this test's own.
func nodeGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "core.(*Subscription).run") || strings.Contains(g, "testing.tRunner") || strings.Contains(g, "testing.(*T).Run") {
			continue
		}
		for _, pkg := range []string{"dwebkit/dweb/core", "dwebkit/dweb/internal/", "quic-go", "dwebkit/dweb/blobsync"} {
			if strings.Contains(g, pkg) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// TestPauseStopsEverything: with every other node closed, a paused node
// leaves no goroutine of its network half running (loops, watches, DHT
// maintenance, the endpoint's readers), and Resume starts them again.
func TestPauseStopsEverything(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "boot", "alice", "phone")
	boot, alice, phone := nodes[0], nodes[1], nodes[2]
	g, _, inv := newGroup(ctx, t, alice, "stop")
	join(ctx, t, inv, phone)
	gs, _ := phone.group(g.ID)
	waitFor(t, "the phone's watches", func() bool { return phone.isWatched(gs, g.ID) && phone.isWatched(gs, alice.Groups()[0].Repo) })
	if err := phone.Pause(); err != nil {
		t.Fatal(err)
	}
	closeTogether(boot, alice)
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if left = nodeGoroutines(); len(left) == 0 {
			break
		}
		if time.Now().After(deadline.Add(-4 * time.Second)) {
			t.Logf("%d left: %s", len(left), strings.Join(left, "\n\n"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the node's network half still run 5 s after the pause:\n%s", len(left), strings.Join(left, "\n\n"))
		}
	}
	if err := phone.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(nodeGoroutines()); n == 0 {
		t.Fatal("no goroutine of the network half after Resume")
	}
	if err := phone.Close(); err != nil {
		t.Fatal(err)
	}
	if err := phone.Resume(ctx); err != nil || phone.Pause() == nil {
		t.Fatalf("after Close: Resume %v (want nil: nothing to do), Pause nil (want an error)", err)
	}
}
