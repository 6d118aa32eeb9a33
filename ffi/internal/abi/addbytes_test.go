package abi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/zeebo/blake3"
)

// TestAddBytesOnce adds a 3 MiB buffer through dweb_add_file_bytes' Go
// half: the file is named by the buffer's BLAKE3 hash, reads back whole,
// and no temporary file or directory was made for it (the bytes went into
// the store once).
func TestAddBytesOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "alice")
	a := newNode(t, dir)
	defer Close(a)
	mustCall(t, a, "group.create", `{"name":"family"}`, nil)
	data := make([]byte, 3<<20+333)
	for i := range data {
		data[i] = byte(i * 13 >> 3)
	}
	raw := AddBytes(a, []byte(`{"group":"family","name":"scan.pdf"}`), data)
	var r struct {
		Result struct {
			Hash string `json:"hash"`
			Size int64  `json:"size"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("AddBytes: %s", raw)
	}
	want := blake3.Sum256(data)
	if r.Result.Hash != hex.EncodeToString(want[:]) || r.Result.Size != int64(len(data)) {
		t.Fatalf("AddBytes: %s, want hash %x", raw, want)
	}
	// The bytes went into the store once: no spool file or directory.
	if _, err := os.Stat(filepath.Join(dir, "ffi-tmp")); !os.IsNotExist(err) {
		t.Fatalf("AddBytes spooled through %s (%v)", filepath.Join(dir, "ffi-tmp"), err)
	}
	buf := make([]byte, len(data))
	if n, err := ReadInto(a, []byte(`{"group":"family","name":"scan.pdf"}`), buf); err != nil || n != int64(len(data)) || !bytes.Equal(buf, data) {
		t.Fatalf("ReadInto = %d, %v (bytes equal: %v)", n, err, bytes.Equal(buf, data))
	}
}
