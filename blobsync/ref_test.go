package blobsync

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestRefPath: RefPath names the file a reference-mode blob reads from,
// "" for a blob the store copied (large or inline), ErrNotFound for one it
// does not hold.
func TestRefPath(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	ref := writeTemp(t, content(100<<10, 1))
	hr, _, err := s.AddFileRef(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.RefPath(hr); err != nil || p != ref {
		t.Fatalf("RefPath of a reference = %q, %v; want %q", p, err, ref)
	}
	hc, _, err := s.AddFile(ctx, writeTemp(t, content(100<<10, 2)))
	if err != nil {
		t.Fatal(err)
	}
	small, _, err := s.AddFileRef(ctx, writeTemp(t, content(1000, 3))) // inline: copied
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []Hash{hc, small} {
		if p, err := s.RefPath(h); err != nil || p != "" {
			t.Fatalf("RefPath of a copy = %q, %v; want \"\"", p, err)
		}
	}
	if _, err := s.RefPath(HashBytes([]byte("not held"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RefPath of a blob not held: %v, want ErrNotFound", err)
	}
}

// TestAddFileRefReplacesBrokenRef: a file touched after AddFileRef (same
// bytes, a new mtime) is refused; AddFileRef of it again makes the
// reference whole (the store reads it again), and AddFileRef of an intact
// file with the same bytes elsewhere changes nothing. Usage counts the
// blob once throughout.
func TestAddFileRefReplacesBrokenRef(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	data := content(300<<10, 7)
	path := writeTemp(t, data)
	h, _, err := s.AddFileRef(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open after a touch: %v, want ErrCorrupt", err)
	}
	if h2, _, err := s.AddFileRef(ctx, path); err != nil || h2 != h {
		t.Fatalf("AddFileRef again: %s %v", h2, err)
	}
	checkBlob(t, s, h, data)

	other := writeTemp(t, data)
	if _, _, err := s.AddFileRef(ctx, other); err != nil {
		t.Fatal(err)
	}
	if p, err := s.RefPath(h); err != nil || p != path {
		t.Fatalf("an intact reference was replaced: RefPath %q, %v; want %q", p, err, path)
	}
	if u, err := s.Usage(); err != nil || u.RefBlobs != 1 || u.RefBytes != int64(len(data)) || u.Blobs != 0 {
		t.Fatalf("usage %+v, %v: want one reference", u, err)
	}
}

// TestBrokenRefNotHeld: a blob held by reference whose file was edited
// (other bytes, same size) or deleted since is not held: Has and HasFile
// say so, and Download fetches it again from a provider instead of
// returning at once, storing the store's own copy and leaving the edited
// file as the user left it.
func TestBrokenRefNotHeld(t *testing.T) {
	ctx := context.Background()
	data := content(300<<10, 8)
	srv := newTestStore(t)
	h, _, err := srv.AddFile(ctx, writeTemp(t, data))
	if err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{"edited", "deleted"} {
		t.Run(how, func(t *testing.T) {
			s := newTestStore(t)
			path := writeTemp(t, data)
			if _, _, err := s.AddFileRef(ctx, path); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.HasFile(Entry{Hash: h}); err != nil || !ok {
				t.Fatalf("HasFile of an intact reference: %v, %v", ok, err)
			}
			edited := content(300<<10, 9)
			if how == "edited" {
				later := time.Now().Add(time.Minute)
				if err := os.WriteFile(path, edited, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(path, later, later); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.Has(h); err != nil || ok {
				t.Fatalf("Has of a reference whose file was %s: %v, %v; want false", how, ok, err)
			}
			if ok, err := s.HasFile(Entry{Hash: h}); err != nil || ok {
				t.Fatalf("HasFile of a reference whose file was %s: %v, %v; want false", how, ok, err)
			}
			p := prov(t, "srv", srv)
			if n, err := s.Download(ctx, h, []Provider{p}, DownloadOptions{}); err != nil || n != int64(len(data)) {
				t.Fatalf("Download: %d, %v", n, err)
			}
			checkBlob(t, s, h, data)
			if rp, err := s.RefPath(h); err != nil || rp != "" {
				t.Fatalf("after the download RefPath = %q, %v; want the store's own copy", rp, err)
			}
			if how == "edited" {
				if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, edited) {
					t.Fatalf("the download touched the user's edited file: %v", err)
				}
			}
		})
	}
}
