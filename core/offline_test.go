package core

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
)

// savedContactIDs reads the contacts a closed node in dir saved, opening
// its store without starting it.
func savedContactIDs(t *testing.T, dir string) map[key.NodeID]time.Time {
	t.Helper()
	b, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	out := map[key.NodeID]time.Time{}
	for _, cs := range b.loadContacts() {
		out[cs.c.ID] = cs.seen
	}
	return out
}

// knows reports whether b's routing table holds id and id answered b
// during this run.
func knows(b *Backend, id key.NodeID) bool {
	return slices.ContainsFunc(b.curDHT().Contacts(), func(c dht.Contact) bool { return c.ID == id }) &&
		!b.curDHT().LastSeen(id).IsZero()
}

// TestStartWithDeadContacts: a phone whose saved contacts are all down
// starts before a single DHT request to them could have timed out, keeps
// those contacts through a run where none answered, and finds the
// network through them once one is back.
func TestStartWithDeadContacts(t *testing.T) {
	tmp := t.TempDir()
	peers := startNodes(t, tmp, "p1", "p2")
	phoneDir := filepath.Join(tmp, "phone")
	phone := startNode(t, phoneDir, peers[0].Contact())
	waitFor(t, "the phone to know both peers", func() bool {
		return knows(phone, peers[0].NodeID()) && knows(phone, peers[1].NodeID())
	})
	phone.Close()
	for _, p := range peers {
		p.Close()
	}

	// Restart with every saved contact dead: Start does not wait on them.
	t0 := time.Now()
	phone = startNode(t, phoneDir)
	if took := time.Since(t0); took >= dht.DefaultRPCTimeout {
		t.Fatalf("Start took %v with its contacts dead; a DHT request to them times out after %v", took, dht.DefaultRPCTimeout)
	}
	if len(phone.Groups()) != 0 {
		t.Fatalf("groups %v", phone.Groups())
	}
	waitBootedT(t, phone)
	if cs := phone.curDHT().Contacts(); len(cs) != 0 {
		t.Fatalf("after a bootstrap to dead contacts the routing table holds %v", cs)
	}
	phone.Close()
	saved := savedContactIDs(t, phoneDir)
	for i, p := range peers {
		seen, ok := saved[p.NodeID()]
		if !ok {
			t.Fatalf("after a run with every contact dead, peer %d is no longer saved: %v", i+1, saved)
		}
		if seen.IsZero() || time.Since(seen) > time.Minute {
			t.Fatalf("peer %d saved as last seen %v", i+1, seen)
		}
	}

	// p1 comes back (on its old port); the phone, restarted with no
	// bootstrap option, finds it through its saved contacts.
	p1 := startNode(t, filepath.Join(tmp, "p1"))
	if p1.NodeID() != peers[0].NodeID() || p1.Addr() != peers[0].Addr() {
		t.Fatalf("p1 came back as %s at %s", p1.NodeID(), p1.Addr())
	}
	phone = startNode(t, phoneDir)
	waitFor(t, "the phone and p1 to find each other", func() bool {
		return knows(phone, p1.NodeID()) && knows(p1, phone.NodeID())
	})
}

// TestMergeContacts: hints first, then contacts that answered this run
// (most recent first), then the rest by last seen; a contact that did not
// answer keeps its old last-seen time and stays until better ones fill
// the list.
func TestMergeContacts(t *testing.T) {
	id := func(n byte) key.NodeID { return key.NodeID{n} }
	c := func(n byte, seen time.Time) contactSeen {
		return contactSeen{c: dht.Contact{ID: id(n), Addr: netip.MustParseAddrPort("127.0.0.1:4000")}, seen: seen}
	}
	now := time.Unix(1_800_000_000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	self := id(99)
	cur := []contactSeen{
		c(1, time.Time{}),      // hint, never answered
		c(2, ago(time.Minute)), // answered
		c(3, now),              // answered, most recently
		c(4, time.Time{}),      // in the table, not (yet) answered; saved before
		c(99, now),             // self
	}
	prev := []contactSeen{c(5, ago(time.Hour)), c(4, ago(2*time.Hour)), c(6, ago(3*time.Hour)), c(7, time.Time{}), c(2, ago(48*time.Hour))}
	got := mergeContacts(self, 1, cur, prev, 10)
	var order []byte
	for _, cs := range got {
		order = append(order, cs.c.ID[0])
	}
	if want := []byte{1, 3, 2, 5, 4, 6, 7}; !slices.Equal(order, want) {
		t.Fatalf("merged order %v, want %v", order, want)
	}
	if !got[2].seen.Equal(ago(time.Minute)) || !got[4].seen.Equal(ago(2*time.Hour)) || !got[6].seen.IsZero() {
		t.Fatalf("last-seen times %+v", got)
	}
	if got := mergeContacts(self, 1, cur, prev, 3); len(got) != 3 || got[2].c.ID != id(2) {
		t.Fatalf("bounded to 3: %+v", got)
	}
	// Nothing answered, nothing in the table: the saved set is kept whole.
	if got := mergeContacts(self, 0, nil, prev, 10); len(got) != len(prev) {
		t.Fatalf("with an empty table the merge kept %d of %d", len(got), len(prev))
	}
}

// TestLoadContactsOldFormat: the plain list of contact strings earlier
// versions saved is still read; junk in either format is not fatal.
func TestLoadContactsOldFormat(t *testing.T) {
	b, err := New(Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	peer := key.NewKeypair().ID()
	old := []string{peer.String() + "@127.0.0.1:4567", "not a contact", b.NodeID().String() + "@127.0.0.1:1"}
	raw, err := transport.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.db.Set([]byte(metaContacts), raw, true); err != nil {
		t.Fatal(err)
	}
	got := b.loadContacts()
	if len(got) != 1 || got[0].c.ID != peer || got[0].c.Addr.Port() != 4567 || !got[0].seen.IsZero() {
		t.Fatalf("old format read as %+v", got)
	}
	if err := b.db.Set([]byte(metaContacts), []byte{0xff, 0x00}, true); err != nil {
		t.Fatal(err)
	}
	if got := b.loadContacts(); len(got) != 0 {
		t.Fatalf("junk read as %+v", got)
	}
}

// publicationOf returns b's waiting publication of its collection in g.
func publicationOf(b *Backend, g GroupInfo) (Publication, bool) {
	for _, p := range b.Publications() {
		if p.Group == g.ID && p.Repo == g.Repo && p.Record == "collection" {
			return p, true
		}
	}
	return Publication{}, false
}

// heldCollection returns the hash of repo rk's collection as b's own store
// holds it (what the DHT stored there), without asking the network.
func heldCollection(t *testing.T, b *Backend, rk key.RecordKey) (uint64, bool) {
	t.Helper()
	_, v, err := b.curDHT().GetLocal(context.Background(), rk, datarepo.SubkeyCollection)
	if err != nil || v == nil {
		return 0, false
	}
	return v.Seq, true
}

// TestAddWithPeersDown: with its only peer closed, alice's add returns
// long before a DHT request could time out, and its publication shows as
// waiting; when bob comes back it is published to him and he lists the
// file.
func TestAddWithPeersDown(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob")
	alice, bob := nodes[0], nodes[1]
	g, _, inv := newGroup(ctx, t, alice, "offline")
	join(ctx, t, inv, bob)
	waitFor(t, "alice's empty collection published", func() bool { _, ok := publicationOf(alice, g); return !ok })
	bob.Close()

	p, _ := writeFile(t, tmp, "while-alone.txt", 4000)
	t0 := time.Now()
	added, err := alice.AddFiles(ctx, g.ID, []string{p})
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if bound := dht.DefaultRPCTimeout / 10; took > bound {
		t.Fatalf("AddFiles with every peer down took %v, want under %v (a tenth of a DHT request's timeout)", took, bound)
	}
	pub, ok := publicationOf(alice, g)
	if !ok || (pub.State != PublicationQueued && pub.State != PublicationRetrying) {
		t.Fatalf("after the add alice's publications are %+v", alice.Publications())
	}
	if added[0].Publication == "" {
		t.Fatalf("the added file says publication %q", added[0].Publication)
	}
	files, err := alice.RepoFiles(ctx, g.ID, g.Repo)
	if err != nil || len(files) != 1 || files[0].Publication == "" {
		t.Fatalf("alice lists her repo as %+v, %v; want the file, its publication waiting", files, err)
	}

	// Bob comes back on his old address: alice's queue sends to him.
	bob = startNode(t, filepath.Join(tmp, "bob"))
	waitFor(t, "alice's collection published", func() bool {
		_, waiting := publicationOf(alice, g)
		seq, held := heldCollection(t, bob, g.Repo)
		return !waiting && held && seq == pub.Seq
	})
	waitFor(t, "bob to list the file", func() bool {
		fs, err := bob.RepoFiles(ctx, g.ID, g.Repo)
		return err == nil && len(fs) == 1 && fs[0].Name == "while-alone.txt"
	})
	if files, _ := alice.RepoFiles(ctx, g.ID, g.Repo); len(files) != 1 || files[0].Publication != "" {
		t.Fatalf("after publication alice lists %+v", files)
	}
	closeTogether(alice, bob)
}

// TestPublicationSurvivesRestart: a write queued on a node alone is still
// waiting after a restart, and goes out when a node calls in.
func TestPublicationSurvivesRestart(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	aliceDir := filepath.Join(tmp, "alice")
	alice := startNode(t, aliceDir)
	g, err := alice.CreateGroup(ctx, "alone")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := writeFile(t, tmp, "a.txt", 100)
	if _, err := alice.AddFiles(ctx, g.ID, []string{p}); err != nil {
		t.Fatal(err)
	}
	before, ok := publicationOf(alice, g)
	if !ok {
		t.Fatalf("alone, alice's publications are %+v", alice.Publications())
	}
	alice.Close()

	alice = startNode(t, aliceDir)
	after, ok := publicationOf(alice, g)
	if !ok || after.Seq != before.Seq || !after.Since.Equal(before.Since) {
		t.Fatalf("after a restart alice's publications are %+v, want %+v", alice.Publications(), before)
	}
	bob := startNode(t, filepath.Join(tmp, "bob"), alice.Contact())
	waitFor(t, "alice's queued collection sent to bob", func() bool {
		_, waiting := publicationOf(alice, g)
		seq, held := heldCollection(t, bob, g.Repo)
		return !waiting && held && seq == before.Seq
	})
	closeTogether(alice, bob)
}

// closeTogether closes nodes at once: one closed after the others would
// wait out its shutdown's clearing of its descriptors on them.
func closeTogether(nodes ...*Backend) {
	var wg sync.WaitGroup
	for _, b := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Close()
		}()
	}
	wg.Wait()
}
