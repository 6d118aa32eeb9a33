package blobsync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/testnet"
	"github.com/zeebo/blake3"
)

// moveStore is a store whose Pebble database can be closed and opened
// again, as after a crash of the process.
type moveStore struct {
	*Store
	db   *store.DB
	root string
}

func newMoveStore(t *testing.T) *moveStore {
	t.Helper()
	m := &moveStore{root: t.TempDir()}
	m.reopen(t)
	t.Cleanup(func() { m.db.Close() })
	return m
}

// reopen closes the database (if open) and opens it and the store again.
func (m *moveStore) reopen(t *testing.T) {
	t.Helper()
	if m.db != nil {
		m.db.Close()
	}
	db, err := store.Open(filepath.Join(m.root, "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.db = db
	if m.Store, err = OpenStore(db, filepath.Join(m.root, "blobs"), StoreOptions{}); err != nil {
		t.Fatal(err)
	}
}

// checkOneCopy checks that dst holds b, is the only name of its inode,
// that the store no longer has its own data file and that its entry for
// h is a reference to dst, served with the right bytes.
func checkOneCopy(t *testing.T, s *Store, h Hash, b []byte, dst string) {
	t.Helper()
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if Hash(blake3.Sum256(got)) != h || !bytes.Equal(got, b) {
		t.Fatalf("%s: wrong bytes", dst)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 1 {
		t.Fatalf("%s has %d links, want 1", dst, n)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("%s mode %v, want 0644", dst, fi.Mode().Perm())
	}
	if _, err := os.Stat(s.dataPath(h)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("store data file still there: %v", err)
	}
	e, err := s.getEntry(h)
	if err != nil {
		t.Fatal(err)
	}
	if e.RefPath != dst {
		t.Fatalf("entry RefPath %q, want %q", e.RefPath, dst)
	}
	checkServes(t, s, h, b)
	checkNoLeftovers(t, s, dst)
}

// checkServes checks that Open gives b for h.
func checkServes(t *testing.T, s *Store, h Hash, b []byte) {
	t.Helper()
	r, _, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("Open(%s): %d bytes, %v", h, len(got), err)
	}
}

// checkNoLeftovers checks that no temp file is left beside dst and no
// move intent in Pebble.
func checkNoLeftovers(t *testing.T, s *Store, dst string) {
	t.Helper()
	des, err := os.ReadDir(filepath.Dir(dst))
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if strings.HasSuffix(de.Name(), ".part") {
			t.Errorf("temp file %s left beside %s", de.Name(), dst)
		}
	}
	s.db.Scan([]byte(store.PrefixMove), func(k, _ []byte) error {
		t.Errorf("move intent %x left", k)
		return nil
	})
}

func TestExportMove(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	b := content(3<<20+5, 21)
	h, err := s.AddBytes(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out.bin")
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := s.ExportMove(ctx, h, dst)
	if err != nil {
		t.Fatal(err)
	}
	if m != ExportMoved || m.String() != "move" {
		t.Fatalf("method %v, want move", m)
	}
	checkOneCopy(t, s, h, b, dst)
	if dropped, err := s.DropBrokenRef(h); dropped || err != nil {
		t.Fatalf("DropBrokenRef of an intact reference: %v, %v", dropped, err)
	}
	u, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.Blobs != 0 || u.RefBlobs != 1 {
		t.Errorf("usage %+v: want the blob counted as a reference", u)
	}

	// A second get of a moved blob copies from the reference.
	dst2 := filepath.Join(filepath.Dir(dst), "again.bin")
	if m, err := s.ExportMove(ctx, h, dst2); err != nil || m == ExportMoved {
		t.Fatalf("second move: %v, %v (want a copy)", m, err)
	}

	// GC and Delete never touch the user's file.
	if err := s.Delete(h); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("Delete changed %s: %v", dst, err)
	}
}

// TestExportMoveEdited: once the user's file changes, the store refuses
// to serve the blob as verified, also when the edit comes while the move
// still runs.
func TestExportMoveEdited(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	b := content(1<<20+9, 22)
	h, err := s.AddBytes(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out.bin")
	var during error
	s.moveHook = func(step moveStep) error {
		if step == moveRenamed {
			testnet.EditFile(t, dst, 100) // dst and the store's data file are one inode now
			_, _, during = s.Open(h)
		}
		return nil
	}
	if _, err := s.ExportMove(ctx, h, dst); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{"during the move": during, "after": openErr(s, h)} {
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "changed since") {
			t.Errorf("Open %s the edit: %v, want ErrCorrupt (changed since)", name, err)
		}
	}
	if err := s.Export(ctx, h, filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Export after the edit: %v, want ErrCorrupt", err)
	}
	// The broken reference can be dropped, the user's file stays.
	if dropped, err := s.DropBrokenRef(h); !dropped || err != nil {
		t.Fatalf("DropBrokenRef: %v, %v", dropped, err)
	}
	if has(t, s, h) {
		t.Fatal("the blob is still held")
	}
	if _, err := os.Stat(dst); err != nil {
		t.Fatalf("DropBrokenRef touched the user's file: %v", err)
	}
}

func openErr(s *Store, h Hash) error {
	r, _, err := s.Open(h)
	if err == nil {
		r.Close()
	}
	return err
}

// TestExportMoveFallback: inline and reference-mode blobs, a destination
// in the store's own directory and one on another file system are
// copied; the store keeps what it had.
func TestExportMoveFallback(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	small := content(1000, 23)
	hs, err := s.AddBytes(ctx, small)
	if err != nil {
		t.Fatal(err)
	}
	ref := content(2<<20, 24)
	refPath := writeTemp(t, ref)
	hr, _, err := s.AddFileRef(ctx, refPath)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, c := range []struct {
		name string
		h    Hash
		b    []byte
	}{{"inline", hs, small}, {"reference", hr, ref}} {
		dst := filepath.Join(out, c.name)
		m, err := s.ExportMove(ctx, c.h, dst)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if m == ExportMoved {
			t.Errorf("%s: moved, want a copy", c.name)
		}
		if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, c.b) {
			t.Fatalf("%s: wrong copy (%v)", c.name, err)
		}
		checkServes(t, s, c.h, c.b)
	}
	// Into the store's own directory: copied, never moved onto itself.
	big := content(1<<20+5, 27)
	hb, err := s.AddBytes(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.ExportMove(ctx, hb, s.dataPath(hb)); err != nil || m == ExportMoved {
		t.Fatalf("move onto the store's own file: %v, %v (want a copy)", m, err)
	}
	checkServes(t, s, hb, big)
	if e, _ := s.getEntry(hr); e.RefPath != refPath {
		t.Errorf("reference entry now names %q, want %q", e.RefPath, refPath)
	}

	// Another file system: /dev/shm (tmpfs) where it exists.
	shm, err := os.MkdirTemp("/dev/shm", "dweb-move-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	defer os.RemoveAll(shm)
	var a, c syscall.Stat_t
	if syscall.Stat(shm, &a) != nil || syscall.Stat(s.Dir(), &c) != nil || a.Dev == c.Dev {
		t.Skip("/dev/shm is on the store's file system")
	}
	b := content(2<<20+1, 25)
	h, err := s.AddBytes(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(shm, "out.bin")
	m, err := s.ExportMove(ctx, h, dst)
	if err != nil {
		t.Fatal(err)
	}
	if m == ExportMoved {
		t.Fatalf("moved across file systems")
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("wrong copy across file systems (%v)", err)
	}
	if e, err := s.getEntry(h); err != nil || e.RefPath != "" {
		t.Fatalf("entry after a copy: %+v, %v", e, err)
	}
	if _, err := os.Stat(s.dataPath(h)); err != nil {
		t.Fatalf("store data file gone after a copy: %v", err)
	}
	checkNoLeftovers(t, s, dst)
}

// TestExportMoveCrash stops a move after each of its steps, as a crash
// would, then opens the store again: before the rename the store keeps
// its copy and dst is untouched; from the rename on the move is finished.
// Either way the bytes are served, the store's data file is never left
// as a second name of dst, and no temp file or intent remains.
func TestExportMoveCrash(t *testing.T) {
	errCrash := errors.New("crash")
	for _, step := range []moveStep{moveIntentWritten, moveLinked, moveRenamed, moveEntryWritten, moveUnlinked} {
		t.Run(string(step), func(t *testing.T) {
			ctx := context.Background()
			m := newMoveStore(t)
			b := content(2<<20+3, 26)
			h, err := m.AddBytes(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "out.bin")
			m.moveHook = func(s moveStep) error {
				if s == step {
					return errCrash
				}
				return nil
			}
			if _, err := m.ExportMove(ctx, h, dst); !errors.Is(err, errCrash) {
				t.Fatalf("move: %v, want the crash", err)
			}
			m.reopen(t)
			switch step {
			case moveIntentWritten, moveLinked:
				if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("dst exists after a crash before the rename: %v", err)
				}
				fi, err := os.Stat(m.dataPath(h))
				if err != nil {
					t.Fatal(err)
				}
				if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 1 {
					t.Fatalf("store data file has %d links, want 1", n)
				}
				if e, err := m.getEntry(h); err != nil || e.RefPath != "" {
					t.Fatalf("entry %+v, %v: want the store's own copy", e, err)
				}
				checkServes(t, m.Store, h, b)
				checkNoLeftovers(t, m.Store, dst)
				// And the move works afterwards.
				m.moveHook = nil
				if _, err := m.ExportMove(ctx, h, dst); err != nil {
					t.Fatal(err)
				}
			}
			checkOneCopy(t, m.Store, h, b, dst)
		})
	}
}

// TestExportMoveBadIntentOpens: an intent that cannot be decoded does not
// keep the store from opening (a node must start); the blob stays served
// from the store's own copy, and the intent is left for a later look.
func TestExportMoveBadIntentOpens(t *testing.T) {
	ctx := context.Background()
	m := newMoveStore(t)
	b := content(2<<20+5, 27)
	h, err := m.AddBytes(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.db.Set(moveKey(h), []byte{0xff, 0x00, 0x13}, true); err != nil {
		t.Fatal(err)
	}
	m.reopen(t)
	checkServes(t, m.Store, h, b)
	if v, err := m.db.Get(moveKey(h)); err != nil || v == nil {
		t.Fatalf("the undecodable intent: %x, %v; want it left in place", v, err)
	}
}
