package core

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
)

// TestCollectGarbage: alice keeps no older version (KeepVersions -1) and
// replaces her file; bob keeps every version and replaces his, and alice
// fetches both of his. CollectGarbage on alice removes her old version's
// blob and her old collections, and keeps her current file and both of
// bob's versions (his history keeps the old one); a second pass removes
// nothing.
func TestCollectGarbage(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	boot := startNode(t, filepath.Join(tmp, "boot"))
	alice := startWith(t, filepath.Join(tmp, "alice"), Options{Bootstrap: []string{boot.Contact()}, KeepVersions: -1, GCGrace: -1}, false)
	bob := startWith(t, filepath.Join(tmp, "bob"), Options{Bootstrap: []string{boot.Contact()}, GCGrace: -1}, false)
	version := func(dir, name string, size int) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(tmp, dir), 0o700); err != nil {
			t.Fatal(err)
		}
		p, _ := writeFile(t, filepath.Join(tmp, dir), name, size)
		return p
	}
	g, added, inv := newGroup(ctx, t, alice, "gc", version("a1", "a.txt", 40000))
	a1 := added[0].Hash
	join(ctx, t, inv, bob)
	add := func(b *Backend, p string) blobsync.Hash {
		t.Helper()
		fi, err := b.AddFiles(ctx, g.ID, []string{p})
		if err != nil {
			t.Fatal(err)
		}
		return fi[0].Hash
	}
	a2 := add(alice, version("a2", "a.txt", 50000))
	b1 := add(bob, version("b1", "b.txt", 30000))
	b2 := add(bob, version("b2", "b.txt", 35000))
	waitFor(t, "alice to list bob's second b.txt", func() bool {
		l, err := alice.List(ctx, g.ID)
		if err != nil {
			return false
		}
		for _, f := range l.Files {
			if f.Name == "b.txt" && f.Hash == b2 {
				return true
			}
		}
		return false
	})
	bobRepo := bob.Groups()[0].Repo
	for _, ref := range []string{"0", "1"} {
		if _, err := alice.GetFileVersion(ctx, g.ID, bobRepo, "b.txt", ref, filepath.Join(tmp, "out-b-"+ref), nil); err != nil {
			t.Fatalf("alice gets version %s of bob's b.txt: %v", ref, err)
		}
	}
	has := func(h blobsync.Hash) bool {
		ok, err := alice.blobs.Has(h)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, h := range []blobsync.Hash{a1, a2, b1, b2} {
		if !has(h) {
			t.Fatalf("alice lacks %s before GC", h)
		}
	}
	res, err := alice.CollectGarbage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc: %+v", res)
	if has(a1) {
		t.Error("alice's replaced a.txt, which her retention keeps no version of, survived GC")
	}
	for name, h := range map[string]blobsync.Hash{"a.txt": a2, "bob's b.txt": b2, "bob's older b.txt (his history keeps it)": b1} {
		if !has(h) {
			t.Errorf("GC removed %s", name)
		}
	}
	// a1 and at least one of alice's earlier collections.
	if res.Removed < 2 || res.BytesAfter >= res.BytesBefore {
		t.Errorf("gc removed %d blobs, %d -> %d bytes; want a1 and an old collection", res.Removed, res.BytesBefore, res.BytesAfter)
	}
	fi, err := alice.GetFile(ctx, g.ID, key.RecordKey{}, "a.txt", filepath.Join(tmp, "out-a"), nil)
	if err != nil || fi.Hash != a2 {
		t.Fatalf("alice's current a.txt after GC: %+v, %v", fi, err)
	}
	again, err := alice.CollectGarbage(ctx)
	if err != nil || again.Removed != 0 {
		t.Fatalf("second gc: %+v, %v; want nothing removed", again, err)
	}
}
