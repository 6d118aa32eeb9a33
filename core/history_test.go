package core

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/testnet"
)

// checkOut fails t unless the file at p holds want, by BLAKE3 and, when
// b3sum is installed, by b3sum.
func checkOut(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil || blobsync.HashBytes(got) != blobsync.HashBytes(want) || len(got) != len(want) {
		t.Fatalf("%s differs from the bytes added (%v)", p, err)
	}
	if sum := testnet.B3sum(t, p); sum != "" && sum != blobsync.HashBytes(want).String() {
		t.Fatalf("b3sum %s of %s, want %s", sum, p, blobsync.HashBytes(want))
	}
}

// TestFileHistoryAcrossNodes: alice writes two versions of a small file and
// of a chunked film; bob, another real node, lists both histories and gets
// each old version from alice, by index and by hash prefix, byte-identical
// (the old film fetches only the chunks bob lacks). Alice deletes the
// small file: it leaves both listings, its history shows the deletion, and
// restoring the version before it brings the same bytes back, for bob
// too. Bad versions and names get their errors.
func TestFileHistoryAcrossNodes(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 90*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob")
	alice, bob := nodes[0], nodes[1]
	g, _, inv := newGroup(ctx, t, alice, "g")
	chunkOwnRepo(t, alice, g.ID)

	var docs, films [][]byte
	for i := range 2 {
		p, d := writeFile(t, tmp, "doc.txt", 1000+i)
		docs = append(docs, d)
		pf, f := writeFile(t, tmp, "film.mp4", 24<<20)
		if i > 0 {
			copy(f[1<<20:], films[0][1<<20:]) // the same but for the first MiB
			if err := os.WriteFile(pf, f, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		films = append(films, f)
		if _, err := alice.AddFiles(ctx, g.ID, []string{p, pf}); err != nil {
			t.Fatal(err)
		}
	}
	join(ctx, t, inv, bob)

	h, err := bob.FileHistory(ctx, g.ID, key.RecordKey{}, "film.mp4")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Versions) != 2 || h.Mine || h.Repo != alice.groupRepo(t, g.ID) || !h.Versions[1].Chunked ||
		h.Versions[1].Hash != blobsync.HashBytes(films[0]) || h.Versions[0].Local || h.Versions[1].Index != 1 {
		t.Fatalf("bob's film history %+v", h)
	}
	out := filepath.Join(tmp, "bob-film-old.mp4")
	fi, err := bob.GetFileVersion(ctx, g.ID, key.RecordKey{}, "film.mp4", h.Versions[1].Hash.String()[:12], out, nil)
	if err != nil || fi.Hash != blobsync.HashBytes(films[0]) || !fi.Local {
		t.Fatalf("bob gets the old film: %+v, %v", fi, err)
	}
	checkOut(t, out, films[0])
	// The current film now costs only the chunks of its first MiB: those
	// before the first cut past it, at most 1 MiB + ChunkMax, and the
	// chunk after, whose start may differ (cuts resume ChunkMin after the
	// one before).
	var last Progress
	fi, err = bob.GetFileVersion(ctx, g.ID, key.RecordKey{}, "film.mp4", "0", filepath.Join(tmp, "bob-film.mp4"), func(p Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	checkOut(t, filepath.Join(tmp, "bob-film.mp4"), films[1])
	var moved int64
	for _, pp := range last.Providers {
		moved += pp.Bytes
	}
	if moved > 1<<20+2*blobsync.ChunkMax {
		t.Fatalf("the current film moved %d bytes after the old one was fetched", moved)
	}
	if _, err := bob.GetFileVersion(ctx, g.ID, key.RecordKey{}, "doc.txt", "1", filepath.Join(tmp, "bob-doc-old.txt"), nil); err != nil {
		t.Fatal(err)
	}
	checkOut(t, filepath.Join(tmp, "bob-doc-old.txt"), docs[0])

	if err := alice.RemoveFile(ctx, g.ID, "doc.txt"); err != nil {
		t.Fatal(err)
	}
	if files, err := alice.ListFiles(ctx, g.ID); err != nil || len(files) != 1 || files[0].Name != "film.mp4" {
		t.Fatalf("alice lists %+v after the delete (%v)", files, err)
	}
	ah, err := alice.FileHistory(ctx, g.ID, key.RecordKey{}, "doc.txt")
	if err != nil || len(ah.Versions) != 3 || !ah.Versions[0].Deleted || !ah.Mine {
		t.Fatalf("alice's doc history after the delete: %+v, %v", ah, err)
	}
	waitFor(t, "bob's listing without the deleted file", func() bool {
		files, err := bob.ListFiles(ctx, g.ID)
		return err == nil && len(files) == 1
	})

	var bad *BadInputError
	for _, tc := range []struct {
		ref  string
		want func(error) bool
	}{
		{"0", func(err error) bool { return errors.As(err, &bad) }}, // the deletion
		{"9", func(err error) bool { return errors.Is(err, ErrVersionNotFound) }},
		{"ffffffffff", func(err error) bool { return errors.Is(err, ErrVersionNotFound) }},
		{"v1", func(err error) bool { return errors.As(err, &bad) }},
	} {
		if _, err := alice.RestoreFile(ctx, g.ID, "doc.txt", tc.ref); !tc.want(err) {
			t.Fatalf("restore version %q: %v", tc.ref, err)
		}
	}
	if _, err := alice.RestoreFile(ctx, g.ID, "nothing.txt", "1"); !errors.Is(err, ErrFileNotFound) {
		t.Fatalf("restore of an unknown name: %v", err)
	}
	if _, err := bob.RestoreFile(ctx, g.ID, "doc.txt", "1"); !errors.Is(err, ErrFileNotFound) {
		t.Fatalf("bob restores a file of alice's repo: %v", err)
	}
	if _, err := bob.FileHistory(ctx, g.ID, key.RecordKey{}, "nothing.txt"); !errors.Is(err, ErrFileNotFound) {
		t.Fatalf("history of an unknown name: %v", err)
	}

	fi, err = alice.RestoreFile(ctx, g.ID, "doc.txt", "1")
	if err != nil || fi.Hash != blobsync.HashBytes(docs[1]) || !fi.Mine {
		t.Fatalf("restore: %+v, %v", fi, err)
	}
	ah, err = alice.FileHistory(ctx, g.ID, key.RecordKey{}, "doc.txt")
	if err != nil || len(ah.Versions) != 4 || ah.Versions[0].Hash != blobsync.HashBytes(docs[1]) || !ah.Versions[1].Deleted {
		t.Fatalf("alice's doc history after the restore: %+v, %v", ah, err)
	}
	waitFor(t, "bob's listing with the restored file", func() bool {
		files, err := bob.ListFiles(ctx, g.ID)
		return err == nil && len(files) == 2
	})
	getFile(ctx, t, bob, g.ID, "doc.txt", filepath.Join(tmp, "bob-doc.txt"), docs[1])
	checkOut(t, filepath.Join(tmp, "bob-doc.txt"), docs[1])
}

// groupRepo returns b's own repo key in group g.
func (b *Backend) groupRepo(t *testing.T, g key.RecordKey) key.RecordKey {
	t.Helper()
	gs, err := b.group(g)
	if err != nil {
		t.Fatal(err)
	}
	return gs.info.Repo
}

// TestRetentionOption: Options.KeepVersions maps to the repo's retention:
// 0 keeps every version, N the N newest, negative none.
func TestRetentionOption(t *testing.T) {
	for _, tc := range []struct {
		keep int
		want blobsync.Retention
	}{
		{0, blobsync.KeepAll},
		{3, blobsync.Retention{Keep: 3}},
		{-1, blobsync.Retention{}},
	} {
		if got := retention(Options{KeepVersions: tc.keep}); got != tc.want {
			t.Fatalf("KeepVersions %d: %+v, want %+v", tc.keep, got, tc.want)
		}
	}
	if got := retention(Options{KeepVersionsFor: time.Hour}); got.MaxAge != time.Hour || got.Keep != -1 {
		t.Fatalf("KeepVersionsFor: %+v", got)
	}
}

// TestBackupKeepsHistory: a backup server copies every version a repo's
// history keeps, a deleted file's included, and once alice is gone a new
// member gets an old version from the backup alone, byte-identical.
func TestBackupKeepsHistory(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	boot := startNode(t, filepath.Join(tmp, "boot"))
	alice := startNode(t, filepath.Join(tmp, "alice"), boot.Contact())
	backup := startWith(t, filepath.Join(tmp, "backup"), Options{Bootstrap: []string{boot.Contact()}, Backup: true}, false)
	g, _, inv := newGroup(ctx, t, alice, "archive")
	var docs [][]byte
	for i := range 2 {
		p, d := writeFile(t, tmp, "statement.txt", 2000+i)
		docs = append(docs, d)
		if _, err := alice.AddFiles(ctx, g.ID, []string{p}); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.RemoveFile(ctx, g.ID, "statement.txt"); err != nil {
		t.Fatal(err)
	}
	join(ctx, t, inv, backup)
	waitFor(t, "the backup to hold both versions of the deleted file", holds(backup, g.ID, 2))

	alice.Close()
	carol := startNode(t, filepath.Join(tmp, "carol"), boot.Contact())
	join(ctx, t, inv, carol)
	h, err := carol.FileHistory(ctx, g.ID, key.RecordKey{}, "statement.txt")
	if err != nil || len(h.Versions) != 3 || !h.Versions[0].Deleted {
		t.Fatalf("carol's history of the deleted file: %+v, %v", h, err)
	}
	for i, d := range []int{2, 1} {
		out := filepath.Join(tmp, fmt.Sprintf("carol-%d.txt", i))
		var last Progress
		if _, err := carol.GetFileVersion(ctx, g.ID, key.RecordKey{}, "statement.txt", fmt.Sprint(d), out, func(p Progress) { last = p }); err != nil {
			t.Fatal(err)
		}
		checkOut(t, out, docs[i])
		if len(last.Providers) != 1 || last.Providers[0].Node != backup.NodeID().String() {
			t.Fatalf("carol got version %d with progress %+v, want the backup as the one provider", d, last)
		}
	}
}
