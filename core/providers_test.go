package core

import (
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
