package blobsync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// probeReflink reports whether dir's file system clones files (FICLONE),
// tried here apart from Export.
func probeReflink(t *testing.T, dir string) bool {
	t.Helper()
	a, b := filepath.Join(dir, "probe-a"), filepath.Join(dir, "probe-b")
	defer os.Remove(a)
	defer os.Remove(b)
	if err := os.WriteFile(a, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Create(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	return unix.IoctlFileClone(int(fb.Fd()), int(fa.Fd())) == nil
}

// exportCase is one blob held by the store: large (own data file),
// reference mode (the app's file) and inline.
type exportCase struct {
	name string
	h    Hash
	b    []byte
}

func exportCases(t *testing.T, s *Store) []exportCase {
	t.Helper()
	ctx := context.Background()
	large := content(3<<20+5, 11)
	hl, err := s.AddBytes(ctx, large)
	if err != nil {
		t.Fatal(err)
	}
	ref := content(2<<20+7, 12)
	hr, _, err := s.AddFileRef(ctx, writeTemp(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	small := content(5, 13)
	hs, err := s.AddBytes(ctx, small)
	if err != nil {
		t.Fatal(err)
	}
	return []exportCase{{"large", hl, large}, {"reference", hr, ref}, {"inline", hs, small}}
}

// checkExported fails unless dst holds exactly want with mode 0644 and
// its directory holds nothing but the names in keep.
func checkExported(t *testing.T, dst string, want []byte, keep ...string) {
	t.Helper()
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the blob's %d (%v)", dst, len(got), len(want), err)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%s: mode %v, want 0644 (%v)", dst, fi.Mode(), err)
	}
	checkDir(t, filepath.Dir(dst), keep...)
}

// checkDir fails unless dir holds exactly the names in want (no temp file
// left behind).
func checkDir(t *testing.T, dir string, want ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s holds %q, want %q", dir, got, want)
	}
}

// TestExportMethods: each method writes byte-identical files, and Export
// takes the fastest path the file system allows: the reflink where
// FICLONE works (probed apart from Export), else copy_file_range.
func TestExportMethods(t *testing.T) {
	s := newTestStore(t)
	cases := exportCases(t, s)
	out := t.TempDir()
	canClone := probeReflink(t, out)
	if canClone {
		t.Logf("the file system of %s reflinks: auto must clone", out)
	} else {
		t.Logf("the file system of %s does not reflink (FICLONE refused): auto must fall back to copy_file_range", out)
	}
	ctx := context.Background()
	for _, from := range []ExportMethod{ExportAuto, ExportCopyRange, ExportCopy} {
		for _, c := range cases {
			dst := filepath.Join(out, "f")
			used, err := s.export(ctx, c.h, dst, from)
			if err != nil {
				t.Fatalf("%v, %s blob: %v", from, c.name, err)
			}
			checkExported(t, dst, c.b, "f")
			want := from
			switch {
			case c.name == "inline":
				want = ExportCopy // no data file to clone or copy from
			case from == ExportAuto && canClone:
				want = exportReflink
			case from == ExportAuto:
				want = ExportCopyRange
			}
			if used != want {
				t.Errorf("%v, %s blob: written by %v, want %v", from, c.name, used, want)
			}
			if err := os.Remove(dst); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestExportOtherFileSystem: to a directory on another file system (tmpfs
// at /dev/shm) neither a reflink nor (since Linux 5.19) copy_file_range
// works between most file systems; Export falls back and the bytes are
// still right.
func TestExportOtherFileSystem(t *testing.T) {
	s := newTestStore(t)
	out, err := os.MkdirTemp("/dev/shm", "dweb-export-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(out) })
	var a, b syscall.Stat_t
	if syscall.Stat(out, &a) != nil || syscall.Stat(s.Dir(), &b) != nil || a.Dev == b.Dev {
		t.Skip("/dev/shm is on the store's file system")
	}
	c := exportCases(t, s)[0]
	dst := filepath.Join(out, "f")
	used, err := s.export(context.Background(), c.h, dst, ExportAuto)
	if err != nil {
		t.Fatal(err)
	}
	checkExported(t, dst, c.b, "f")
	if used == exportReflink {
		t.Errorf("reflink reported across file systems")
	}
	t.Logf("across file systems: written by %v", used)
}

// TestExportCancel: a context cancelled in the middle of the copy (after
// the first chunk of several) stops it; the old dst is untouched and no
// temp file is left. A context cancelled before the start does the same
// for the reflink path.
func TestExportCancel(t *testing.T) {
	s := newTestStore(t)
	c := exportCases(t, s)[0] // 3 MiB + 5
	out := t.TempDir()
	dst := filepath.Join(out, "f")
	old := []byte("the old file")
	for _, from := range []ExportMethod{ExportAuto, ExportCopyRange, ExportCopy} {
		if err := os.WriteFile(dst, old, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var seen int64
		s.exportChunk = 256 << 10
		s.exportHook = func(n int64) {
			seen = n
			cancel()
		}
		if from == ExportAuto {
			cancel() // a reflink is one call: cancel before it
		}
		_, err := s.export(ctx, c.h, dst, from)
		cancel()
		s.exportChunk, s.exportHook = 0, nil
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%v: cancelled export returned %v, want context.Canceled", from, err)
		}
		if from != ExportAuto && (seen == 0 || seen >= int64(len(c.b))) {
			t.Fatalf("%v: cancelled after %d of %d bytes, want in the middle", from, seen, len(c.b))
		}
		checkExported(t, dst, old, "f")
		if err := os.Chmod(dst, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestExportReplaces: an existing dst is replaced by a rename, never
// rewritten in place: a reader that opened the old file still reads all of
// it, and the path then names a new file with the blob's bytes.
func TestExportReplaces(t *testing.T) {
	s := newTestStore(t)
	c := exportCases(t, s)[0]
	out := t.TempDir()
	dst := filepath.Join(out, "f")
	for _, from := range []ExportMethod{ExportAuto, ExportCopyRange, ExportCopy} {
		old := bytes.Repeat([]byte("old "), 1<<20)
		if err := os.WriteFile(dst, old, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(dst)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := f.Stat()
		if _, err := s.export(context.Background(), c.h, dst, from); err != nil {
			t.Fatalf("%v: %v", from, err)
		}
		checkExported(t, dst, c.b, "f")
		after, err := os.Stat(dst)
		if err != nil {
			t.Fatal(err)
		}
		if os.SameFile(before, after) {
			t.Errorf("%v: dst was rewritten in place, not replaced", from)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || !bytes.Equal(got, old) {
			t.Errorf("%v: the old file's reader read %d bytes, not the old %d (%v)", from, len(got), len(old), err)
		}
	}
}

// TestExportEnv: DWEB_EXPORT picks the first method when the options
// leave it at auto, and a bad value fails OpenStore with a clear error.
func TestExportEnv(t *testing.T) {
	t.Setenv("DWEB_EXPORT", "copy")
	s := newTestStore(t)
	c := exportCases(t, s)[0]
	dst := filepath.Join(t.TempDir(), "f")
	used, err := s.export(context.Background(), c.h, dst, s.exportFrom)
	if err != nil || used != ExportCopy {
		t.Fatalf("with DWEB_EXPORT=copy: written by %v (%v), want copy", used, err)
	}
	checkExported(t, dst, c.b, "f")
	t.Setenv("DWEB_EXPORT", "splice")
	dir := t.TempDir()
	if _, err := OpenStore(s.db, dir, StoreOptions{}); err == nil {
		t.Fatal("OpenStore with DWEB_EXPORT=splice: no error")
	}
}
