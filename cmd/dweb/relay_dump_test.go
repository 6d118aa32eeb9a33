package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRelayDumper: one file per circuit and direction, holding exactly
// the bytes written; --relay-dump without --relay is a usage error.
func TestRelayDumper(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dump")
	d, err := newRelayDumper(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		circuit  uint64
		toTarget bool
		data     string
	}{{1, true, "hello"}, {1, false, "world"}, {2, true, ""}} {
		w := d.tap(c.circuit, c.toTarget)
		if w == nil {
			t.Fatalf("circuit %d: no writer", c.circuit)
		}
		if _, err := w.Write([]byte(c.data)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]string{
		"circuit-000001-to-target":    "hello",
		"circuit-000001-to-initiator": "world",
		"circuit-000002-to-target":    "",
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	// A file that exists already is not overwritten: that direction goes
	// untapped.
	if w := d.tap(1, true); w != nil {
		t.Error("a second writer for circuit 1 to target")
	}

	code, _, errOut := runCLI(t, "--data", t.TempDir(), "serve", "--relay-dump", dir)
	if code != 2 || !strings.Contains(errOut, "--relay-dump needs --relay") {
		t.Fatalf("serve --relay-dump without --relay: exit %d, %s", code, errOut)
	}
}
