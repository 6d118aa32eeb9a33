package core

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
)

// TestGetAfterCleanShutdown: right after alice and bob, who added and
// held the files, shut down cleanly, erin gets a file from the backup
// server, the one node left that holds it, without waiting on either of
// them: she learnt their shutdown from their closed connections, so
// neither the DHT reads of the providers nor the download dial them.
func TestGetAfterCleanShutdown(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	peer := startNode(t, filepath.Join(tmp, "peer"))
	alice := startNode(t, filepath.Join(tmp, "alice"), peer.Contact())
	bob := startNode(t, filepath.Join(tmp, "bob"), peer.Contact())
	backup := startWith(t, filepath.Join(tmp, "backup"), Options{Bootstrap: []string{peer.Contact()}, Backup: true}, false)
	erin := startNode(t, filepath.Join(tmp, "erin"), peer.Contact())
	paths, want := writeFiles(t, tmp, []string{"a.bin", "b.bin"}, 1<<20, 1<<20+5)
	g, _, inv := newGroup(ctx, t, alice, "shutdown", paths...)
	join(ctx, t, inv, bob, backup, erin)
	waitFor(t, "the backup to hold both files", holds(backup, g.ID, 2))
	if _, err := bob.Refresh(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	gone := []*Backend{alice, bob}
	closeTogether(gone...)
	waitFor(t, "erin to learn of their shutdown", func() bool {
		return erin.health.isDown(alice.NodeID()) && erin.health.isDown(bob.NodeID())
	})
	t0 := time.Now()
	getFile(ctx, t, erin, g.ID, "b.bin", filepath.Join(tmp, "got-b"), want["b.bin"])
	if took, bound := time.Since(t0), dht.DefaultRPCTimeout/2; took > bound {
		t.Fatalf("with alice and bob shut down, erin's get from the backup took %v, want under %v (half a DHT request's timeout)", took, bound)
	} else {
		t.Logf("got from the backup alone in %v", took)
	}
	closeTogether(peer, backup, erin)
}
