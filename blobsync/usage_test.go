package blobsync

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
)

func TestUsage(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	u, err := s.Usage()
	if err != nil || u != (Usage{}) {
		t.Fatalf("empty store: %+v, %v", u, err)
	}
	small := content(1000, 1)           // inline
	big := content(3*ChunkGroupSize, 2) // files
	if _, err := s.AddBytes(ctx, small); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddFile(ctx, writeTemp(t, big)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddBytes(ctx, small); err != nil { // the same blob again
		t.Fatal(err)
	}
	ref := content(2*ChunkGroupSize+5, 3)
	if _, _, err := s.AddFileRef(ctx, writeTemp(t, ref)); err != nil {
		t.Fatal(err)
	}
	u, err = s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{Blobs: 2, Bytes: int64(len(small) + len(big)), RefBlobs: 1, RefBytes: int64(len(ref))}
	if u != want {
		t.Fatalf("usage %+v, want %+v", u, want)
	}
	h, err := s.AddBytes(ctx, small)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(h); err != nil {
		t.Fatal(err)
	}
	if u, err = s.Usage(); err != nil || u.Blobs != 1 || u.Bytes != int64(len(big)) {
		t.Fatalf("after delete: %+v, %v", u, err)
	}
}

// TestUsageFollowsWrites checks the kept figures against a fresh scan
// after adds (inline, files, by reference), downloads (complete and
// interrupted), deletes and GC from several goroutines at once, and after
// reopening the store.
func TestUsageFollowsWrites(t *testing.T) {
	ctx := context.Background()
	s := newTestStoreOpts(t, StoreOptions{GCGrace: -1}) // GC may take blobs just added
	src := newTestStore(t)
	if _, err := s.Usage(); err != nil { // the scan; writes move the figures from here
		t.Fatal(err)
	}
	check := func(when string) Usage {
		t.Helper()
		got, err := s.Usage()
		if err != nil {
			t.Fatal(err)
		}
		want, err := s.scanUsage()
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%s: kept usage %+v, a scan says %+v", when, got, want)
		}
		return got
	}

	const workers, rounds = 4, 12
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				for i := range rounds {
					seed := uint64(w*1000 + i)
					small, err := s.AddBytes(ctx, content(500+i, seed))
					if err != nil {
						return err
					}
					big, _, err := s.AddFile(ctx, writeTemp(t, content(2*ChunkGroupSize+i, seed+100)))
					if err != nil {
						return err
					}
					if _, _, err := s.AddFileRef(ctx, writeTemp(t, content(ChunkGroupSize+7+i, seed+200))); err != nil {
						return err
					}
					// The same blob again: counted once.
					if _, err := s.AddBytes(ctx, content(500+i, seed)); err != nil {
						return err
					}
					h, err := src.AddBytes(ctx, content(3*ChunkGroupSize+i, seed+300))
					if err != nil {
						return err
					}
					if _, err := s.Download(ctx, h, []Provider{prov(t, "src", src)}, DownloadOptions{}); err != nil {
						return err
					}
					switch i % 3 {
					case 0:
						err = s.Delete(small)
					case 1:
						err = s.Delete(big)
					case 2:
						err = s.Delete(h)
					}
					if err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	u := check("after concurrent writes")
	if want := int64(workers * rounds * 3 * 2 / 3); u.Blobs != want || u.RefBlobs != workers*rounds {
		t.Fatalf("usage %+v: want %d blobs and %d by reference", u, want, workers*rounds)
	}

	// A download cut off leaves a partial entry: not counted.
	h, err := src.AddBytes(ctx, content(8*ChunkGroupSize, 9))
	if err != nil {
		t.Fatal(err)
	}
	cut := withFault(prov(t, "cut", src), func(_ int, c net.Conn) io.ReadWriteCloser {
		return &dieAfter{Conn: c, left: 3 * ChunkGroupSize}
	})
	if _, err := s.Download(ctx, h, []Provider{cut}, DownloadOptions{}); err == nil {
		t.Fatal("download through a cut stream succeeded")
	}
	if e, found, err := s.rawEntry(h); err != nil || !found || e.State != statePartial {
		t.Fatalf("after the cut download: entry %+v, found %v, %v; want a partial one", e, found, err)
	}
	check("after an interrupted download")
	if _, err := s.Download(ctx, h, []Provider{prov(t, "src", src)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	check("after resuming it")

	// GC with no roots removes every blob the store keeps.
	if n, err := s.GC(ctx, func(func(Hash) bool) {}); err != nil || n == 0 {
		t.Fatalf("GC removed %d blobs: %v", n, err)
	}
	if u := check("after GC"); u != (Usage{}) {
		t.Fatalf("after GC with no roots: %+v", u)
	}

	// Reopened, the store scans again and finds the same.
	before := check("before reopening")
	s2, err := OpenStore(s.db, s.dir, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after, err := s2.Usage(); err != nil || after != before {
		t.Fatalf("reopened: %+v, %v; want %+v", after, err, before)
	}
}

// BenchmarkUsage: Usage on a store of 10,000 blobs, against the scan it
// replaced (go test -bench Usage ./blobsync).
func BenchmarkUsage(b *testing.B) {
	s := newTestStore(b)
	for i := range 10000 {
		if _, err := s.AddBytes(context.Background(), content(64, uint64(i))); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("kept", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Usage(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.scanUsage(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
