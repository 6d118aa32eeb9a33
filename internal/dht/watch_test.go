package dht

import (
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// TestWatchPlacedWhenTheNetworkReturns: a watch started while the node
// knows no other node (a phone's start or resume before the network is
// back) places its leases as soon as the node joins, not a WatchRenew
// later, and from then on hears changes written elsewhere.
func TestWatchPlacedWhenTheNetworkReturns(t *testing.T) {
	ctx := testCtx(t)
	opts := func(o *Options) {
		scaleOpts(o)
		o.QueueRetry = 200 * time.Millisecond
		o.WatchRenew = time.Hour // only the retry of an unplaced watch can place it in time
	}
	nodes := newNet(t, 5, opts)
	x, err := launch(t, t.TempDir(), key.NewKeypair(), "", nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	owner, desc := newRecord(t, 1)
	if err := x.dht.Set(ctx, desc, 0, newValue(t, desc, 0, 1, "written alone", owner)); err != nil {
		t.Fatal(err)
	}
	ch, err := x.dht.Watch(ctx, desc.Key(), []uint32{0})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the first renewal finds no node
	if x.dht.Watching(desc.Key()) {
		t.Fatal("Watching with no other node known")
	}
	x.dht.AddContacts(nodes[0].dht.Self())
	if err := x.dht.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !x.dht.Watching(desc.Key()); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 3*time.Second {
			t.Fatal("the watch placed no lease within 3 s of the node joining")
		}
	}
	for x.dht.Pending() > 0 { // the offline write reaches the holders
		if ctx.Err() != nil {
			t.Fatal("queued write not sent")
		}
		time.Sleep(10 * time.Millisecond)
	}
	v := newValue(t, desc, 0, 2, "written elsewhere", owner)
	if err := nodes[3].dht.Set(ctx, desc, 0, v); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(3 * time.Second)
	for {
		select {
		case c := <-ch:
			if sameValue(c.Value, v) {
				return
			}
		case <-deadline:
			t.Fatal("no change within 3 s of a write elsewhere")
		}
	}
}
