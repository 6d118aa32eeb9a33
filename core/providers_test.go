package core

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/netem"
)

// TestDownloadFromEveryMember: once bob holds alice's file, carol's
// download asks both of them, and the bytes match.
func TestDownloadFromEveryMember(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob", "carol")
	alice, bob, carol := nodes[0], nodes[1], nodes[2]

	p, data := writeFile(t, tmp, "clip.mp4", 9<<20+77)
	g, _, inv := newGroup(ctx, t, alice, "g", p)
	join(ctx, t, inv, bob, carol)
	if _, err := bob.GetFile(ctx, g.ID, key.RecordKey{}, "clip.mp4", filepath.Join(tmp, "bob.mp4"), nil); err != nil {
		t.Fatal(err)
	}
	_, last := getFile(ctx, t, carol, g.ID, "clip.mp4", filepath.Join(tmp, "carol.mp4"), data)
	providers := map[string]bool{}
	var sum int64
	for _, pp := range last.Providers {
		providers[pp.Node] = true
		sum += pp.Bytes
	}
	if !providers[alice.NodeID().String()] || !providers[bob.NodeID().String()] || last.Done != int64(len(data)) || sum != last.Done {
		t.Fatalf("last progress %+v: want alice and bob as providers, their bytes adding up to %d", last, len(data))
	}
}

// TestLargeBlobStripedOverLanes: a blob of LaneMinSize and up from a node
// over a wide-area path (alice's socket delays each datagram by 5 ms, a
// 10 ms round trip) is fetched over several transport lanes, a tunnel on
// each: more tunnels than with Options.Lanes 1, the bytes alike; a node
// on plain loopback (near) is not a wide-area path and gets NearLanes.
func TestLargeBlobStripedOverLanes(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 90*time.Second)
	alice := startWith(t, filepath.Join(tmp, "alice"), Options{Link: &netem.Options{Delay: 5 * time.Millisecond}}, false)
	near := startNode(t, filepath.Join(tmp, "near"), alice.Contact())
	waitBootedT(t, alice)
	p, data := writeFile(t, tmp, "big.bin", LaneMinSize+1<<20)
	g, _, inv := newGroup(ctx, t, alice, "big", p)
	join(ctx, t, inv, near)
	tunnels := map[int]int64{}
	for _, lanes := range []int{1, DefaultLanes} {
		name := fmt.Sprintf("bob-%d", lanes)
		bob := startWith(t, filepath.Join(tmp, name), Options{Bootstrap: []string{near.Contact()}, Lanes: lanes}, false)
		join(ctx, t, inv, bob)
		waitListed(ctx, t, bob, g.ID, "big.bin")
		before := bob.Traffic().BlobStreamsOpened
		getFile(ctx, t, bob, g.ID, "big.bin", filepath.Join(tmp, name+".out"), data)
		tunnels[lanes] = bob.Traffic().BlobStreamsOpened - before
		t.Logf("lanes %d: %d tunnels", lanes, tunnels[lanes])
		if lanes > 1 {
			// The near path is loopback, but a loaded machine can make
			// its measured round trip reach LaneMinRTT, and then it is
			// rightly treated as wide area (TestLanesFor has the rule).
			nearRTT, _ := bob.run().ep.PeerRTT(near.NodeID())
			if a, n := bob.lanesTo(alice.NodeID(), LaneMinSize), bob.lanesTo(near.NodeID(), LaneMinSize); a != DefaultLanes || (n != NearLanes && nearRTT < LaneMinRTT) {
				t.Fatalf("lanes to alice %d (want %d: wide area), to near %d (want %d, its round trip %v)", a, DefaultLanes, n, NearLanes, nearRTT)
			}
		}
	}
	if tunnels[DefaultLanes] < tunnels[1]+2 {
		t.Fatalf("striping opened %d tunnels, one lane %d", tunnels[DefaultLanes], tunnels[1])
	}
}

// TestLanesFor: one lane for a small blob, with no round trip known, or
// with Options.Lanes 1; every lane over a wide-area path; at most
// NearLanes over a near one.
func TestLanesFor(t *testing.T) {
	for _, c := range []struct {
		lanes int
		size  int64
		rtt   time.Duration
		known bool
		want  int
	}{
		{4, LaneMinSize - 1, 50 * time.Millisecond, true, 1},
		{4, LaneMinSize, 50 * time.Millisecond, false, 1},
		{1, 1 << 30, 50 * time.Millisecond, true, 1},
		{4, LaneMinSize, LaneMinRTT, true, 4},
		{3, 1 << 30, 80 * time.Millisecond, true, 3},
		{4, LaneMinSize, LaneMinRTT - 1, true, NearLanes},
		{4, 1 << 30, 50 * time.Microsecond, true, NearLanes},
		{1, 1 << 30, 50 * time.Microsecond, true, 1},
	} {
		if got := LanesFor(c.lanes, c.size, c.rtt, c.known); got != c.want {
			t.Errorf("LanesFor(%d, %d, %v, %v) = %d, want %d", c.lanes, c.size, c.rtt, c.known, got, c.want)
		}
	}
}
