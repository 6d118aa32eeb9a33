package blobsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dwebkit/dweb/internal/testnet"
)

// diskBytes is what the files in dir occupy on disk (allocated blocks).
func diskBytes(t testing.TB, dir string) int64 {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
	}
	return n
}

// readChunked reads cf through from s (OpenChunked checks the whole-file
// hash at the end).
func readChunked(s *Store, cf ChunkedFile) ([]byte, error) {
	r, _, err := s.OpenChunked(context.Background(), cf.Hash, cf.List)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// checkRefs checks that every chunk of cf above the inline size is a
// reference into dst at its offset, that the store keeps no file of its
// own for them, and that the store reads and serves cf's bytes v.
func checkRefs(t *testing.T, s *Store, cf ChunkedFile, v []byte, dst string) {
	t.Helper()
	var off int64
	for i, c := range cf.Chunks {
		e, ok := entryOf(t, s, c.Hash)
		if c.Size > inlineMax && (!ok || e.RefPath != dst || e.RefOff != off || e.Pack != "") {
			t.Fatalf("chunk %d entry %+v, want a reference to %s at %d", i, e, dst, off)
		}
		if _, err := os.Stat(s.dataPath(c.Hash)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("chunk %d still has its data file (%v)", i, err)
		}
		off += c.Size
	}
	if p := packsIn(t, s); len(p) != 0 {
		t.Fatalf("packs left: %v", p)
	}
	if got, err := readChunked(s, cf); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("the store reads other bytes (%v)", err)
	}
	other := newTestStore(t)
	if _, err := other.DownloadChunked(context.Background(), cf.List, cf.Size, []Provider{prov(t, "refs", s)}, DownloadOptions{}); err != nil {
		t.Fatalf("download from the referencing store: %v", err)
	}
	if got, err := readChunked(other, cf); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("served bytes differ (%v)", err)
	}
}

// TestExportChunkedRef: a chunked file downloaded into packs, or added
// locally (a data file per chunk), is exported with its chunks kept as
// references into the output: the store's directory then holds about
// nothing for it, the output is the file (its BLAKE3 the whole hash), the
// store still reads and serves every chunk, from the output, and GC
// leaves the output alone. Once the output is edited, the chunks are
// refused (a clear error to a reader, nothing to a downloader), dropped,
// and fetched again.
func TestExportChunkedRef(t *testing.T) {
	for _, mode := range []string{"pack", "files"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			srv := newTestStore(t)
			v := content(chunkedFixture, 41)
			cf := addChunked(t, srv, v)
			m := newMoveStore(t)
			if mode == "pack" {
				if _, err := m.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
					t.Fatal(err)
				}
			} else {
				addChunked(t, m.Store, v)
			}
			before := diskBytes(t, m.Dir())
			if before < cf.Size {
				t.Fatalf("store holds %d bytes on disk before, want at least %d", before, cf.Size)
			}
			dst := filepath.Join(t.TempDir(), "out.bin")
			r, err := m.ExportChunkedRef(ctx, cf.Hash, cf.List, cf.Size, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.Referenced == 0 || r.RefBytes+r.KeptBytes != cf.Size || r.KeptBytes > inlineMax {
				t.Fatalf("ExportChunkedRef %+v for %d bytes", r, cf.Size)
			}
			got, err := os.ReadFile(dst)
			if err != nil || HashBytes(got) != cf.Hash {
				t.Fatalf("%s is not the file (%v)", dst, err)
			}
			after := diskBytes(t, m.Dir())
			if after > 1<<20 {
				t.Fatalf("store holds %d bytes on disk after (%d before), want about none", after, before)
			}
			u, err := m.Usage()
			if err != nil || u.RefBytes != r.RefBytes || u.Bytes > cf.Size-r.RefBytes+int64(len(got)/1000) {
				t.Fatalf("usage %+v, %v", u, err)
			}
			checkRefs(t, m.Store, cf, v, dst)

			// A reopened store reads them the same; GC keeps them and dst.
			m.reopen(t)
			m.gcGrace = 0
			if _, err := m.GC(ctx, func(yield func(Hash) bool) { yield(cf.List) }); err != nil {
				t.Fatal(err)
			}
			checkRefs(t, m.Store, cf, v, dst)

			// Exporting again (another path) copies: the chunks are
			// references already, and stay those to dst.
			dst2 := filepath.Join(t.TempDir(), "again.bin")
			r2, err := m.ExportChunkedRef(ctx, cf.Hash, cf.List, cf.Size, dst2, nil)
			if err != nil || r2.Referenced != 0 {
				t.Fatalf("second export: %+v, %v", r2, err)
			}
			checkRefs(t, m.Store, cf, v, dst)

			// The user edits dst: the store refuses, never serves.
			testnet.EditFile(t, dst, cf.Chunks[0].Size+10)
			_, err = readChunked(m.Store, cf)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "changed since") {
				t.Fatalf("read after the edit: %v, want ErrCorrupt (changed since)", err)
			}
			other := newTestStore(t)
			if _, err := other.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "refs", m.Store)}, DownloadOptions{}); err == nil {
				t.Fatal("a download from the store whose file was edited succeeded")
			}
			if ok, _ := other.HasChunks(cf.List); ok {
				t.Fatal("the other store holds the file")
			}
			n, err := m.DropBrokenChunkRefs(cf.List)
			if err != nil || n != r.Referenced {
				t.Fatalf("DropBrokenChunkRefs: %d, %v; want %d", n, err, r.Referenced)
			}
			if ok, _ := m.HasChunks(cf.List); ok {
				t.Fatal("the store still holds every chunk after the drop")
			}
			if _, err := m.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
				t.Fatal(err)
			}
			if got, err := readChunked(m.Store, cf); err != nil || !bytes.Equal(got, v) {
				t.Fatalf("refetched file differs (%v)", err)
			}
		})
	}
}

// TestExportChunkedRefShared: of a file whose chunks another version
// shares, only the chunks of its own become references; the shared ones
// stay the store's own, so editing the output does not touch the other
// version.
func TestExportChunkedRefShared(t *testing.T) {
	ctx := context.Background()
	srv := newTestStore(t)
	v1 := content(chunkedFixture, 43)
	v2 := bytes.Clone(v1)
	copy(v2[len(v2)/2:], "a different middle")
	cf1, cf2 := addChunked(t, srv, v1), addChunked(t, srv, v2)
	m := newMoveStore(t)
	for _, cf := range []ChunkedFile{cf1, cf2} {
		if _, err := m.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	shared, err := m.ChunksBesides(ctx, []Hash{cf1.List, cf2.List}, cf1.List)
	if err != nil {
		t.Fatal(err)
	}
	own := 0
	for _, c := range cf1.Chunks {
		if !shared[c.Hash] {
			own++
		}
	}
	if own == 0 || own == len(cf1.Chunks) {
		t.Fatalf("fixture: %d of %d chunks of their own", own, len(cf1.Chunks))
	}
	dst := filepath.Join(t.TempDir(), "v1.bin")
	r, err := m.ExportChunkedRef(ctx, cf1.Hash, cf1.List, cf1.Size, dst, func(h Hash) bool { return shared[h] })
	if err != nil || r.Referenced != own {
		t.Fatalf("ExportChunkedRef %+v, %v; want %d references", r, err, own)
	}
	for i, c := range cf1.Chunks {
		e, _ := entryOf(t, m.Store, c.Hash)
		if shared[c.Hash] == (e.RefPath != "") {
			t.Fatalf("chunk %d (shared %v) entry %+v", i, shared[c.Hash], e)
		}
	}
	if got, err := readChunked(m.Store, cf1); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("v1 reads other bytes (%v)", err)
	}
	testnet.EditFile(t, dst, 0)
	if got, err := readChunked(m.Store, cf2); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("v2 reads other bytes after v1's output was edited (%v)", err)
	}
}

// TestExportChunkedRefCrash stops ExportChunkedRef after each of its
// steps, as a crash would, and opens the store again: every chunk is
// still read right (its own copy or a reference into the intact output),
// GC leaves no file of the store's that no entry needs, and the export
// then finishes with one copy on disk.
func TestExportChunkedRefCrash(t *testing.T) {
	errCrash := errors.New("crash")
	for _, mode := range []string{"pack", "files"} {
		for _, step := range []moveStep{chunkRefAssembled, chunkRefEntries, chunkRefUnlinked, chunkRefPacks} {
			t.Run(mode+"/"+string(step), func(t *testing.T) {
				ctx := context.Background()
				srv := newTestStore(t)
				v := content(chunkedFixture, 47)
				cf := addChunked(t, srv, v)
				m := newMoveStore(t)
				if mode == "pack" {
					if _, err := m.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
						t.Fatal(err)
					}
				} else {
					addChunked(t, m.Store, v)
				}
				dst := filepath.Join(t.TempDir(), "out.bin")
				m.moveHook = func(s moveStep) error {
					if s == step {
						return errCrash
					}
					return nil
				}
				if _, err := m.ExportChunkedRef(ctx, cf.Hash, cf.List, cf.Size, dst, nil); !errors.Is(err, errCrash) {
					t.Fatalf("export: %v, want the crash", err)
				}
				m.reopen(t)
				if got, err := readChunked(m.Store, cf); err != nil || !bytes.Equal(got, v) {
					t.Fatalf("after the crash the store reads other bytes (%v)", err)
				}
				if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, v) {
					t.Fatalf("after the crash %s is not the file (%v)", dst, err)
				}
				m.gcGrace = 0
				if _, err := m.GC(ctx, func(yield func(Hash) bool) { yield(cf.List) }); err != nil {
					t.Fatal(err)
				}
				if step != chunkRefAssembled {
					// The entries were written: what is left of the
					// store's copies is GC's.
					checkRefs(t, m.Store, cf, v, dst)
					if n := diskBytes(t, m.Dir()); n > 1<<20 {
						t.Fatalf("after GC the store holds %d bytes on disk", n)
					}
					return
				}
				m.moveHook = nil
				if _, err := m.ExportChunkedRef(ctx, cf.Hash, cf.List, cf.Size, dst, nil); err != nil {
					t.Fatal(err)
				}
				checkRefs(t, m.Store, cf, v, dst)
			})
		}
	}
}

// TestExportChunkedRefSamePath: getting a file again, or its next version,
// to the path an earlier export referenced points the chunks of the new
// file at the new output, shared ones included (the old output is gone);
// only the chunks the new file lacks are left referencing the replaced
// file, and are refused.
func TestExportChunkedRefSamePath(t *testing.T) {
	ctx := context.Background()
	srv := newTestStore(t)
	v1 := content(chunkedFixture, 53)
	v2 := bytes.Clone(v1)
	copy(v2[len(v2)/2:], "a different middle")
	cf1, cf2 := addChunked(t, srv, v1), addChunked(t, srv, v2)
	m := newMoveStore(t)
	if _, err := m.DownloadChunked(ctx, cf1.List, cf1.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "film.bin")
	if _, err := m.ExportChunkedRef(ctx, cf1.Hash, cf1.List, cf1.Size, dst, nil); err != nil {
		t.Fatal(err)
	}
	// The same file to the same path: every reference follows.
	r, err := m.ExportChunkedRef(ctx, cf1.Hash, cf1.List, cf1.Size, dst, nil)
	if err != nil || r.Referenced == 0 {
		t.Fatalf("second export to the same path: %+v, %v", r, err)
	}
	checkRefs(t, m.Store, cf1, v1, dst)

	// The next version to the same path, its shared chunks claimed by v1.
	if _, err := m.DownloadChunked(ctx, cf2.List, cf2.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	shared, err := m.ChunksBesides(ctx, []Hash{cf1.List, cf2.List}, cf2.List)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.ExportChunkedRef(ctx, cf2.Hash, cf2.List, cf2.Size, dst, func(h Hash) bool { return shared[h] }); err != nil {
		t.Fatal(err)
	}
	checkRefs(t, m.Store, cf2, v2, dst)
	if _, err := readChunked(m.Store, cf1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("v1, whose own chunks' file was replaced, reads: %v, want ErrCorrupt", err)
	}
}

// TestExportChunkedRefCrashBetweenBatches: a crash after the first batch
// of entries leaves a file held partly by reference, partly as the
// store's own chunks: read right after a reopen, GC takes what the
// first batch left, and the export run again references the rest.
func TestExportChunkedRefCrashBetweenBatches(t *testing.T) {
	defer func(n int) { chunkRefBatch = n }(chunkRefBatch)
	chunkRefBatch = 4
	ctx := context.Background()
	srv := newTestStore(t)
	v := content(chunkedFixture, 59)
	cf := addChunked(t, srv, v)
	if len(cf.Chunks) < 9 {
		t.Fatalf("fixture has %d chunks, want more than two batches", len(cf.Chunks))
	}
	m := newMoveStore(t)
	if _, err := m.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	errCrash := errors.New("crash")
	batches := 0
	m.moveHook = func(s moveStep) error {
		if s == chunkRefEntries {
			if batches++; batches == 2 {
				return errCrash
			}
		}
		return nil
	}
	dst := filepath.Join(t.TempDir(), "out.bin")
	if _, err := m.ExportChunkedRef(ctx, cf.Hash, cf.List, cf.Size, dst, nil); !errors.Is(err, errCrash) {
		t.Fatalf("export: %v, want the crash", err)
	}
	m.reopen(t)
	refs := 0
	for _, c := range cf.Chunks {
		if e, _ := entryOf(t, m.Store, c.Hash); e.RefPath == dst {
			refs++
		}
	}
	if refs != 8 {
		t.Fatalf("%d chunks reference the output after the crash, want the two batches' 8", refs)
	}
	if got, err := readChunked(m.Store, cf); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("after the crash the store reads other bytes (%v)", err)
	}
	m.gcGrace = 0
	if _, err := m.GC(ctx, func(yield func(Hash) bool) { yield(cf.List) }); err != nil {
		t.Fatal(err)
	}
	if got, err := readChunked(m.Store, cf); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("after GC the store reads other bytes (%v)", err)
	}
	if len(packsIn(t, m.Store)) != 1 {
		t.Fatalf("packs after GC: %v, want the one the rest still use", packsIn(t, m.Store))
	}
	m.moveHook = nil
	if _, err := m.ExportChunkedRef(ctx, cf.Hash, cf.List, cf.Size, dst, nil); err != nil {
		t.Fatal(err)
	}
	checkRefs(t, m.Store, cf, v, dst)
}

// TestExportChunkedRefReaders: readers of the file and servers of its
// chunks running while ExportChunkedRef rewrites the entries and removes
// the pack read the right bytes throughout: a reader whose entry named
// the pack or data file that went opens the reference instead.
func TestExportChunkedRefReaders(t *testing.T) {
	defer func(n int) { chunkRefBatch = n }(chunkRefBatch)
	chunkRefBatch = 2
	for _, mode := range []string{"pack", "files"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			srv := newTestStore(t)
			v := content(chunkedFixture, 61)
			cf := addChunked(t, srv, v)
			m := newMoveStore(t)
			if mode == "pack" {
				if _, err := m.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
					t.Fatal(err)
				}
			} else {
				addChunked(t, m.Store, v)
			}
			stale := make([]entry, len(cf.Chunks))
			for i, c := range cf.Chunks {
				stale[i], _ = entryOf(t, m.Store, c.Hash)
			}
			stop := make(chan struct{})
			errs := make(chan error, 2)
			for range 2 {
				go func() {
					for {
						select {
						case <-stop:
							errs <- nil
							return
						default:
						}
						if got, err := readChunked(m.Store, cf); err != nil || !bytes.Equal(got, v) {
							errs <- fmt.Errorf("a read during the export: %d bytes, %v", len(got), err)
							return
						}
					}
				}()
			}
			dst := filepath.Join(t.TempDir(), "out.bin")
			_, err := m.ExportChunkedRef(ctx, cf.Hash, cf.List, cf.Size, dst, nil)
			close(stop)
			for range 2 {
				if e := <-errs; e != nil {
					t.Fatal(e)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			checkRefs(t, m.Store, cf, v, dst)
			// The window the readers above may miss: an entry read before
			// the rewrite, its file opened after.
			var off int64
			for i, c := range cf.Chunks {
				want := v[off : off+c.Size]
				off += c.Size
				if c.Size <= inlineMax {
					continue
				}
				f, at, e, err := m.openData(c.Hash, stale[i])
				if err != nil {
					t.Fatalf("chunk %d opened by its entry from before the export: %v", i, err)
				}
				got := make([]byte, e.Size)
				_, err = f.ReadAt(got, at)
				f.Close()
				if err != nil || !bytes.Equal(got, want) || e.RefPath != dst {
					t.Fatalf("chunk %d read by its stale entry: %v, entry %+v", i, err, e)
				}
			}
		})
	}
}

// TestExportChunkedRefDeltaBase: a version held by reference into an
// output is the base of the next version's delta (its old chunks read
// from the output, and the next version rebuilt from a small delta);
// once the output changed, DeltaBaseOf does not pick it and the next
// version is fetched whole, verified, rather than failing.
func TestExportChunkedRefDeltaBase(t *testing.T) {
	for _, edited := range []bool{false, true} {
		t.Run(map[bool]string{false: "intact", true: "edited"}[edited], func(t *testing.T) {
			ctx := context.Background()
			srv := newTestStore(t)
			v1 := content(chunkedFixture, 67)
			v2 := bytes.Clone(v1)
			copy(v2[len(v2)/2:], "a different middle")
			cf1, cf2 := addChunked(t, srv, v1), addChunked(t, srv, v2)
			m := newMoveStore(t)
			p := prov(t, "srv", srv)
			if _, err := m.DownloadChunked(ctx, cf1.List, cf1.Size, []Provider{p}, DownloadOptions{}); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "v1.bin")
			if r, err := m.ExportChunkedRef(ctx, cf1.Hash, cf1.List, cf1.Size, dst, nil); err != nil || r.Kept > 1 {
				t.Fatalf("export v1: %+v, %v", r, err)
			}
			if edited {
				testnet.EditFile(t, dst, 0)
			}
			e2 := Entry{Name: "film", Hash: cf2.Hash, Size: cf2.Size, Chunks: cf2.List,
				Versions: []Version{{Hash: cf1.Hash, Size: cf1.Size, Chunks: cf1.List}}}
			base := m.DeltaBaseOf(e2)
			if want := map[bool]Hash{false: cf1.List, true: {}}[edited]; base != want {
				t.Fatalf("DeltaBaseOf %s, want %s", base, want)
			}
			res, err := m.DownloadChunked(ctx, cf2.List, cf2.Size, []Provider{p}, DownloadOptions{DeltaBase: base})
			if err != nil {
				t.Fatal(err)
			}
			if !edited && (res.DeltaRuns < 1 || res.DeltaChunks != res.Fetched) {
				t.Fatalf("v2 against v1 held by reference: %+v, want every fetched chunk from a delta", res)
			}
			if got, err := readChunked(m.Store, cf2); err != nil || !bytes.Equal(got, v2) {
				t.Fatalf("v2 reads other bytes (%v)", err)
			}
		})
	}
}

// TestExportChunkedRefGC: GC removes reference chunks no root keeps (their
// entries only: the output stays, byte for byte); with the output deleted,
// kept chunks are refused, never served, until they are dropped.
func TestExportChunkedRefGC(t *testing.T) {
	ctx := context.Background()
	srv := newTestStore(t)
	v := content(chunkedFixture, 71)
	cf := addChunked(t, srv, v)
	m := newMoveStore(t)
	m.gcGrace = 0
	if _, err := m.DownloadChunked(ctx, cf.List, cf.Size, []Provider{prov(t, "srv", srv)}, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out.bin")
	if _, err := m.ExportChunkedRef(ctx, cf.Hash, cf.List, cf.Size, dst, nil); err != nil {
		t.Fatal(err)
	}

	// Deleted output, file kept: refused, then dropped.
	if err := os.Rename(dst, dst+".away"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GC(ctx, func(yield func(Hash) bool) { yield(cf.List) }); err != nil {
		t.Fatal(err)
	}
	if _, err := readChunked(m.Store, cf); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read with the output gone: %v, want ErrCorrupt", err)
	}
	if err := os.Rename(dst+".away", dst); err != nil {
		t.Fatal(err)
	}
	if got, err := readChunked(m.Store, cf); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("read with the output back: %v", err)
	}

	// Nothing keeps the file: GC removes its chunks, not the output.
	n, err := m.GC(ctx, nil)
	if err != nil || n < len(cf.Chunks) {
		t.Fatalf("GC removed %d, %v; want the chunks", n, err)
	}
	if u, err := m.Usage(); err != nil || u.RefBlobs != 0 || u.RefBytes != 0 {
		t.Fatalf("usage after GC %+v, %v", u, err)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("GC touched the output (%v)", err)
	}
}
