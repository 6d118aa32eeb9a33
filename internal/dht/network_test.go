package dht

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

// scaleOpts are the options of the network tests: short timeouts (1 s, 2 s
// under the race detector: raceSlowdown), and maintenance run by the test
// (Replicate) rather than by timers, so that each step is deterministic.
func scaleOpts(o *Options) {
	o.RPCTimeout = raceSlowdown * time.Second
	o.ReplicateInterval = -1
	o.RepublishInterval = -1
	o.RefreshInterval = -1
	o.QueueRetry = -1
	o.WatchRenew = 300 * time.Millisecond
}

type testRec struct {
	owner key.Keypair
	desc  *record.Descriptor
	val   *record.Value // subkey 0
}

// live returns the nodes that are up.
func live(nodes []*testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if !n.down {
			out = append(out, n)
		}
	}
	return out
}

// holding counts the nodes among the R nearest live nodes to r that store
// r's value.
func holding(t testing.TB, nodes []*testNode, r testRec) int {
	n := 0
	for _, h := range nearest(live(nodes), r.desc.Key(), DefaultR) {
		if lv := localValueOf(t, h, r.desc.Key(), 0); sameValue(lv, r.val) {
			n++
		}
	}
	return n
}

// readAll has every live node Get every record and checks the value.
func readAll(t *testing.T, nodes []*testNode, recs []testRec) {
	t.Helper()
	var mu sync.Mutex
	var errs []error
	ln := live(nodes)
	par(len(ln), 8, func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), raceSlowdown*30*time.Second)
		defer cancel()
		for j, r := range recs {
			_, v, err := ln[i].dht.Get(ctx, r.desc.Key(), 0)
			if err == nil && !sameValue(v, r.val) {
				err = fmt.Errorf("got seq %v", v)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("node %d record %d: %w", i, j, err))
				mu.Unlock()
			}
		}
	})
	if len(errs) > 0 {
		t.Fatalf("%d failed reads, first: %v", len(errs), errs[0])
	}
}

func replicateAll(t *testing.T, nodes []*testNode) {
	t.Helper()
	ln := live(nodes)
	par(len(ln), len(ln), func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), raceSlowdown*60*time.Second)
		defer cancel()
		if err := ln[i].dht.Replicate(ctx); err != nil {
			t.Errorf("replicate: %v", err)
		}
	})
}

// TestScale runs a 50-node network through writes, reads from every node,
// the loss of a third of the nodes, repair, a join, and watches.
func TestScale(t *testing.T) {
	n := 50
	if testing.Short() {
		n = 50 // the acceptance floor; the test stays well under a minute
	}
	nodes := newNet(t, n, scaleOpts)
	ctx := testCtx(t)

	// recs are read by every node at once; kept are not read before the
	// kill, so that Get's read repair does not do the sweep's work.
	var recs, kept []testRec
	for i := range 48 {
		owner, desc := newRecord(t, 2)
		v := newValue(t, desc, 0, 1, fmt.Sprintf("record %d", i), owner)
		if err := nodes[rand.N(n)].dht.Set(ctx, desc, 0, v); err != nil {
			t.Fatalf("Set %d: %v", i, err)
		}
		r := testRec{owner, desc, v}
		if h := holding(t, nodes, r); h < DefaultR-1 {
			t.Errorf("record %d: %d of the %d nearest hold it after Set", i, h, DefaultR)
		}
		if i%2 == 0 {
			recs = append(recs, r)
		} else {
			kept = append(kept, r)
		}
	}

	t.Run("EveryNodeReadsEveryRecord", func(t *testing.T) {
		readAll(t, nodes, recs)
	})

	t.Run("RepairAfterAThirdDies", func(t *testing.T) {
		perm := rand.Perm(n - 1)
		for _, i := range perm[:n/3] {
			nodes[i+1].stop()
		}
		before := 0
		for _, r := range kept {
			before += holding(t, nodes, r)
		}
		start := time.Now()
		replicateAll(t, nodes)
		took := time.Since(start)
		after := 0
		for i, r := range kept {
			h := holding(t, nodes, r)
			after += h
			if h < DefaultR {
				t.Errorf("record %d: %d of the %d nearest live nodes hold it after repair", i, h, DefaultR)
			}
		}
		t.Logf("holders among the R nearest live nodes: %d before repair, %d after (of %d); sweep took %v", before, after, len(kept)*DefaultR, took)
		if before == after {
			t.Error("the kill left every record fully held: the test tests nothing")
		}
		readAll(t, nodes, append(recs, kept...))
		recs = append(recs, kept...)
	})

	t.Run("JoinReceivesItsRecords", func(t *testing.T) {
		ln := live(nodes)
		// An identity that is among the R nearest to at least two records.
		var kp key.Keypair
		var mine []testRec
		for mine == nil || len(mine) < 2 {
			kp, mine = key.NewKeypair(), nil
			for _, r := range recs {
				k := r.desc.Key()
				far := nearest(ln, k, DefaultR)[DefaultR-1].dht.Self().ID
				if closer(k, kp.ID(), far) {
					mine = append(mine, r)
				}
			}
		}
		j, err := launch(t, t.TempDir(), kp, "", []Contact{ln[len(ln)-1].dht.Self()}, scaleOpts)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for _, r := range mine {
			for {
				if lv := localValueOf(t, j, r.desc.Key(), 0); sameValue(lv, r.val) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("joined node did not receive record %s", r.desc.Key())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		t.Logf("joined node received its %d records by hand-off", len(mine))
		nodes = append(nodes, j)
	})

	t.Run("WatchSeesChangeWithin1s", func(t *testing.T) {
		ln := live(nodes)
		r := recs[0]
		w, writer := ln[1], ln[len(ln)-2]
		ctx := testCtx(t)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch, err := w.dht.Watch(wctx, r.desc.Key(), []uint32{0})
		if err != nil {
			t.Fatal(err)
		}
		// Wait until the R nearest (but the watcher) serve the watch.
		for _, h := range nearest(ln, r.desc.Key(), DefaultR) {
			for h != w {
				h.dht.watchMu.Lock()
				n := len(h.dht.watches[r.desc.Key()])
				h.dht.watchMu.Unlock()
				if n > 0 {
					break
				}
				if ctx.Err() != nil {
					t.Fatal("the watch lease did not reach every holder")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		for seq := uint64(2); seq <= 4; seq++ {
			v := newValue(t, r.desc, 0, seq, fmt.Sprintf("change %d", seq), r.owner)
			start := time.Now()
			if err := writer.dht.Set(ctx, r.desc, 0, v); err != nil {
				t.Fatal(err)
			}
			select {
			case c := <-ch:
				if c.Key != r.desc.Key() || c.Subkey != 0 || !sameValue(c.Value, v) {
					t.Fatalf("change %+v, want seq %d", c, seq)
				}
				t.Logf("change seq %d seen %v after Set began", seq, time.Since(start))
			case <-time.After(time.Second):
				t.Fatalf("no change within 1 s of Set seq %d", seq)
			}
		}
		// Missed pushes: the holders forget the watch (as if they died and
		// were replaced), a write happens, and the renewal catches it.
		for _, h := range ln {
			h.dht.watchMu.Lock()
			for k, m := range h.dht.watches {
				for ref, s := range m {
					delete(m, ref)
					h.dht.unservedLocked(k, s)
				}
			}
			h.dht.watchMu.Unlock()
		}
		v := newValue(t, r.desc, 0, 9, "missed push", r.owner)
		if err := writer.dht.Set(ctx, r.desc, 0, v); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-ch:
			if !sameValue(c.Value, v) {
				t.Fatalf("re-read %+v, want seq 9", c)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("watch did not recover a missed push on renewal")
		}
		cancel()
		for range ch { // closed when ctx ends
		}
	})
}

// TestPartitionsConverge builds two networks that do not know each other,
// writes the same subkey differently in each, introduces them, and checks
// that every node ends with the winner of the conflict rule.
func TestPartitionsConverge(t *testing.T) {
	ctx := testCtx(t)
	a := newNet(t, 12, scaleOpts)
	b := newNet(t, 12, scaleOpts)
	owner, desc := newRecord(t, 1)
	k := desc.Key()
	va := newValue(t, desc, 0, 7, "written in partition A", owner)
	vb := newValue(t, desc, 0, 7, "written in partition B", owner)
	if err := a[3].dht.Set(ctx, desc, 0, va); err != nil {
		t.Fatal(err)
	}
	if err := b[5].dht.Set(ctx, desc, 0, vb); err != nil {
		t.Fatal(err)
	}
	win := va
	if record.Better(vb, va) {
		win = vb
	}
	// Heal: node 0 of each side learns of the other, then every node
	// refreshes its table and runs a replication sweep.
	a[0].dht.AddContacts(b[0].dht.Self())
	b[0].dht.AddContacts(a[0].dht.Self())
	all := append(append([]*testNode{}, a...), b...)
	refill(t, all)
	refill(t, all)
	replicateAll(t, all)
	for _, h := range nearest(all, k, DefaultR) {
		if lv := localValueOf(t, h, k, 0); !sameValue(lv, win) {
			t.Errorf("holder %s has %v after healing, want the winner", h.dht.Self().ID, lv)
		}
	}
	readAll(t, all, []testRec{{owner, desc, win}})
}

// TestExpiryAndRepublish runs the maintenance loop on short intervals: a
// record whose owner is gone expires on its holders; one whose owner
// republishes stays.
func TestExpiryAndRepublish(t *testing.T) {
	ctx := testCtx(t)
	nodes := newNet(t, 6, func(o *Options) {
		scaleOpts(o)
		o.ReplicateInterval = 200 * time.Millisecond
		o.RepublishInterval = 300 * time.Millisecond
		o.Expiry = 2 * time.Second
	})
	ownerA, descA := newRecord(t, 1)
	va := newValue(t, descA, 0, 1, "republished", ownerA)
	if err := nodes[1].dht.Set(ctx, descA, 0, va); err != nil {
		t.Fatal(err)
	}
	ownerB, descB := newRecord(t, 1)
	vb := newValue(t, descB, 0, 1, "abandoned", ownerB)
	if err := nodes[2].dht.Set(ctx, descB, 0, vb); err != nil {
		t.Fatal(err)
	}
	// Both records are held by every other node before B's writer leaves:
	// the test is that B then goes, not that it never came. (Six nodes, R
	// = 8: every node is among the nearest.)
	eventually(t, time.Second, "every node holding both records", func() bool {
		for i, n := range nodes {
			if i != 2 && (!sameValue(localValueOf(t, n, descA.Key(), 0), va) || !sameValue(localValueOf(t, n, descB.Key(), 0), vb)) {
				return false
			}
		}
		return true
	})
	nodes[2].stop() // B's writer leaves for good
	time.Sleep(4500 * time.Millisecond)
	for i, n := range live(nodes) {
		if d := localDescOf(t, n, descB.Key()); d != nil {
			t.Errorf("node %d still holds the abandoned record", i)
		}
		if lv := localValueOf(t, n, descA.Key(), 0); !sameValue(lv, va) {
			t.Errorf("node %d lost the republished record", i)
		}
	}
	if _, _, err := nodes[3].dht.Get(ctx, descB.Key(), 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of expired record: %v, want ErrNotFound", err)
	}
}

// TestMisplacedRecordHandedOn: a record a far node was sent to hold (as a
// write whose lookup met slow near nodes leaves it) reaches the R nearest
// at that node's next sweep; a copy a far node only read does not cost a
// sweep anything and moves nowhere.
func TestMisplacedRecordHandedOn(t *testing.T) {
	nodes := newNet(t, 20, scaleOpts)
	ctx, cancel := context.WithTimeout(context.Background(), raceSlowdown*30*time.Second)
	defer cancel()
	rec := func(data string) testRec {
		owner := key.NewKeypair()
		desc, err := record.NewDescriptor(owner, record.Schema{OwnerSubkeys: 1})
		if err != nil {
			t.Fatal(err)
		}
		return testRec{owner, desc, signedAt(desc.Key(), 0, 1, []byte(data), owner)}
	}
	farthest := func(r testRec) *testNode {
		byDist := nearest(nodes, r.desc.Key(), len(nodes))
		return byDist[len(byDist)-1]
	}

	held, read := rec("held"), rec("read")
	f := farthest(held)
	if _, err := f.dht.acceptFrom(held.desc.Key(), held.desc, 0, held.val, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	g := farthest(read)
	if err := g.dht.accept(read.desc.Key(), read.desc, 0, read.val); err != nil {
		t.Fatal(err)
	}
	if h := holding(t, nodes, held); h != 0 {
		t.Fatalf("%d of the nearest hold the record before the sweep", h)
	}
	if err := f.dht.Replicate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.dht.Replicate(ctx); err != nil {
		t.Fatal(err)
	}
	if h := holding(t, nodes, held); h != DefaultR {
		t.Fatalf("%d of the %d nearest hold the handed-on record after the far holder's sweep", h, DefaultR)
	}
	if h := holding(t, nodes, read); h != 0 {
		t.Fatalf("a reader's copy moved to %d of the nearest", h)
	}
}
