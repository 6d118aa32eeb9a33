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
