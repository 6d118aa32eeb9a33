package core

import (
	"context"
	"testing"
	"time"
)

// TestWatchDeliversNewFiles: once bob is in the group, a file alice adds
// reaches him through the DHT watches (an event, and the collection
// fetched), so he lists it from local state, even after every other node
// is gone.
func TestWatchDeliversNewFiles(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "boot", "alice", "bob")
	boot, alice, bob := nodes[0], nodes[1], nodes[2]

	g, _, inv := newGroup(ctx, t, alice, "g")
	join(ctx, t, inv, bob)
	aliceRepo := alice.Groups()[0].Repo
	gs, err := bob.group(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob's watch on alice's repo", func() bool { return bob.isWatched(gs, aliceRepo) && bob.isWatched(gs, g.ID) })

	sub := bob.Subscribe(SubscribeOptions{})
	defer sub.Close()
	p, _ := writeFile(t, tmp, "new.jpg", 40000)
	start := time.Now()
	if _, err := alice.AddFiles(ctx, g.ID, []string{p}); err != nil {
		t.Fatal(err)
	}
	seen := false
	for !seen {
		select {
		case ev := <-sub.C:
			if ev.Kind != KindRepoChanged || ev.Repo != aliceRepo {
				continue
			}
			files, err := bob.ListFiles(ctx, g.ID)
			seen = err == nil && len(files) == 1 && files[0].Name == "new.jpg"
		case <-time.After(5 * time.Second):
			t.Fatal("bob was not told of alice's new file within 5 s")
		}
	}
	t.Logf("bob saw alice's new file %v after she added it", time.Since(start))

	alice.Close()
	boot.Close()
	lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
	defer lcancel()
	start = time.Now()
	files, err := bob.ListFiles(lctx, g.ID)
	if err != nil || len(files) != 1 || files[0].Name != "new.jpg" || files[0].Repo != aliceRepo {
		t.Fatalf("bob alone lists %+v, %v", files, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("bob's list took %v with the network gone: it did not read the watched copy", d)
	}
}
