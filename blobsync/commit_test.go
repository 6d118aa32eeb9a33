package blobsync

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/store"
)

// commitKillSizes: the collection TestCollectionCommitAfterKill downloads,
// inline blobs (1 KiB) and file blobs (40 KB) alternating.
func commitKillSizes() []int {
	var sizes []int
	for i := range 400 {
		if i%2 == 0 {
			sizes = append(sizes, 1024+i)
		} else {
			sizes = append(sizes, 40000+i)
		}
	}
	return sizes
}

// TestCollectionCommitChild is the download TestCollectionCommitAfterKill
// runs in a child process and kills with SIGKILL. It prints every blob the
// download reports complete ("claimed <hash>") as soon as it is reported.
func TestCollectionCommitChild(t *testing.T) {
	if os.Getenv("DWEB_COMMIT_CHILD") == "" {
		t.Skip("run by TestCollectionCommitAfterKill")
	}
	smallBatches(t, 20)
	h, err := ParseHash(os.Getenv("DWEB_COMMIT_HASH"))
	if err != nil {
		t.Fatal(err)
	}
	s, db := openStoreAt(t, os.Getenv("DWEB_COMMIT_DIR"))
	defer db.Close()
	done := 0
	_, err = s.DownloadCollection(context.Background(), h, []Provider{tcpProvider{os.Getenv("DWEB_COMMIT_ADDR")}}, DownloadOptions{Progress: func(p Progress) {
		if p.BlobsDone > done {
			done = p.BlobsDone
			fmt.Fprintf(os.Stdout, "claimed %s\n", p.Hash)
		}
	}})
	t.Fatalf("the child should be killed before it finishes (err %v)", err)
}

// TestCollectionCommitAfterKill: a collection download killed with SIGKILL
// between and during batch commits leaves a store that opens clean (no
// part files), holds every blob it reported complete, with the right
// bytes, and holds nothing it has not verified; the download then
// finishes.
func TestCollectionCommitAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process for a few seconds")
	}
	srv := newTestStore(t)
	f := makeCollection(t, commitKillSizes(), []*Store{srv}, nil)
	var total int64
	for _, e := range f.c.Entries {
		total += e.Size
	}
	// 4 MB/s: the child needs about 2 s for the collection.
	ts := serveTCP(t, srv, ServeOptions{Limit: NewPeerLimit(ServeLimits{UploadRate: 4e6})})
	dir := t.TempDir()

	cmd := exec.Command(os.Args[0], "-test.run=^TestCollectionCommitChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DWEB_COMMIT_CHILD=1", "DWEB_COMMIT_DIR="+dir,
		"DWEB_COMMIT_HASH="+f.h.String(), "DWEB_COMMIT_ADDR="+ts.ln.Addr().String())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for ts.sent.Load() < total/2 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child did not get half the collection in time: %s%s", out.String(), errOut.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v\n%s%s", err, out.String(), errOut.String())
	}
	var claimed []Hash
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "claimed "); ok {
			h, err := ParseHash(s)
			if err != nil {
				t.Fatalf("child printed %q: %v", sc.Text(), err)
			}
			claimed = append(claimed, h)
		}
	}
	partsBefore, _ := filepath.Glob(filepath.Join(dir, "blobs", "*.part"))

	cl, db := openStoreAt(t, dir)
	defer db.Close()
	if parts, _ := filepath.Glob(filepath.Join(dir, "blobs", "*.part")); len(parts) > 0 {
		t.Fatalf("reopened store still has part files %v", parts)
	}
	for _, h := range claimed {
		if h == f.h {
			continue
		}
		if _, ok := f.blobs[h]; !ok {
			t.Fatalf("child claimed %s, not an entry", h)
		}
		if !has(t, cl, h) {
			t.Fatalf("blob %s was reported complete before the kill but is not held after it", h)
		}
	}
	held := 0
	for h, want := range f.blobs {
		if !has(t, cl, h) {
			continue
		}
		held++
		got, err := cl.ReadAll(h, 1<<20)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("held blob %s does not read back (%v)", h, err)
		}
	}
	if len(claimed) < 2 || held == len(f.blobs) {
		t.Fatalf("kill not mid-collection: %d claimed, %d of %d held", len(claimed), held, len(f.blobs))
	}
	t.Logf("killed with %d blobs claimed, %d held, %d part files on disk", len(claimed), held, len(partsBefore))

	ts2 := serveTCP(t, srv, ServeOptions{})
	c, err := cl.DownloadCollection(context.Background(), f.h, []Provider{tcpProvider{ts2.ln.Addr().String()}}, DownloadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range c.Entries {
		got, err := cl.ReadAll(e.Hash, 1<<20)
		if err != nil || !bytes.Equal(got, f.blobs[e.Hash]) {
			t.Fatalf("entry %s after the resumed download: %v", e.Name, err)
		}
	}
	// The data files created ahead and not used are removed.
	if parts, _ := filepath.Glob(filepath.Join(dir, "blobs", "*.part")); len(parts) > 0 {
		t.Fatalf("part files left after the download: %v", parts)
	}
}

// TestCommitEachEnv: DWEB_BLOB_COMMIT=each stores a collection's small
// blobs one by one (the comparison path) with the same result and
// progress; an unknown value is refused by OpenStore.
func TestCommitEachEnv(t *testing.T) {
	t.Setenv("DWEB_BLOB_COMMIT", "each")
	var sizes []int
	for i := range 40 {
		sizes = append(sizes, 1+(i*7919)%40000)
	}
	smallBatches(t, 16)
	srv := newTestStore(t)
	f := makeCollection(t, sizes, []*Store{srv}, nil)
	cl := newTestStore(t)
	if !cl.commitEach {
		t.Fatal("DWEB_BLOB_COMMIT=each: store commits in batches")
	}
	_, last := downloadAll(t, cl, f, prov(t, "a", srv))
	if !last.Finished || last.BlobsDone != len(sizes) {
		t.Fatalf("last progress %+v, want %d blobs", last, len(sizes))
	}

	t.Setenv("DWEB_BLOB_COMMIT", "sometimes")
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := OpenStore(db, filepath.Join(dir, "blobs"), StoreOptions{}); err == nil {
		t.Fatal("OpenStore with DWEB_BLOB_COMMIT=sometimes: no error")
	}
	if s, err := OpenStore(db, filepath.Join(dir, "blobs"), StoreOptions{CommitEach: true}); err != nil || !s.commitEach {
		t.Fatalf("OpenStore with CommitEach: %v", err)
	}
}
