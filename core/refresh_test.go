package core

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
)

// TestRefresh: bob's Refresh fetches every file of alice's repo that he
// lacks, verified: small ones in children requests and larger ones in
// parallel, over a few pooled tunnels rather than one per file; a second
// Refresh fetches nothing; a file no member can supply is listed in
// FailedFiles and the rest still come.
func TestRefresh(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 90*time.Second)
	nodes := startNodes(t, tmp, "boot", "alice", "bob")
	alice, bob := nodes[1], nodes[2]

	want := map[string][]byte{}
	var paths []string
	for i := range 24 {
		size := 3000 + i*9000 // 3 KB .. 210 KB: children requests
		if i >= 21 {
			size = 1<<20 + i*100000 // above the batch limit: one download each
		}
		p, data := writeFile(t, tmp, fmt.Sprintf("photo%02d.jpg", i), size)
		paths, want[filepath.Base(p)] = append(paths, p), data
	}
	// The same bytes under a second name.
	dup := filepath.Join(tmp, "copy-of-photo03.jpg")
	if err := os.WriteFile(dup, want["photo03.jpg"], 0o600); err != nil {
		t.Fatal(err)
	}
	paths, want["copy-of-photo03.jpg"] = append(paths, dup), want["photo03.jpg"]
	g, _, inv := newGroup(ctx, t, alice, "archive", paths...)
	join(ctx, t, inv, bob)

	aliceRepo := func(rs []RepoRefresh) RepoRefresh {
		t.Helper()
		for _, r := range rs {
			if r.Name == "alice" {
				return r
			}
		}
		t.Fatalf("no repo of alice in %+v", rs)
		return RepoRefresh{}
	}
	var progress []RefreshProgress
	rs, err := bob.RefreshWithProgress(ctx, g.ID, func(p RefreshProgress) { progress = append(progress, p) })
	if err != nil {
		t.Fatal(err)
	}
	r := aliceRepo(rs)
	// Progress: totals known from the first call (25 files; the copy's blob
	// counted once), never going back, everything done at the end.
	var total int64
	for name, data := range want {
		if name != "copy-of-photo03.jpg" {
			total += int64(len(data))
		}
	}
	if len(progress) < 3 || progress[0].Files != len(want) || progress[0].Total != total || progress[0].Done != 0 {
		t.Fatalf("first progress %+v of %d calls; want %d files, %d bytes, none done", progress[0], len(progress), len(want), total)
	}
	for i := 1; i < len(progress); i++ {
		a, b := progress[i-1], progress[i]
		if b.Done < a.Done || b.FilesDone < a.FilesDone || b.Files != a.Files || b.Total != a.Total || b.Done > b.Total || b.FilesDone > b.Files {
			t.Fatalf("progress went from %+v to %+v", a, b)
		}
	}
	if last := progress[len(progress)-1]; last.Done != total || last.FilesDone != len(want) {
		t.Fatalf("last progress %+v; want %d bytes and %d files done", last, total, len(want))
	}
	if len(r.RefreshedFiles) != len(want) || len(r.AllFiles) != len(want) || len(r.FailedFiles) != 0 || r.CanWrite || r.RepoHash == "" {
		t.Fatalf("first refresh: %d refreshed, %d in all, failed %v, can_write %v, hash %q; want %d, %d, none, false, set",
			len(r.RefreshedFiles), len(r.AllFiles), r.FailedFiles, r.CanWrite, r.RepoHash, len(want), len(want))
	}
	for name, data := range want {
		if fi, _ := getFile(ctx, t, bob, g.ID, name, filepath.Join(tmp, "out-"+name), data); !fi.Local {
			t.Fatalf("%s: not local after the refresh (%+v)", name, fi)
		}
	}
	gs, err := bob.group(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The collection, the batches and three large files: a handful of
	// tunnels to alice, some of them reused, not one per file.
	if st := gs.streams.Stats(); st.Opened > 6 || st.Reused == 0 {
		t.Fatalf("refresh of %d files opened %d tunnels (%+v)", len(want), st.Opened, st)
	}

	rs, err = bob.Refresh(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r := aliceRepo(rs); len(r.RefreshedFiles) != 0 || len(r.FailedFiles) != 0 {
		t.Fatalf("second refresh fetched %v, failed %v; want nothing", r.RefreshedFiles, r.FailedFiles)
	}

	// Two new files; alice loses the bytes of one (removed from her store
	// behind her collection's back): bob gets the other and reports it.
	lost, _ := writeFile(t, tmp, "lost.jpg", 50000)
	kept, keptData := writeFile(t, tmp, "kept.jpg", 60000)
	added, err := alice.AddFiles(ctx, g.ID, []string{lost, kept})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range added {
		if a.Name == "lost.jpg" {
			if err := alice.blobs.Delete(a.Hash); err != nil {
				t.Fatal(err)
			}
		}
	}
	rs, err = bob.Refresh(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	r = aliceRepo(rs)
	if !slices.Equal(r.RefreshedFiles, []string{"kept.jpg"}) || !slices.Equal(r.FailedFiles, []string{"lost.jpg"}) || len(r.AllFiles) != len(want)+2 {
		t.Fatalf("third refresh: refreshed %v, failed %v, %d in all; want [kept.jpg], [lost.jpg], %d", r.RefreshedFiles, r.FailedFiles, len(r.AllFiles), len(want)+2)
	}
	h := blobsync.HashBytes(keptData)
	if ok, err := bob.blobs.Has(h); err != nil || !ok {
		t.Fatalf("kept.jpg not held after the refresh: %v", err)
	}
}

// BenchmarkRefresh: a member joins a group whose other member holds 300
// files (290 of 20-49 KB, 10 of 3 MiB) and fetches them all, with Refresh
// and, as the baseline, with one fetch per file in turn (what Refresh did
// before it batched). Each iteration joins a fresh node.
//
//	go test -run x -bench Refresh -benchtime 3x ./core
func BenchmarkRefresh(b *testing.B) {
	tmp := b.TempDir()
	ctx := context.Background()
	boot := startNode(b, filepath.Join(tmp, "boot"))
	alice := startNode(b, filepath.Join(tmp, "alice"), boot.Contact())
	var paths []string
	for i := range 300 {
		size := 20000 + i*100
		if i%30 == 0 {
			size = 3 << 20
		}
		p := filepath.Join(tmp, fmt.Sprintf("p%03d.jpg", i))
		if err := os.WriteFile(p, bytes.Repeat([]byte{byte(i), byte(i >> 8), 7}, size/3+1)[:size], 0o600); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
	}
	g, _, inv := newGroup(ctx, b, alice, "archive", paths...)
	n := 0
	for _, mode := range []string{"refresh", "one-by-one"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				n++
				bob := startNode(b, filepath.Join(tmp, fmt.Sprintf("bob%d", n)), boot.Contact())
				join(ctx, b, inv, bob)
				b.StartTimer()
				got := 0
				if mode == "refresh" {
					rs, err := bob.Refresh(ctx, g.ID)
					if err != nil {
						b.Fatal(err)
					}
					for _, r := range rs {
						got += len(r.RefreshedFiles)
					}
				} else {
					files, err := bob.ListFiles(ctx, g.ID)
					if err != nil {
						b.Fatal(err)
					}
					gs, _ := bob.group(g.ID)
					for i := range files {
						if err := bob.fetch(ctx, gs, &files[i], nil); err != nil {
							b.Fatal(err)
						}
						got++
					}
				}
				b.StopTimer()
				bob.Close()
				if got != len(paths) {
					b.Fatalf("%s fetched %d files, want %d", mode, got, len(paths))
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(len(paths))*float64(b.N)/b.Elapsed().Seconds(), "files/s")
		})
	}
}
