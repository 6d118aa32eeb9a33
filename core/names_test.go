package core

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestDeviceName checks the name a node's repos get: "dweb device" until
// one is set, the one set afterwards (saved in the node's store, so a
// later run without it keeps it), never a bad one.
func TestDeviceName(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	dir := filepath.Join(t.TempDir(), "n")
	open := func(device string) *Backend {
		t.Helper()
		b, err := New(Options{DataDir: dir, DeviceName: device, Logger: testLogger(t, "n")})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(ctx); err != nil {
			b.Close()
			t.Fatal(err)
		}
		closeAtEnd(t, b)
		return b
	}
	ownName := func(b *Backend, g GroupInfo) string {
		t.Helper()
		ri, err := b.OwnRepo(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		return ri.Name
	}

	b := open("")
	if b.DeviceName() != DefaultDeviceName {
		t.Fatalf("fresh node's device name %q, want %q", b.DeviceName(), DefaultDeviceName)
	}
	g1, err := b.CreateGroup(ctx, "first")
	if err != nil {
		t.Fatal(err)
	}
	if n := ownName(b, g1); n != DefaultDeviceName {
		t.Fatalf("repo of a node with no device name is %q, want %q", n, DefaultDeviceName)
	}
	b.Close()

	b = open("Ana's phone")
	b.Close()
	for _, bad := range []string{"a/b", "nul\x00", string([]byte{0xff}), ".."} {
		_, err := New(Options{DataDir: dir, DeviceName: bad})
		var bi *BadInputError
		if !errors.As(err, &bi) {
			t.Fatalf("New with device name %q: %v, want a BadInputError", bad, err)
		}
	}
	b = open("")
	if b.DeviceName() != "Ana's phone" {
		t.Fatalf("device name after restart %q, want the saved %q", b.DeviceName(), "Ana's phone")
	}
	g2, err := b.CreateGroup(ctx, "second")
	if err != nil {
		t.Fatal(err)
	}
	// The device name names new repos; a repo made before keeps its name.
	if n1, n2 := ownName(b, g1), ownName(b, g2); n1 != DefaultDeviceName || n2 != "Ana's phone" {
		t.Fatalf("repos named %q and %q, want %q and %q", n1, n2, DefaultDeviceName, "Ana's phone")
	}
}

// TestRepoNamesChosenByMembers runs the Save app's naming with real nodes:
// the owner names its repo at create, two members join under one name,
// "phone", and every node lists both with their own keys; a rename shows
// on the other nodes; a bad name is a BadInputError and changes nothing.
func TestRepoNamesChosenByMembers(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	nodes := startNodes(t, t.TempDir(), "owner", "bob", "carol", "dave")
	owner, bob, carol, dave := nodes[0], nodes[1], nodes[2], nodes[3]

	g, err := owner.CreateGroupWith(ctx, "newsroom", GroupOptions{RepoName: "desk"})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := owner.Invite(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := bob.JoinGroupWith(ctx, inv, GroupOptions{RepoName: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	gc, err := carol.JoinGroupWith(ctx, inv, GroupOptions{RepoName: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	if gb.Repo == gc.Repo || gb.ID != g.ID || gc.ID != g.ID {
		t.Fatalf("bob joined %+v, carol %+v", gb, gc)
	}
	want := map[string]string{g.Repo.String(): "desk", gb.Repo.String(): "phone", gc.Repo.String(): "phone"}
	// names lists group g as b sees it: repo key -> name; b's own repo
	// must be the one it can write.
	names := func(b *Backend) map[string]string {
		t.Helper()
		rs, err := b.Repos(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		gs, err := b.group(g.ID)
		if err != nil {
			t.Fatal(err)
		}
		own := gs.info.Repo
		out := map[string]string{}
		for _, r := range rs {
			out[r.Key.String()] = r.Name
			if r.CanWrite != (r.Key == own) {
				t.Fatalf("%s lists %+v, own repo %s", b.DeviceName(), r, own)
			}
		}
		return out
	}
	same := func(a, b map[string]string) bool {
		if len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if b[k] != v {
				return false
			}
		}
		return true
	}
	for _, b := range []*Backend{owner, bob, carol} {
		var got map[string]string
		waitFor(t, b.DeviceName()+" listing every repo", func() bool { got = names(b); return same(got, want) })
	}

	// A bad name: nothing joined, nothing created, nothing renamed.
	for _, bad := range []string{"a/b", "nul\x00", string([]byte{'x', 0xff}), "..", string(make([]byte, 256))} {
		var bi *BadInputError
		if _, err := dave.JoinGroupWith(ctx, inv, GroupOptions{RepoName: bad}); !errors.As(err, &bi) {
			t.Fatalf("join named %q: %v, want a BadInputError", bad, err)
		}
		if _, err := dave.CreateGroupWith(ctx, "other", GroupOptions{RepoName: bad}); !errors.As(err, &bi) {
			t.Fatalf("create named %q: %v, want a BadInputError", bad, err)
		}
		if _, err := bob.SetRepoName(ctx, g.ID, bad); !errors.As(err, &bi) {
			t.Fatalf("rename to %q: %v, want a BadInputError", bad, err)
		}
	}
	if gs := dave.Groups(); len(gs) != 0 {
		t.Fatalf("dave is in %+v after joins with bad names", gs)
	}
	if got := names(bob); !same(got, want) {
		t.Fatalf("after bad renames bob lists %v, want %v", got, want)
	}

	// A rename shows on the other nodes.
	ri, err := bob.SetRepoName(ctx, g.ID, "bob's phone")
	if err != nil || ri.Name != "bob's phone" || ri.Key != gb.Repo || !ri.CanWrite {
		t.Fatalf("rename: %+v, %v", ri, err)
	}
	want[gb.Repo.String()] = "bob's phone"
	for _, b := range []*Backend{owner, carol} {
		waitFor(t, b.DeviceName()+" seeing bob's new name", func() bool { return same(names(b), want) })
	}

	// Joining again with a name renames; the group is the same.
	again, err := carol.JoinGroupWith(ctx, inv, GroupOptions{RepoName: "carol"})
	if err != nil || again != gc {
		t.Fatalf("join again: %+v, %v, want %+v", again, err, gc)
	}
	want[gc.Repo.String()] = "carol"
	waitFor(t, "bob seeing carol's new name", func() bool { return same(names(bob), want) })
}
