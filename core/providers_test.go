package core

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
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

// TestLargeBlobStripedOverLanes: a blob of LaneMinSize and up is fetched
// over several transport lanes to its one provider (a tunnel on each),
// and with Options.Lanes 1 over one, bytes alike.
func TestLargeBlobStripedOverLanes(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	alice := startNode(t, filepath.Join(tmp, "alice"))
	waitBootedT(t, alice)
	p, data := writeFile(t, tmp, "big.bin", LaneMinSize+1<<20)
	g, _, inv := newGroup(ctx, t, alice, "big", p)
	for _, lanes := range []int{DefaultLanes, 1} {
		name := fmt.Sprintf("bob-%d", lanes)
		bob := startWith(t, filepath.Join(tmp, name), Options{Bootstrap: []string{alice.Contact()}, Lanes: lanes}, false)
		join(ctx, t, inv, bob)
		waitListed(ctx, t, bob, g.ID, "big.bin")
		before := bob.Traffic().BlobStreamsOpened
		getFile(ctx, t, bob, g.ID, "big.bin", filepath.Join(tmp, name+".bin"), data)
		got := bob.Traffic().BlobStreamsOpened - before
		if (lanes == 1 && got > 1) || (lanes > 1 && got < 2) {
			t.Fatalf("lanes %d: the download opened %d tunnels", lanes, got)
		}
		t.Logf("lanes %d: %d tunnels", lanes, got)
	}
}
