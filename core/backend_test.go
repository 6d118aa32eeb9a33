package core

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/uri"
)

// TestShareThroughInvite runs the main job in-process: alice creates a
// group and adds files, bob joins from the invite URI alone, lists and
// downloads them verified, and still has them after a restart.
func TestShareThroughInvite(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)

	boot := startNode(t, filepath.Join(tmp, "boot"))
	alice := startNode(t, filepath.Join(tmp, "alice"), boot.Contact())
	bobDir := filepath.Join(tmp, "bob")
	bob := startNode(t, bobDir)

	small, smallData := writeFile(t, tmp, "note.txt", 1000)
	big, bigData := writeFile(t, tmp, "video.bin", 3<<20+123)
	g, added, inv := newGroup(ctx, t, alice, "family", small, big)
	if len(added) != 2 {
		t.Fatalf("AddFiles = %v", added)
	}
	bg, err := bob.JoinGroup(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	if bg.ID != g.ID || bg.Name != "family" {
		t.Fatalf("bob joined %+v, want %s family", bg, g.ID)
	}
	files, err := bob.ListFiles(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("bob lists %d files, want 2: %+v", len(files), files)
	}
	for _, want := range []struct {
		name string
		data []byte
	}{{"note.txt", smallData}, {"video.bin", bigData}} {
		fi, last := getFile(ctx, t, bob, g.ID, want.name, filepath.Join(tmp, "out-"+want.name), want.data)
		if fi.Mine || last.Done != int64(len(want.data)) || last.Total != int64(len(want.data)) {
			t.Fatalf("%s: info %+v, last progress %+v", want.name, fi, last)
		}
	}

	// Bob's own repo is separate from alice's; removing is his own business.
	if err := bob.RemoveFile(ctx, g.ID, "note.txt"); !errors.Is(err, ErrFileNotFound) {
		t.Fatalf("bob removing alice's file: %v, want ErrFileNotFound", err)
	}
	if err := alice.RemoveFile(ctx, g.ID, "note.txt"); err != nil {
		t.Fatal(err)
	}

	// Restart bob: he keeps the group and sees the current list.
	bob.Close()
	bob = startNode(t, bobDir)
	gs := bob.Groups()
	if len(gs) != 1 || gs[0].ID != g.ID {
		t.Fatalf("after restart bob has groups %+v", gs)
	}
	files, err = bob.ListFiles(ctx, g.ID)
	if err != nil || len(files) != 1 || files[0].Name != "video.bin" || !files[0].Local {
		t.Fatalf("after restart bob lists %+v, %v", files, err)
	}
}

func TestJoinBadInviteIsBadInput(t *testing.T) {
	b := startNode(t, t.TempDir())
	_, err := b.JoinGroup(context.Background(), "save+dweb:?v=1&dht=xyz")
	var bad *BadInputError
	var pe *uri.ParamError
	if !errors.As(err, &bad) || !errors.As(err, &pe) || pe.Param != "dht" {
		t.Fatalf("JoinGroup(bad) = %v; want BadInputError naming dht", err)
	}
	if _, err := b.ResolveGroup("nope"); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("ResolveGroup(nope) = %v", err)
	}
}
