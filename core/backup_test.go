package core

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// backupGroupStatus returns the backup's status of group g (ok false if
// the group has had no pass yet).
func backupGroupStatus(b *Backend, g key.RecordKey) (BackupGroupStatus, bool) {
	for _, st := range b.BackupStatus().Groups {
		if st.Group == g && !st.LastPass.IsZero() {
			return st, true
		}
	}
	return BackupGroupStatus{}, false
}

func holds(b *Backend, g key.RecordKey, files int) func() bool {
	return func() bool {
		st, ok := backupGroupStatus(b, g)
		return ok && st.Files == files && st.Held == files && st.Missing == 0
	}
}

// TestBackupServesGroup: a backup node that joins from the invite fetches
// every file without being asked, gets a new file through the watches
// within seconds, and, once alice is gone, is the one provider a new
// member downloads every file from.
func TestBackupServesGroup(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	boot := startNode(t, filepath.Join(tmp, "boot"))
	alice := startNode(t, filepath.Join(tmp, "alice"), boot.Contact())
	backup := startWith(t, filepath.Join(tmp, "backup"), Options{Bootstrap: []string{boot.Contact()}, Backup: true}, false)

	if st := alice.BackupStatus(); st.Enabled || len(st.Groups) != 0 {
		t.Fatalf("alice (no backup mode) reports %+v", st)
	}
	paths, want := writeFiles(t, tmp, []string{"note.txt", "clip.mp4"}, 1000, 3<<20+17)
	g, _, inv := newGroup(ctx, t, alice, "newsroom", paths...)
	join(ctx, t, inv, backup)
	waitFor(t, "the backup to hold alice's two files", holds(backup, g.ID, 2))
	st, _ := backupGroupStatus(backup, g.ID)
	// The group record and both repo records are republished by the backup.
	if st.BytesHeld != int64(1000+3<<20+17) || st.Name != "newsroom" || len(st.Errors) != 0 || st.Records != 3 || st.Repos != 2 {
		t.Fatalf("backup status %+v", st)
	}

	// A new file reaches the backup through its watch on alice's repo.
	gs, err := backup.group(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	aliceRepo := alice.Groups()[0].Repo
	waitFor(t, "the backup's watch on alice's repo", func() bool { return backup.isWatched(gs, aliceRepo) })
	p, data := writeFile(t, tmp, "late.jpg", 200<<10+3)
	want["late.jpg"] = data
	start := time.Now()
	if _, err := alice.AddFiles(ctx, g.ID, []string{p}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !holds(backup, g.ID, 3)() {
		if time.Now().After(deadline) {
			st, _ := backupGroupStatus(backup, g.ID)
			t.Fatalf("the backup did not get alice's new file within 5 s: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the backup held alice's new file %v after she added it", time.Since(start))

	// Alice leaves; carol joins from the invite and gets everything from
	// the backup alone.
	alice.Close()
	carol := startNode(t, filepath.Join(tmp, "carol"), boot.Contact())
	join(ctx, t, inv, carol)
	for name, data := range want {
		fi, last := getFile(ctx, t, carol, g.ID, name, filepath.Join(tmp, "carol-"+name), data)
		if fi.Repo != aliceRepo {
			t.Fatalf("%s came from repo %s, want alice's %s", name, fi.Repo, aliceRepo)
		}
		// Every provider carol's download had is the backup (alice cleared
		// her tunnel descriptor when she closed).
		if len(last.Providers) != 1 || last.Providers[0].Node != backup.NodeID().String() || last.Done != int64(len(data)) {
			t.Fatalf("carol got %s with progress %+v, want the backup %s as the one provider", name, last, backup.NodeID())
		}
	}
}

// TestBackupResumesAfterRestart: a backup node stopped half-way through a
// download (its only provider left, then it was closed) is restarted, and
// once the provider is back it finishes from the ranges it had verified,
// without fetching them again.
func TestBackupResumesAfterRestart(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	const rate = 2 << 20 // alice's upload limit, bytes/s
	aliceDir := filepath.Join(tmp, "alice")
	ao := Options{UploadRate: rate}
	alice := startWith(t, aliceDir, ao, false)
	const size = 6<<20 + 5
	p, data := writeFile(t, tmp, "big.bin", size)
	g, _, inv := newGroup(ctx, t, alice, "g", p)

	dir := filepath.Join(tmp, "backup")
	bo := Options{Bootstrap: []string{alice.Contact()}, Backup: true, BackupConcurrency: 1}
	backup := startWith(t, dir, bo, false)
	join(ctx, t, inv, backup)
	waitFor(t, "1 MiB of the download", func() bool {
		for _, d := range backup.BackupStatus().Downloading {
			if d.Done >= 1<<20 {
				return true
			}
		}
		return false
	})
	alice.Close()
	if err := backup.Close(); err != nil {
		t.Fatal(err)
	}
	first := backup.BackupStatus()
	t.Logf("stopped with %d of %d bytes fetched", first.Fetched, size)
	if first.Fetched < 1<<20 || first.Fetched >= size {
		t.Fatalf("first run fetched %d bytes of %d: want a part", first.Fetched, size)
	}

	// Both at once, so neither waits out a bootstrap to the other being down.
	nodes := startTogether(t, map[string]Options{aliceDir: ao, dir: bo})
	backup = nodes[dir]
	waitFor(t, "the restarted backup to hold the file", holds(backup, g.ID, 1))
	st := backup.BackupStatus()
	t.Logf("after the restart: resumed %d bytes, fetched %d of %d", st.Resumed, st.Fetched, size)
	if st.Resumed < 1<<20 || st.Resumed >= size || st.Fetched == 0 || st.Fetched+st.Resumed > size {
		t.Fatalf("restarted backup resumed %d and fetched %d bytes of %d: want the verified part kept, only the rest fetched", st.Resumed, st.Fetched, size)
	}
	getFile(ctx, t, backup, g.ID, "big.bin", filepath.Join(tmp, "out.bin"), data)
}

// TestBackupBatchesSmallFiles: a backup node fetches a repo of many small
// files in children requests: every file held and equal, with a few blob
// streams to the member rather than one (or more) per file.
func TestBackupBatchesSmallFiles(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	alice := startNode(t, filepath.Join(tmp, "alice"))
	const files = 60
	var paths []string
	datas := map[string][]byte{}
	for i := range files {
		name := fmt.Sprintf("f%02d.bin", i)
		p, data := writeFile(t, tmp, name, 1000+i*9000)
		paths, datas[name] = append(paths, p), data
	}
	g, _, inv := newGroup(ctx, t, alice, "many", paths...)
	backup := startWith(t, filepath.Join(tmp, "backup"), Options{Bootstrap: []string{alice.Contact()}, Backup: true}, false)
	join(ctx, t, inv, backup)
	waitFor(t, "the backup to hold every file", holds(backup, g.ID, files))
	for name, data := range datas {
		if fi, _ := getFile(ctx, t, backup, g.ID, name, filepath.Join(tmp, "out-"+name), data); !fi.Local {
			t.Fatalf("the backup's %s was not local", name)
		}
	}
	// The collection, then the batches (one stream per member and pass,
	// plus a retry or two); one stream per file would be 60 or more.
	if n := backup.traffic.opened.Load(); n > 10 {
		t.Fatalf("the backup opened %d blob streams for %d small files", n, files)
	}
}
