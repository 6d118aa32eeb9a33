package core

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
)

// TestDrainHandsOverToAnotherBackup: two backup servers hold alice's files;
// alice leaves; backup B loses one blob and cannot fetch it by itself (its
// download slots are taken), so A is its last holder. A drain without a
// target reports it unplaced; a drain naming B's admin URI hands it to B,
// which confirms holding it, and A leaves the group. Once A is gone a new
// member downloads every file from B alone.
func TestDrainHandsOverToAnotherBackup(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	boot := startNode(t, filepath.Join(tmp, "boot"))
	alice := startNode(t, filepath.Join(tmp, "alice"), boot.Contact())
	bo := Options{Bootstrap: []string{boot.Contact()}, Backup: true, BackupInterval: time.Hour}
	nodes := startTogether(t, map[string]Options{filepath.Join(tmp, "a"): bo, filepath.Join(tmp, "b"): bo})
	a, bk := nodes[filepath.Join(tmp, "a")], nodes[filepath.Join(tmp, "b")]

	paths, want := writeFiles(t, tmp, []string{"note.txt", "photo.jpg"}, 1000, 300<<10+5)
	g, added, inv := newGroup(ctx, t, alice, "newsroom", paths...)
	join(ctx, t, inv, a, bk)
	waitFor(t, "backup A to hold alice's files", holds(a, g.ID, 2))
	waitFor(t, "backup B to hold alice's files", holds(bk, g.ID, 2))
	alice.Close()

	// B loses photo.jpg and cannot fetch it by itself: its backup loop's
	// download slots are all taken.
	for range cap(bk.bk.sem) {
		bk.bk.sem <- struct{}{}
	}
	lost := added[1]
	if lost.Name != "photo.jpg" {
		t.Fatalf("added %+v", added)
	}
	if err := bk.blobs.Delete(lost.Hash); err != nil {
		t.Fatal(err)
	}

	// Without a target, the blob only A holds is reported unplaced.
	rep, err := a.Drain(ctx, DrainOptions{Group: g.ID})
	if err != nil {
		t.Fatal(err)
	}
	dg := rep.Groups[0]
	t.Logf("drain without a target: %+v", dg)
	if rep.Complete || dg.Complete || dg.UnplacedN != 1 || len(dg.Unplaced) != 1 || dg.Unplaced[0].Hash != lost.Hash ||
		dg.Unplaced[0].Name != "photo.jpg" || !strings.Contains(dg.Unplaced[0].Reason, "--to") ||
		dg.HeldElsewhere != dg.Checked-1 || dg.Checked < 3 || dg.HandedOver != 0 || dg.Left {
		t.Fatalf("drain without a target: %+v", rep)
	}

	// Naming B hands it over; A leaves the group.
	uri, _, err := bk.AdminURI()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err = a.Drain(ctx, DrainOptions{To: []string{uri}, Leave: true, Wait: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dg = rep.Groups[0]
	t.Logf("drain to B took %v: %+v", time.Since(start), dg)
	if !rep.Complete || !dg.Complete || dg.HandedOver != 1 || dg.HeldElsewhere != dg.Checked-1 || dg.UnplacedN != 0 ||
		len(dg.Errors) != 0 || !dg.Left || dg.Group != g.ID || dg.Name != "newsroom" {
		t.Fatalf("drain to B: %+v", rep)
	}
	if ok, err := bk.blobs.Has(lost.Hash); err != nil || !ok {
		t.Fatalf("B does not hold the blob handed over (%v)", err)
	}
	if len(a.Groups()) != 0 {
		t.Fatalf("A is still in %+v", a.Groups())
	}
	a.Close()

	// Carol joins and gets every file from B alone.
	carol := startNode(t, filepath.Join(tmp, "carol"), boot.Contact())
	join(ctx, t, inv, carol)
	for name, data := range want {
		_, last := getFile(ctx, t, carol, g.ID, name, filepath.Join(tmp, "carol-"+name), data)
		if len(last.Providers) != 1 || last.Providers[0].Node != bk.NodeID().String() {
			t.Fatalf("carol got %s with progress %+v, want B %s as the one provider", name, last, bk.NodeID())
		}
	}
}

// TestAdminFetchRefusesBadRequests: the fetch operation wants 1 to 256
// hashes of a group the server is in.
func TestAdminFetchRefusesBadRequests(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 30*time.Second)
	srv := startWith(t, filepath.Join(tmp, "srv"), Options{Backup: true}, false)
	uri, _, err := srv.AdminURI()
	if err != nil {
		t.Fatal(err)
	}
	c, err := DialAdmin(uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ae *AdminError
	_, err = c.do(ctx, adminRequest{Op: "fetch", Group: "nope"})
	if !errors.As(err, &ae) || ae.Code != 400 {
		t.Fatalf("fetch of no hashes: %v", err)
	}
	if err := c.Fetch(ctx, "nope", make([]blobsync.Hash, 3)); !errors.As(err, &ae) || ae.Code != 404 {
		t.Fatalf("fetch for an unknown group: %v", err)
	}
	if _, err := srv.Drain(ctx, DrainOptions{To: []string{"dweb+admin:?v=1"}}); err == nil {
		t.Fatal("drain accepted a malformed admin URI")
	}
}
