package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
	"github.com/dwebkit/dweb/internal/testnet"
)

// TestFileAddNoStoreCopy drives `dweb file add --no-store-copy` against
// two real daemons: A's answer says the file is kept by reference, A's
// blob store does not grow by the file, B gets it byte-identical from
// A's file; the text output names the path and "reference"; a plain add
// (a request without no_store_copy, as older clients send) copies; a
// directory is refused with a clear error.
func TestFileAddNoStoreCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dataA, readyA := startDaemon(t, ctx)
	dataB, _ := startDaemon(t, ctx, readyA.Contact)
	cli := func(data string, args ...string) string { return jsonCLI(t, data, args...) }

	var g core.GroupInfo
	if err := json.Unmarshal([]byte(cli(dataA, "group", "create", "arch")), &g); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	content := make([]byte, 3<<20+321)
	rand.Read(content)
	src := filepath.Join(dir, "archive.tar")
	if err := os.WriteFile(src, content, 0o600); err != nil {
		t.Fatal(err)
	}
	before := testnet.DirBytes(t, filepath.Join(dataA, "blobs"))
	var added []core.FileInfo
	if err := json.Unmarshal([]byte(cli(dataA, "file", "add", "--no-store-copy", "arch", src)), &added); err != nil {
		t.Fatal(err)
	}
	if len(added) != 1 || added[0].Store != "reference" || added[0].Size != int64(len(content)) {
		t.Fatalf("file add --no-store-copy: %+v, want archive.tar kept by reference", added)
	}
	if grew := testnet.DirBytes(t, filepath.Join(dataA, "blobs")) - before; grew > int64(len(content))/10 {
		t.Fatalf("A's blob store grew by %d bytes for a %d-byte file added by reference", grew, len(content))
	}
	if _, err := os.Stat(filepath.Join(dataA, "blobs", added[0].Hash.String()+".data")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("A's store has a data file for the file (%v)", err)
	}

	var inv httpapi.InviteInfo
	if err := json.Unmarshal([]byte(cli(dataA, "group", "invite", g.ID.String())), &inv); err != nil {
		t.Fatal(err)
	}
	cli(dataB, "group", "join", inv.URI)
	dst := filepath.Join(t.TempDir(), "got.tar")
	for deadline := time.Now().Add(20 * time.Second); ; {
		code, _, e := runCLI(t, "--data", dataB, "file", "get", "arch", "archive.tar", "-o", dst)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's get: exit %d: %s", code, e)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("B got %d bytes (%v), want the %d bytes A added", len(got), err, len(content))
	}

	// Text output: hash, path, how it was kept.
	other := filepath.Join(dir, "other.bin")
	if err := os.WriteFile(other, content[:2<<20], 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, e := runCLI(t, "--data", dataA, "file", "add", "arch", other, "--no-store-copy")
	if code != 0 || !strings.Contains(out, other+" (2097152 bytes, reference)") {
		t.Fatalf("text output: exit %d %q %q", code, out, e)
	}

	// A plain add copies.
	plain := filepath.Join(dir, "plain.bin")
	if err := os.WriteFile(plain, content[1:], 0o600); err != nil {
		t.Fatal(err)
	}
	added = nil
	if err := json.Unmarshal([]byte(cli(dataA, "file", "add", "arch", plain)), &added); err != nil || len(added) != 1 || added[0].Store != "copy" {
		t.Fatalf("plain file add: %+v, %v; want a copy", added, err)
	}

	if code, _, e := runCLI(t, "--data", dataA, "file", "add", "--no-store-copy", "arch", dir); code != exitError || !strings.Contains(e, "not a regular file") {
		t.Fatalf("add a directory: exit %d %q", code, e)
	}
}
