package abi

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/core"
)

// TestHistoryThroughABI: two versions of a file added through the C ABI's
// entry points are listed by file.history; file.read with a version
// writes the old bytes; after file.delete, file.restore brings them back;
// bad versions get bad_input and not_found.
func TestHistoryThroughABI(t *testing.T) {
	tmp := t.TempDir()
	a := newNode(t, filepath.Join(tmp, "alice"))
	defer Close(a)
	var g struct{ Key string }
	mustCall(t, a, "group.create", `{"name":"family"}`, &g)
	versions := [][]byte{[]byte("first"), []byte("second")}
	for _, v := range versions {
		if res := AddBytes(a, []byte(`{"group":"family","name":"note.txt"}`), v); !bytes.HasPrefix(res, []byte(`{"result":`)) {
			t.Fatalf("AddBytes: %s", res)
		}
	}
	var h core.FileHistory
	mustCall(t, a, "file.history", `{"group":"family","name":"note.txt"}`, &h)
	if len(h.Versions) != 2 || h.Versions[1].Hash != blobsync.HashBytes(versions[0]) || !h.Mine {
		t.Fatalf("file.history: %+v", h)
	}
	out := filepath.Join(tmp, "old.txt")
	mustCall(t, a, "file.read", fmt.Sprintf(`{"group":"family","name":"note.txt","path":%q,"version":"1"}`, out), nil)
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, versions[0]) {
		t.Fatalf("file.read version 1: %q (%v)", got, err)
	}
	mustCall(t, a, "file.delete", `{"group":"family","name":"note.txt"}`, nil)
	wantCode(t, a, "file.restore", `{"group":"family","name":"note.txt","version":"0"}`, CodeBadInput) // the deletion
	wantCode(t, a, "file.restore", `{"group":"family","name":"note.txt","version":"7"}`, CodeNotFound)
	wantCode(t, a, "file.restore", `{"group":"family","name":"note.txt","version":"latest"}`, CodeBadInput)
	var fi core.FileInfo
	mustCall(t, a, "file.restore", `{"group":"family","name":"note.txt","version":"2"}`, &fi)
	if fi.Hash != blobsync.HashBytes(versions[0]) {
		t.Fatalf("file.restore: %+v", fi)
	}
	var files []core.FileInfo
	mustCall(t, a, "file.list", `{"group":"family"}`, &files)
	if len(files) != 1 || files[0].Hash != fi.Hash {
		t.Fatalf("file.list after the restore: %+v", files)
	}
	// node.gc right away keeps every blob: all within the 10-minute grace.
	var gc core.GCResult
	mustCall(t, a, "node.gc", "{}", &gc)
	if gc.Removed != 0 || gc.BlobsBefore == 0 || gc.BlobsAfter != gc.BlobsBefore {
		t.Fatalf("node.gc: %+v", gc)
	}
	wantCode(t, a, "node.gc", `{"all":true}`, CodeBadParams)
}

// TestReadNoStoreCopy: file.read with no_store_copy moves a large file's
// bytes to the path (export "move") and the node still reads it from
// there; no_store_copy without a path is refused.
func TestReadNoStoreCopy(t *testing.T) {
	tmp := t.TempDir()
	a := newNode(t, filepath.Join(tmp, "alice"))
	defer Close(a)
	mustCall(t, a, "group.create", `{"name":"family"}`, nil)
	data := bytes.Repeat([]byte("a film of the march "), 10000) // 200 KB: a blob with its own data file
	if res := AddBytes(a, []byte(`{"group":"family","name":"film.mp4"}`), data); !bytes.HasPrefix(res, []byte(`{"result":`)) {
		t.Fatalf("AddBytes: %s", res)
	}
	out := filepath.Join(tmp, "film.mp4")
	var fi core.FileInfo
	mustCall(t, a, "file.read", fmt.Sprintf(`{"group":"family","name":"film.mp4","path":%q,"no_store_copy":true}`, out), &fi)
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) || fi.Export != "move" {
		t.Fatalf("file.read no_store_copy: export %q, %d bytes (%v)", fi.Export, len(got), err)
	}
	again := filepath.Join(tmp, "again.mp4")
	mustCall(t, a, "file.read", fmt.Sprintf(`{"group":"family","name":"film.mp4","path":%q}`, again), &fi)
	if got, err := os.ReadFile(again); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file.read after the move: %d bytes (%v)", len(got), err)
	}
	wantCode(t, a, "file.history", `{"group":"family","name":"film.mp4","no_store_copy":true}`, CodeBadParams)
}

// TestAddNoStoreCopy: file.add with no_store_copy keeps a large file by
// reference to its path (store "reference", no data file in the store)
// and file.read reads it back from there; a plain file.add copies;
// no_store_copy with bytes instead of a path is refused.
func TestAddNoStoreCopy(t *testing.T) {
	tmp := t.TempDir()
	a := newNode(t, filepath.Join(tmp, "alice"))
	defer Close(a)
	mustCall(t, a, "group.create", `{"name":"family"}`, nil)
	data := bytes.Repeat([]byte("an archive of the march "), 20000) // 480 KB
	src := filepath.Join(tmp, "archive.tar")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var fi core.FileInfo
	mustCall(t, a, "file.add", fmt.Sprintf(`{"group":"family","path":%q,"no_store_copy":true}`, src), &fi)
	if fi.Store != "reference" {
		t.Fatalf("file.add no_store_copy: store %q, want reference", fi.Store)
	}
	if _, err := os.Stat(filepath.Join(tmp, "alice", "blobs", fi.Hash.String()+".data")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the store has a data file for it (%v)", err)
	}
	out := filepath.Join(tmp, "out.tar")
	mustCall(t, a, "file.read", fmt.Sprintf(`{"group":"family","name":"archive.tar","path":%q}`, out), &fi)
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file.read of the reference: %d bytes (%v)", len(got), err)
	}
	plain := filepath.Join(tmp, "plain.tar")
	if err := os.WriteFile(plain, data[1:], 0o600); err != nil {
		t.Fatal(err)
	}
	mustCall(t, a, "file.add", fmt.Sprintf(`{"group":"family","path":%q}`, plain), &fi)
	if fi.Store != "copy" {
		t.Fatalf("plain file.add: store %q, want copy", fi.Store)
	}
	wantCode(t, a, "file.add", `{"group":"family","name":"x.bin","data":"AAAA","no_store_copy":true}`, CodeBadParams)
}
