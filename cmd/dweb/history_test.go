package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
)

// TestFileHistoryCLI drives the history through the CLI and two real
// daemons: A adds two versions of a file; B lists its history and gets the
// old version by index and by hash prefix, byte-identical (`dweb hash`);
// A deletes it, its history shows the deletion, and `file restore` brings
// the old bytes back.
func TestFileHistoryCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dataA, _ := startDaemon(t, ctx)
	dataB, _ := startDaemon(t, ctx)
	cli := func(data string, args ...string) string { return jsonCLI(t, data, args...) }
	var g core.GroupInfo
	if err := json.Unmarshal([]byte(cli(dataA, "group", "create", "hist")), &g); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "notes.txt")
	versions := [][]byte{[]byte("the first account"), []byte("the second account, corrected")}
	for _, v := range versions {
		if err := os.WriteFile(src, v, 0o600); err != nil {
			t.Fatal(err)
		}
		cli(dataA, "file", "add", "hist", src)
	}
	var inv httpapi.InviteInfo
	if err := json.Unmarshal([]byte(cli(dataA, "group", "invite", "hist")), &inv); err != nil {
		t.Fatal(err)
	}
	cli(dataB, "group", "join", inv.URI)

	var h core.FileHistory
	if err := json.Unmarshal([]byte(cli(dataB, "file", "history", "hist", "notes.txt")), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Versions) != 2 || h.Versions[1].Hash != blobsync.HashBytes(versions[0]) || h.Mine {
		t.Fatalf("B's history %+v", h)
	}
	dir := t.TempDir()
	for _, ref := range []string{"1", h.Versions[1].Hash.String()[:8]} {
		dst := filepath.Join(dir, "old-"+ref)
		cli(dataB, "file", "get", "hist", "notes.txt", "--version", ref, "-o", dst)
		if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, versions[0]) {
			t.Fatalf("--version %s got %q (%v)", ref, got, err)
		}
		if sum := cli(dataB, "hash", dst); !strings.Contains(sum, h.Versions[1].Hash.String()) {
			t.Fatalf("dweb hash %s, the version's %s", sum, h.Versions[1].Hash)
		}
	}

	cli(dataA, "file", "rm", "hist", "notes.txt")
	if code, out, e := runCLI(t, "--data", dataA, "file", "history", "hist", "notes.txt"); code != 0 ||
		!strings.Contains(out, "VERSION") || !strings.Contains(out, "deleted") || strings.Count(out, "\n") != 5 {
		t.Fatalf("history table after rm: exit %d %q %q", code, out, e)
	}
	var fi core.FileInfo
	if err := json.Unmarshal([]byte(cli(dataA, "file", "restore", "hist", "notes.txt", "--version", "2")), &fi); err != nil ||
		fi.Hash != blobsync.HashBytes(versions[0]) {
		t.Fatalf("restore: %+v (%v)", fi, err)
	}
	var files []core.FileInfo
	if err := json.Unmarshal([]byte(cli(dataA, "file", "list", "hist")), &files); err != nil || len(files) != 1 || files[0].Hash != fi.Hash {
		t.Fatalf("A lists %+v after the restore (%v)", files, err)
	}

	// A GC right away removes nothing: every blob is within the grace
	// (core.Options.GCGrace, 10 minutes), and the history keeps them all.
	var res core.GCResult
	if err := json.Unmarshal([]byte(cli(dataA, "node", "gc")), &res); err != nil || res.Removed != 0 || res.BlobsBefore == 0 || res.BlobsAfter != res.BlobsBefore {
		t.Fatalf("node gc: %+v (%v)", res, err)
	}

	// Errors through the whole stack, and usage errors before it.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"file", "get", "hist", "notes.txt", "--version", "99", "-o", filepath.Join(dir, "x")}, exitError, "version not found"},
		{[]string{"file", "history", "hist", "nothing.txt"}, exitError, "not found"},
		{[]string{"file", "restore", "hist", "notes.txt", "--version", "0"}, 0, "restored"}, // the current one: nothing changes
		{[]string{"file", "restore", "hist", "notes.txt"}, exitUsage, "--version"},
		{[]string{"file", "get", "hist", "notes.txt", "--version", "v2"}, exitUsage, "--version"},
		{[]string{"file", "history", "hist", "notes.txt", "--repo", "nope"}, exitUsage, "--repo"},
	} {
		code, out, e := runCLI(t, append([]string{"--data", dataA}, tc.args...)...)
		if code != tc.code || !strings.Contains(out+e, tc.want) {
			t.Fatalf("dweb %v: exit %d %q %q, want exit %d mentioning %q", tc.args, code, out, e, tc.code, tc.want)
		}
	}
}
