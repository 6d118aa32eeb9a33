package blobsync

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/dwebkit/dweb/internal/store"
)

// testSizes cover: empty, one byte, one chunk, one full group, one byte
// past a group (first parent), and a large uneven tree.
var testSizes = []int{0, 1, 1024, 16384, 16385, 1<<20 + 3}

// newTestStore opens a Store over a real Pebble database in a temp dir.
func newTestStore(t testing.TB) *Store {
	t.Helper()
	return newStoreIn(t, t.TempDir())
}

// newStoreIn opens a Store over a real Pebble database in a new
// directory under dir.
func newStoreIn(t testing.TB, dir string) *Store {
	t.Helper()
	dir, err := os.MkdirTemp(dir, "store-")
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := OpenStore(db, filepath.Join(dir, "blobs"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// content returns n deterministic pseudo-random bytes.
func content(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func writeTemp(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// dirFiles lists the names in the store's blob dir.
func dirFiles(t testing.TB, s *Store) []string {
	t.Helper()
	des, err := os.ReadDir(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// servePipe starts srv.Serve on one end of a net.Pipe and returns the other
// end, wrapped by wrap if not nil. Serve's result arrives on the channel.
func servePipe(t testing.TB, srv *Store, allow func(Hash) bool) (net.Conn, <-chan error) {
	t.Helper()
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, a, allow) }()
	t.Cleanup(func() { cancel(); a.Close(); b.Close() })
	return b, done
}

// outboardOf returns the outboard of complete blob h as a file would hold
// it (size header, then parents), from its entry when it is inline, else
// from its .obao file.
func outboardOf(s *Store, h Hash) ([]byte, error) {
	e, err := s.getEntry(h)
	if err != nil {
		return nil, err
	}
	if len(e.Outboard) == 0 {
		return os.ReadFile(s.obaoPath(h))
	}
	if _, err := os.Stat(s.obaoPath(h)); !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s keeps its outboard inline but has an .obao file (%v)", h, err)
	}
	return append(binary.LittleEndian.AppendUint64(nil, uint64(e.Size)), e.Outboard...), nil
}

// has is s.Has(h) for assertions: an error fails the test, so false means
// the store answered "not held", not that it could not answer.
func has(t testing.TB, s *Store, h Hash) bool {
	t.Helper()
	ok, err := s.Has(h)
	if err != nil {
		t.Fatalf("Has(%s): %v", h, err)
	}
	return ok
}

// entryOf is s.rawEntry(h) for assertions; an error fails the test.
func entryOf(t testing.TB, s *Store, h Hash) (entry, bool) {
	t.Helper()
	e, found, err := s.rawEntry(h)
	if err != nil {
		t.Fatalf("entry of %s: %v", h, err)
	}
	return e, found
}

// rangesOf is s.loadRanges(h) for assertions; an error fails the test.
func rangesOf(t testing.TB, s *Store, h Hash) RangeSet {
	t.Helper()
	rs, err := s.loadRanges(h)
	if err != nil {
		t.Fatalf("ranges of %s: %v", h, err)
	}
	return rs
}
