package core

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
)

// nextEvent returns the next event of sub that keep accepts, skipping the
// others; it fails t if none comes within d.
func nextEvent(t *testing.T, sub *Subscription, d time.Duration, what string, keep func(Event) bool) Event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				t.Fatalf("%s: subscription closed", what)
			}
			if keep(ev) {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %s within %v", what, d)
		}
	}
}

// isFile matches a file event of kind about name.
func isFile(kind, name string) func(Event) bool {
	return func(ev Event) bool {
		fe, ok := ev.Payload.(FileEvent)
		return ev.Kind == kind && ok && fe.Name == name
	}
}

// TestFileEvents: a file alice adds, changes and removes reaches bob's
// subscriber as file.added, file.changed and file.removed within a second
// of her call returning, with its name and hash; alice's own subscriber
// hears of her writes as they are made, and of bob joining. A subscriber
// that never reads does not hold bob back, and a resume replays what a
// subscriber missed.
func TestFileEvents(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 90*time.Second)
	nodes := startNodes(t, tmp, "boot", "alice", "bob")
	alice, bob := nodes[1], nodes[2]

	aliceSub := alice.Subscribe(SubscribeOptions{})
	defer aliceSub.Close()
	g, _, inv := newGroup(ctx, t, alice, "g")
	join(ctx, t, inv, bob)
	aliceRepo, bobRepo := alice.Groups()[0].Repo, bob.Groups()[0].Repo
	gs, err := bob.group(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob's watch on alice's repo", func() bool { return bob.isWatched(gs, aliceRepo) && bob.isWatched(gs, g.ID) })
	ev := nextEvent(t, aliceSub, 10*time.Second, "member.joined of bob on alice", func(ev Event) bool {
		return ev.Kind == KindMemberJoined && ev.Repo == bobRepo
	})
	if ev.Group != g.ID || ev.Payload.(MemberEvent).Mine {
		t.Fatalf("member.joined %+v", ev)
	}

	sub := bob.Subscribe(SubscribeOptions{Groups: []key.RecordKey{g.ID}, Kinds: []string{KindFileAdded, KindFileChanged, KindFileRemoved, KindDownloadProgress}})
	defer sub.Close()
	stuck := bob.Subscribe(SubscribeOptions{Buffer: 1}) // never read
	defer stuck.Close()

	p, data := writeFile(t, tmp, "new.jpg", 40000)
	fis, err := alice.AddFiles(ctx, g.ID, []string{p})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	added := nextEvent(t, sub, time.Second, "file.added on bob", isFile(KindFileAdded, "new.jpg"))
	t.Logf("bob heard of alice's new file %v after her add returned", time.Since(start))
	fe := added.Payload.(FileEvent)
	if added.Group != g.ID || added.Repo != aliceRepo || fe.Hash != fis[0].Hash || fe.Size != 40000 || fe.Mine || fe.RepoName != "alice" || fe.MediaType != "image/jpeg" {
		t.Fatalf("file.added %+v %+v, want alice's %+v", added, fe, fis[0])
	}
	// On alice: the file added (told once the write is stored locally: a
	// write does not wait for the network) and the write published (told
	// as the DHT took it, in the background: either may come first).
	var own Event
	published := false
	nextEvent(t, aliceSub, time.Second, "file.added and publication.state on alice", func(ev Event) bool {
		if pe, ok := ev.Payload.(PublicationEvent); ok && ev.Kind == KindPublicationState && pe.Record == "collection" && pe.State == "published" {
			published = true
		}
		if isFile(KindFileAdded, "new.jpg")(ev) {
			own = ev
		}
		return published && own.ID != 0
	})
	if !own.Payload.(FileEvent).Mine || own.Repo != aliceRepo {
		t.Fatalf("alice's own file.added %+v", own)
	}

	// bob downloads it: download.progress, ending "done".
	getFile(ctx, t, bob, g.ID, "new.jpg", filepath.Join(tmp, "got.jpg"), data)
	done := nextEvent(t, sub, time.Second, "download.progress done", func(ev Event) bool {
		de, ok := ev.Payload.(DownloadEvent)
		return ev.Kind == KindDownloadProgress && ok && de.State != "active"
	})
	if de := done.Payload.(DownloadEvent); de.State != "done" || de.Op != "get" || de.Name != "new.jpg" || de.Hash != fe.Hash || de.Done != 40000 || de.Total != 40000 {
		t.Fatalf("download end %+v", de)
	}

	p2, _ := writeFile(t, t.TempDir(), "new.jpg", 1000)
	if _, err := alice.AddFiles(ctx, g.ID, []string{p2}); err != nil {
		t.Fatal(err)
	}
	changed := nextEvent(t, sub, time.Second, "file.changed on bob", isFile(KindFileChanged, "new.jpg"))
	if ce := changed.Payload.(FileEvent); ce.PrevHash != fe.Hash || ce.Size != 1000 || ce.Hash == fe.Hash {
		t.Fatalf("file.changed %+v", ce)
	}

	if err := alice.RemoveFile(ctx, g.ID, "new.jpg"); err != nil {
		t.Fatal(err)
	}
	removed := nextEvent(t, sub, time.Second, "file.removed on bob", isFile(KindFileRemoved, "new.jpg"))
	if removed.Repo != aliceRepo || removed.ID <= changed.ID || changed.ID <= added.ID {
		t.Fatalf("file.removed %+v after %d, %d", removed, added.ID, changed.ID)
	}

	// The subscriber that never read lost events, and said so; bob was
	// not held back by it.
	if stuck.Dropped() == 0 {
		t.Fatal("the stuck subscriber dropped nothing")
	}
	var kept []Event
	for len(kept) == 0 || kept[len(kept)-1].Kind != KindLagged {
		kept = append(kept, <-stuck.C)
	}
	if lag := kept[len(kept)-1]; len(kept) > 3 || lag.Payload.(LaggedEvent).Missed == 0 || lag.Payload.(LaggedEvent).Missed > stuck.Dropped() || lag.ID <= kept[0].ID {
		t.Fatalf("stuck subscriber: %+v, dropped %d", kept, stuck.Dropped())
	}

	// A subscriber that went away resumes after the last event it saw.
	again := bob.Subscribe(SubscribeOptions{Groups: []key.RecordKey{g.ID}, Kinds: []string{KindFileAdded, KindFileChanged, KindFileRemoved}, Resume: true, After: added.ID})
	defer again.Close()
	for _, want := range []Event{changed, removed} {
		got := nextEvent(t, again, time.Second, "replayed "+want.Kind, func(Event) bool { return true })
		if got.ID != want.ID || got.Kind != want.Kind {
			t.Fatalf("replayed %d %s, want %d %s", got.ID, got.Kind, want.ID, want.Kind)
		}
	}
}

// TestEventsWhileOff: a file alice adds while bob's node is off is told to
// bob once he is back (his baseline is in his store), and nothing he had
// already heard of is told again.
func TestEventsWhileOff(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 90*time.Second)
	nodes := startNodes(t, tmp, "boot", "alice", "bob")
	boot, alice, bob := nodes[0], nodes[1], nodes[2]
	pa, _ := writeFile(t, tmp, "before.txt", 100)
	g, _, inv := newGroup(ctx, t, alice, "g", pa)
	join(ctx, t, inv, bob)
	sub := bob.Subscribe(SubscribeOptions{Kinds: []string{KindFileAdded}})
	nextEvent(t, sub, 10*time.Second, "file.added of before.txt", isFile(KindFileAdded, "before.txt"))
	sub.Close()
	bob.Close()
	if _, ok := <-sub.C; ok {
		t.Fatal("subscription open after Close")
	}

	pb, _ := writeFile(t, tmp, "while-off.txt", 100)
	if _, err := alice.AddFiles(ctx, g.ID, []string{pb}); err != nil {
		t.Fatal(err)
	}
	bob = startNode(t, filepath.Join(tmp, "bob"), boot.Contact())
	// Resuming from before this run replays every event of it, after a
	// lagged one: events may come before a subscriber can ask.
	sub = bob.Subscribe(SubscribeOptions{Resume: true, Kinds: []string{KindFileAdded}})
	defer sub.Close()
	if lag := <-sub.C; lag.Kind != KindLagged || lag.Payload.(LaggedEvent).Reason != "resume" {
		t.Fatalf("first event on resume from 0: %+v", lag)
	}
	ev := nextEvent(t, sub, 15*time.Second, "file.added of while-off.txt", func(ev Event) bool { return ev.Kind == KindFileAdded })
	if fe := ev.Payload.(FileEvent); fe.Name != "while-off.txt" {
		t.Fatalf("after restart bob heard first of %q, want while-off.txt only", fe.Name)
	}
}

// TestPublicationState: a write made with no other node reachable is told
// queued, then published once the network is back.
func TestPublicationState(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	alone := startNode(t, filepath.Join(tmp, "alone"))
	sub := alone.Subscribe(SubscribeOptions{Kinds: []string{KindPublicationState}})
	defer sub.Close()
	g, err := alone.CreateGroup(ctx, "offline")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := writeFile(t, tmp, "a.txt", 10)
	if _, err := alone.AddFiles(ctx, g.ID, []string{p}); err != nil {
		t.Fatal(err)
	}
	isState := func(state string) func(Event) bool {
		return func(ev Event) bool {
			pe := ev.Payload.(PublicationEvent)
			return pe.Record == "collection" && pe.State == state
		}
	}
	q := nextEvent(t, sub, 5*time.Second, "publication.state queued", isState("queued"))
	if q.Group != g.ID || q.Repo != g.Repo {
		t.Fatalf("queued %+v", q)
	}

	other := startNode(t, filepath.Join(tmp, "other"))
	alone.curDHT().AddContacts(other.curDHT().Self())
	if err := alone.curDHT().Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	pub := nextEvent(t, sub, 10*time.Second, "publication.state published", isState("published"))
	if pub.Payload.(PublicationEvent).Seq != q.Payload.(PublicationEvent).Seq {
		t.Fatalf("published %+v, queued %+v", pub, q)
	}
}

// TestEventHub: numbering, filters, the ring, lagged events for a slow
// subscriber and for a resume too old, and the JSON form, on a node that
// is not started (emit is all the hub needs).
func TestEventHub(t *testing.T) {
	b, err := New(Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	g1, g2 := key.RecordKey{1}, key.RecordKey{2}
	all := b.Subscribe(SubscribeOptions{Buffer: 2 * EventRing})
	slow := b.Subscribe(SubscribeOptions{Buffer: 4})
	only := b.Subscribe(SubscribeOptions{Groups: []key.RecordKey{g2}, Kinds: []string{KindFileRemoved}})
	base := b.LastEventID()

	start := time.Now()
	const n = EventRing + 100
	for i := range n {
		g, kind := g1, KindFileAdded
		if i%10 == 0 {
			g, kind = g2, KindFileRemoved
		}
		b.emit(kind, g, key.RecordKey{3}, FileEvent{Name: "f", Size: int64(i)})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("%d events took %v with a subscriber that does not read", n, d)
	}
	if b.LastEventID() != base+n {
		t.Fatalf("last ID %d, want %d", b.LastEventID(), base+n)
	}
	for i := range n {
		if ev := <-all.C; ev.ID != base+uint64(i)+1 || ev.Payload.(FileEvent).Size != int64(i) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	for i := 0; i < n; i += 10 {
		if ev := <-only.C; ev.Group != g2 || ev.Kind != KindFileRemoved || ev.ID != base+uint64(i)+1 {
			t.Fatalf("filtered event %d: %+v", i, ev)
		}
	}
	// The slow one got its buffer (and perhaps one in hand), then a
	// lagged event for the rest, carrying the last dropped ID.
	var got []Event
	for len(got) == 0 || got[len(got)-1].Kind != KindLagged {
		got = append(got, <-slow.C)
	}
	lag := got[len(got)-1]
	if kept := uint64(len(got) - 1); kept < 4 || kept > 5 || lag.ID != base+n || lag.Payload.(LaggedEvent).Missed != n-kept || slow.Dropped() != n-kept {
		t.Fatalf("slow subscriber got %+v, dropped %d", got, slow.Dropped())
	}
	b.emit(KindFileAdded, g1, key.RecordKey{}, FileEvent{Name: "after"})
	if ev := <-slow.C; ev.ID != base+n+1 {
		t.Fatalf("after the lagged event: %+v", ev)
	}

	// Resume within the ring replays; from before it, a lagged event first.
	r := b.Subscribe(SubscribeOptions{Resume: true, After: base + n - 1})
	if a, c := <-r.C, <-r.C; a.ID != base+n || c.ID != base+n+1 {
		t.Fatalf("resume: %+v %+v", a, c)
	}
	r.Close()
	for _, after := range []uint64{0, base + 10, base + n + 5} {
		r := b.Subscribe(SubscribeOptions{Resume: true, After: after})
		ev := <-r.C
		lp, _ := ev.Payload.(LaggedEvent)
		if ev.Kind != KindLagged || lp.Reason != "resume" {
			t.Fatalf("resume after %d: %+v", after, ev)
		}
		if after == base+10 {
			oldest := base + n + 1 - EventRing + 1
			if lp.Missed != oldest-after-1 || ev.ID != oldest-1 {
				t.Fatalf("resume after %d: %+v, want missed %d", after, ev, oldest-after-1)
			}
			if next := <-r.C; next.ID != oldest {
				t.Fatalf("resume after %d: first replayed %d, want %d", after, next.ID, oldest)
			}
		}
		r.Close()
	}

	// The JSON form round-trips, payload included.
	h := blobsync.HashBytes([]byte("x"))
	ev := Event{ID: 7, Time: time.Unix(1, 0).UTC(), Kind: KindFileChanged, Group: g1, Repo: g2,
		Payload: FileEvent{Name: "a.jpg", Hash: h, PrevHash: h, Size: 1, RepoName: "r", Mine: true}}
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var back Event
	if err := json.Unmarshal(raw, &back); err != nil || !reflect.DeepEqual(back, ev) {
		t.Fatalf("round trip of %s: %+v, %v", raw, back, err)
	}

	// Close ends every subscription.
	b.Close()
	for _, s := range []*Subscription{all, slow, only} {
		for range s.C {
		}
	}
	if _, ok := <-b.Subscribe(SubscribeOptions{}).C; ok {
		t.Fatal("a subscription after Close is open")
	}
}

// TestChangeRetried: when a member's new collection cannot be fetched at
// first (here: its writer does not serve it yet), the watch tries again,
// so the change is still told without another push.
func TestChangeRetried(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "boot", "alice", "bob")
	alice, bob := nodes[1], nodes[2]
	p, _ := writeFile(t, tmp, "late.txt", 100)
	g, _, inv := newGroup(ctx, t, alice, "g", p)
	gsA, err := alice.group(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, h, _, err := alice.repoCollection(ctx, gsA, gsA.info.Repo, true)
	if err != nil {
		t.Fatal(err)
	}
	alice.mu.Lock()
	delete(gsA.servable, h)
	alice.mu.Unlock()

	sub := bob.Subscribe(SubscribeOptions{Kinds: []string{KindFileAdded}})
	defer sub.Close()
	join(ctx, t, inv, bob)
	gsB, err := bob.group(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob's watch on alice's repo", func() bool { return bob.isWatched(gsB, gsA.info.Repo) })
	time.Sleep(changeRetryMin / 2) // bob's first read fails
	alice.mu.Lock()
	gsA.servable[h] = true
	alice.mu.Unlock()
	nextEvent(t, sub, 5*time.Second, "file.added after a retry", isFile(KindFileAdded, "late.txt"))
}
