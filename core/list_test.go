package core

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// listed returns the names of l's files and the state of repo rk in l.
func listed(t *testing.T, l Listing, rk key.RecordKey) ([]string, RepoState) {
	t.Helper()
	var names []string
	for _, f := range l.Files {
		names = append(names, f.Name)
	}
	for _, rs := range l.Repos {
		if rs.Repo == rk {
			return names, rs
		}
	}
	t.Fatalf("listing %+v has no repo %s", l, rk)
	return nil, RepoState{}
}

// TestListProviderGone: when the newest collection of alice's repo cannot
// be fetched (she left after publishing it), bob lists her files from the
// collection he verified before, marks her repo unreachable and warns; so
// again after a restart with every saved contact dead. His own files are
// listed all along.
func TestListProviderGone(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "peer", "alice", "bob")
	peer, alice, bob := nodes[0], nodes[1], nodes[2]
	bobDir := filepath.Join(tmp, "bob")
	a1, _ := writeFile(t, tmp, "a1.txt", 3000)
	g, _, inv := newGroup(ctx, t, alice, "gone", a1)
	join(ctx, t, inv, bob)
	b1, _ := writeFile(t, tmp, "b1.txt", 2000)
	if _, err := bob.AddFiles(ctx, g.ID, []string{b1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob to list alice's file", func() bool {
		l, err := bob.List(ctx, g.ID)
		names, rs := listed(t, l, g.Repo)
		return err == nil && len(names) == 2 && rs.Reachable && len(l.Warnings) == 0
	})

	// Bob is away while alice publishes a new collection, then leaves.
	bob.Close()
	a2, _ := writeFile(t, tmp, "a2.txt", 3000)
	if _, err := alice.AddFiles(ctx, g.ID, []string{a2}); err != nil {
		t.Fatal(err)
	}
	seq, _ := heldCollection(t, alice, g.Repo)
	waitFor(t, "alice's new collection at the peer", func() bool {
		s, ok := heldCollection(t, peer, g.Repo)
		return ok && s == seq
	})
	alice.Close()

	check := func(when string) {
		t.Helper()
		t0 := time.Now()
		l, err := bob.List(ctx, g.ID)
		took := time.Since(t0)
		if err != nil {
			t.Fatalf("%s: list: %v", when, err)
		}
		names, rs := listed(t, l, g.Repo)
		if strings.Join(names, ",") != "a1.txt,b1.txt" {
			t.Fatalf("%s: bob lists %v, want a1.txt (alice's, last verified) and b1.txt (his own)", when, names)
		}
		if rs.Reachable || rs.SeenFresh.IsZero() || rs.Error == "" || rs.Files != 1 {
			t.Fatalf("%s: alice's repo listed as %+v, want unreachable, seen fresh before", when, rs)
		}
		if len(l.Warnings) == 0 || !strings.Contains(strings.Join(l.Warnings, "\n"), g.Repo.String()) {
			t.Fatalf("%s: warnings %q name no unreachable repo", when, l.Warnings)
		}
		for _, f := range l.Files {
			if f.Name == "a1.txt" && (f.RepoReachable || !f.RepoSeenFresh.Equal(rs.SeenFresh)) {
				t.Fatalf("%s: alice's file listed as %+v", when, f)
			}
		}
		// The Save app's listings: its repos, and the media of alice's.
		repos, err := bob.Repos(ctx, g.ID)
		if err != nil || len(repos) != 2 || !slices.ContainsFunc(repos, func(r RepoInfo) bool { return r.Key == g.Repo && r.Name == "alice" }) {
			t.Fatalf("%s: bob's repo list %+v, %v; want alice's under her name and his own", when, repos, err)
		}
		media, err := bob.RepoFiles(ctx, g.ID, g.Repo)
		if err != nil || len(media) != 1 || media[0].Name != "a1.txt" {
			t.Fatalf("%s: bob's media list of alice's repo %+v, %v", when, media, err)
		}
		if bound := 3 * listRepoWait; took > bound {
			t.Fatalf("%s: the listing took %v, want under %v", when, took, bound)
		}
		t.Logf("%s: listed in %v, warnings %q", when, took, l.Warnings)
	}
	bob = startNode(t, bobDir)
	waitFor(t, "alice's new collection hash at bob", func() bool {
		s, ok := heldCollection(t, bob, g.Repo)
		return ok && s == seq
	})
	check("provider gone")

	// Every saved contact dead.
	closeTogether(bob, peer)
	bob = startNode(t, bobDir)
	check("contacts dead")
	bob.Close()
}

// TestBackupListAfterRestart: a backup server restarted with every other
// node gone shows the files it holds at once (the backup list, before its
// first pass has ended), and still after that pass, which could read no
// record from the network.
func TestBackupListAfterRestart(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	alice := startNode(t, filepath.Join(tmp, "alice"))
	backupDir := filepath.Join(tmp, "backup")
	backup := startWith(t, backupDir, Options{Bootstrap: []string{alice.Contact()}, Backup: true}, false)
	paths, _ := writeFiles(t, tmp, []string{"note.txt", "clip.bin"}, 1000, 200<<10)
	g, _, inv := newGroup(ctx, t, alice, "newsroom", paths...)
	join(ctx, t, inv, backup)
	waitFor(t, "the backup to hold alice's two files", holds(backup, g.ID, 2))
	closeTogether(alice, backup)

	backup = startWith(t, backupDir, Options{Backup: true}, false)
	gi := backup.Groups()[0]
	if ag := backup.adminGroup(gi); ag.Files != 2 || ag.Held != 2 || ag.Missing != 0 {
		t.Fatalf("right after the restart the backup list shows %+v, want the 2 files held", ag)
	}
	waitFor(t, "the backup's first pass", func() bool { _, ok := backupGroupStatus(backup, g.ID); return ok })
	if st, _ := backupGroupStatus(backup, g.ID); st.Files != 2 || st.Held != 2 {
		t.Fatalf("after a pass with every other node gone the backup shows %+v", st)
	}
	backup.Close()
}
