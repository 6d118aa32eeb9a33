package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dwebkit/dweb/internal/key"
)

func TestSetGetScanReopen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	k1 := Key(PrefixRecord, []byte{1}, []byte("/d"))
	if err := db.Set(k1, []byte("one"), true); err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	b.Set(Key(PrefixRecord, []byte{2}), []byte("two"))
	b.Set(Key(PrefixBlob, []byte{2}), []byte("blob"))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Scan([]byte(PrefixRecord), func(k, v []byte) error { n++; return nil }); err != nil || n != 2 {
		t.Fatalf("scan rec/: n=%d err=%v, want 2", n, err)
	}
	if _, err := db.Get([]byte("nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get absent: %v", err)
	}
	db.Close()

	db, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, err := db.Get(k1)
	if err != nil || string(v) != "one" {
		t.Fatalf("after reopen: %q %v", v, err)
	}
}

func TestPrefixEnd(t *testing.T) {
	if got := prefixEnd([]byte{1, 0xff}); string(got) != string([]byte{2}) {
		t.Fatalf("prefixEnd = %v", got)
	}
	if got := prefixEnd([]byte{0xff, 0xff}); got != nil {
		t.Fatalf("prefixEnd all-ff = %v", got)
	}
}

func TestProtected(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dk, err := LoadOrCreateDeviceKey(filepath.Join(dir, "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	dk2, err := LoadOrCreateDeviceKey(filepath.Join(dir, "device.key"))
	if err != nil || dk2 != dk {
		t.Fatalf("device key not stable: %v", err)
	}
	p := db.Protected(dk)
	if err := p.Put("node", []byte("seed")); err != nil {
		t.Fatal(err)
	}
	got, err := p.Get("node")
	if err != nil || string(got) != "seed" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	raw, err := db.Get(Key(PrefixProt, []byte("node")))
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) == "seed" || len(raw) < 24+16+4 {
		t.Fatal("protected value stored in the clear")
	}
	if _, err := db.Protected(key.NewSecret()).Get("node"); !errors.Is(err, ErrProtectedCorrupt) {
		t.Fatalf("wrong device key: err = %v", err)
	}
	// A value moved to another name does not open.
	db.Set(Key(PrefixProt, []byte("other")), raw, true)
	if _, err := p.Get("other"); !errors.Is(err, ErrProtectedCorrupt) {
		t.Fatalf("moved value: err = %v", err)
	}
	os.Chmod(filepath.Join(dir, "device.key"), 0o644)
	if _, err := LoadOrCreateDeviceKey(filepath.Join(dir, "device.key")); err == nil {
		t.Fatal("world-readable device key accepted")
	}
}

// TestMemory: an in-memory store works like a disk one, writes nothing to
// its directory, and starts empty each time.
func TestMemory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mem")
	db, err := Open(dir, Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	k := Key(PrefixRecord, []byte{1})
	if err := db.Set(k, []byte("one"), true); err != nil {
		t.Fatal(err)
	}
	if v, err := db.Get(k); err != nil || string(v) != "one" {
		t.Fatalf("get: %q, %v", v, err)
	}
	if db.Dir() != dir {
		t.Fatalf("Dir() = %q, want %q", db.Dir(), dir)
	}
	db.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the in-memory store touched its directory: %v", err)
	}
	db, err = Open(dir, Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Get(k); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a new in-memory store holds %v", err)
	}
}
