package dht

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// TestFlushQueue: with no timed passes (QueueRetry < 0), a write queued
// offline stays queued until FlushQueue runs a pass, which reports it
// sent and none left, and places it on the nodes; a pass that reaches no
// node, or whose context ended, leaves it queued and says why.
func TestFlushQueue(t *testing.T) {
	ctx := testCtx(t)
	nodes := newNet(t, 5, scaleOpts)
	x, err := launch(t, t.TempDir(), key.NewKeypair(), "", nil, scaleOpts)
	if err != nil {
		t.Fatal(err)
	}
	owner, desc := newRecord(t, 1)
	v := newValue(t, desc, 0, 1, "queued", owner)
	if err := x.dht.Set(ctx, desc, 0, v); err != nil {
		t.Fatalf("offline Set: %v", err)
	}
	sent, left, err := x.dht.FlushQueue(ctx)
	if !errors.Is(err, ErrNoPeers) || sent != 0 || left != 1 {
		t.Fatalf("FlushQueue with no node known = %d sent, %d left, %v; want 0, 1, ErrNoPeers", sent, left, err)
	}
	// Contacts known, but no Bootstrap (which would wake the queue):
	// nothing sends the write until FlushQueue.
	for _, n := range nodes {
		x.dht.AddContacts(n.dht.Self())
	}
	time.Sleep(300 * time.Millisecond)
	if n := x.dht.Pending(); n != 1 {
		t.Fatalf("Pending = %d before FlushQueue, want 1", n)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	sent, left, err = x.dht.FlushQueue(cctx)
	if !errors.Is(err, context.Canceled) || sent != 0 || left != 1 {
		t.Fatalf("FlushQueue with a cancelled context = %d sent, %d left, %v; want 0, 1, context.Canceled", sent, left, err)
	}
	sent, left, err = x.dht.FlushQueue(ctx)
	if err != nil || sent != 1 || left != 0 {
		t.Fatalf("FlushQueue = %d sent, %d left, %v; want 1, 0, nil", sent, left, err)
	}
	for i, n := range nodes {
		if lv := localValueOf(t, n, desc.Key(), 0); !sameValue(lv, v) {
			t.Errorf("node %d does not hold the flushed write", i)
		}
	}
	if sent, left, err := x.dht.FlushQueue(ctx); err != nil || sent != 0 || left != 0 {
		t.Fatalf("FlushQueue of an empty queue = %d sent, %d left, %v; want 0, 0, nil", sent, left, err)
	}
}

// TestSetRejoinsWhenTableWentStale: a Set on a node every contact of
// whose routing table has timed out once (stale and suspected, as on a
// machine overloaded for a moment: 3 of the Sets of a 10,000-node
// simulation met this, in microseconds, with table size 0) bootstraps
// again from its bootstrap contact and places the write, rather than
// queueing it until the queue's next pass.
func TestSetRejoinsWhenTableWentStale(t *testing.T) {
	ctx := testCtx(t)
	nodes := newNet(t, 6, scaleOpts)
	// A client, so that no one calls it (which would make a contact
	// live again) while the test runs.
	x, err := launch(t, t.TempDir(), key.NewKeypair(), "", []Contact{nodes[0].dht.Self()}, clientOpts)
	if err != nil {
		t.Fatal(err)
	}
	all := x.dht.table.all()
	if len(all) < len(nodes) {
		t.Fatalf("table of %d contacts after Bootstrap, want %d", len(all), len(nodes))
	}
	for _, c := range all {
		// What call does when a request to c runs out RPCTimeout.
		x.dht.fail(c.ID, true)
		x.dht.table.suspect(c.ID)
	}
	if n := x.dht.table.size(); n != 0 {
		t.Fatalf("%d live contacts after every one timed out, want 0", n)
	}
	owner, desc := newRecord(t, 1)
	v := newValue(t, desc, 0, 1, "written", owner)
	if err := x.dht.Set(ctx, desc, 0, v); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if n := x.dht.Pending(); n != 0 {
		t.Fatalf("Set queued the write (Pending %d) with a bootstrap contact alive", n)
	}
	held := 0
	for _, n := range nodes {
		if sameValue(localValueOf(t, n, desc.Key(), 0), v) {
			held++
		}
	}
	if held < len(nodes)-1 {
		t.Fatalf("%d of %d nodes hold the write", held, len(nodes))
	}

	// Stale again within rejoinEvery: no second rejoin (a node offline
	// for good would pay a Bootstrap on every Set and Get).
	for _, c := range x.dht.table.all() {
		x.dht.fail(c.ID, true)
		x.dht.table.suspect(c.ID)
	}
	if x.dht.rejoin(ctx) || x.dht.table.size() != 0 {
		t.Fatalf("a second rejoin within %v bootstrapped (%d live contacts)", rejoinEvery, x.dht.table.size())
	}
}

// TestGetRejoinsWhenTableWentStale: a Get on a node every contact of
// whose routing table has timed out once bootstraps again and reads the
// record, rather than failing with ErrNotFound without asking anyone
// (2 reads of a 10,000-node simulation did, in microseconds).
func TestGetRejoinsWhenTableWentStale(t *testing.T) {
	ctx := testCtx(t)
	nodes := newNet(t, 6, scaleOpts)
	owner, desc := newRecord(t, 1)
	v := newValue(t, desc, 0, 1, "written", owner)
	if err := nodes[1].dht.Set(ctx, desc, 0, v); err != nil {
		t.Fatal(err)
	}
	// A client: it holds no records for others (no hand-off brings it
	// the record) and no one calls it (which would make a contact live).
	x, err := launch(t, t.TempDir(), key.NewKeypair(), "", []Contact{nodes[0].dht.Self()}, clientOpts)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range x.dht.table.all() {
		x.dht.fail(c.ID, true)
		x.dht.table.suspect(c.ID)
	}
	if n := x.dht.table.size(); n != 0 {
		t.Fatalf("%d live contacts after every one timed out, want 0", n)
	}
	if _, got, err := x.dht.Get(ctx, desc.Key(), 0); err != nil || !sameValue(got, v) {
		t.Fatalf("Get = %v, %v; want the written value", got, err)
	}
}

// clientOpts are scaleOpts in client mode.
func clientOpts(o *Options) {
	scaleOpts(o)
	o.Client = true
}
