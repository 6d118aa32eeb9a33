package core

import (
	"slices"
	"testing"
	"time"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/key"
)

// isPeer matches a peer event of kind about node id.
func isPeer(kind string, id key.NodeID) func(Event) bool {
	return func(ev Event) bool {
		pe, ok := ev.Payload.(PeerEvent)
		return ev.Kind == kind && ok && pe.Node == id
	}
}

// TestPeerEvents: bob hears that alice's node is reachable when his
// watch fetches her new collection through a tunnel, once however many
// files follow, and unreachable when she shuts down cleanly, each with
// her repo and the reason; alice hears of bob's node as it opens its
// tunnel to her.
func TestPeerEvents(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "boot", "alice", "bob")
	alice, bob := nodes[1], nodes[2]
	peerKinds := []string{KindPeerReachable, KindPeerUnreachable}
	bobSub := bob.Subscribe(SubscribeOptions{Kinds: peerKinds})
	defer bobSub.Close()
	aliceSub := alice.Subscribe(SubscribeOptions{Kinds: peerKinds})
	defer aliceSub.Close()

	g, _, inv := newGroup(ctx, t, alice, "peers")
	join(ctx, t, inv, bob)
	aliceRepo := alice.Groups()[0].Repo
	for i, name := range []string{"a.txt", "b.txt"} {
		p, _ := writeFile(t, tmp, name, 1000+i)
		if _, err := alice.AddFiles(ctx, g.ID, []string{p}); err != nil {
			t.Fatal(err)
		}
	}
	ev := nextEvent(t, bobSub, 10*time.Second, "peer.reachable of alice on bob", func(ev Event) bool { return ev.Kind == KindPeerReachable })
	if pe := ev.Payload.(PeerEvent); pe.Node != alice.NodeID() || pe.Reason != PeerTunnel || ev.Group != g.ID || ev.Repo != aliceRepo {
		t.Fatalf("bob's peer.reachable %+v (%+v), want alice's node %s, reason tunnel, her repo %s", ev, pe, alice.NodeID(), aliceRepo)
	}
	ev = nextEvent(t, aliceSub, 10*time.Second, "peer.reachable of bob on alice", isPeer(KindPeerReachable, bob.NodeID()))
	if pe := ev.Payload.(PeerEvent); pe.Reason != PeerInbound || ev.Group != g.ID {
		t.Fatalf("alice's peer.reachable %+v", ev)
	}
	waitFor(t, "bob to list both of alice's files", func() bool {
		l, err := bob.List(ctx, g.ID)
		return err == nil && len(l.Files) == 2
	})

	alice.Close()
	// The next peer event bob hears must be alice's shutdown: a second
	// peer.reachable for the second file would be a repeat.
	ev = nextEvent(t, bobSub, 10*time.Second, "a peer event on bob after alice's shutdown", func(Event) bool { return true })
	if pe, _ := ev.Payload.(PeerEvent); ev.Kind != KindPeerUnreachable || pe.Node != alice.NodeID() || pe.Reason != PeerShutdown || ev.Repo != aliceRepo || ev.Group != g.ID {
		t.Fatalf("bob's peer event after alice's shutdown: %+v, want peer.unreachable of her node, reason shutdown, her repo", ev)
	}
}

// TestReachTransitions: providerHealth tells a node's reachability only
// when it turns, with the repos the node serves.
func TestReachTransitions(t *testing.T) {
	var h providerHealth
	var id key.NodeID
	id[0] = 1
	g, r := key.RecordKey{2}, key.RecordKey{3}
	if refs := h.opened(id, time.Millisecond); refs == nil || len(refs) != 0 {
		t.Fatalf("first opening of an unknown node: %v, want a turn with no repo", refs)
	}
	h.serves(g, []group.Member{{Repo: r, Tunnel: datarepo.TunnelDescriptor{Node: id}}})
	want := []memberRef{{g, r}}
	steps := []struct {
		what string
		do   func() []memberRef
		want []memberRef
	}{
		{"opened again", func() []memberRef { return h.opened(id, time.Millisecond) }, nil},
		{"answered while up", func() []memberRef { return h.answered(id, g) }, nil},
		{"failed", func() []memberRef { return h.failed(id) }, want},
		{"shut down while down", func() []memberRef { return h.shutdown(id) }, nil},
		{"answered", func() []memberRef { return h.answered(id, g) }, want},
		{"shut down", func() []memberRef { return h.shutdown(id) }, want},
	}
	for _, s := range steps {
		if got := s.do(); !slices.Equal(got, s.want) {
			t.Fatalf("%s: %v, want %v", s.what, got, s.want)
		}
	}
}
