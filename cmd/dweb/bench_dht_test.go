package main

import (
	"context"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/dht/dhtsim"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

// TestBenchFlushQueues: the bench sends the writes its Sets queued before
// the reads (the nodes run no queue timers), and counts the ones that no
// pass could send: here, those of a node that knows no other.
func TestBenchFlushQueues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sim, err := dhtsim.New(dhtsim.Options{Seed: 7, RTTMedian: 5 * time.Millisecond, MaxRTT: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	opts := dht.Options{RPCTimeout: 2 * time.Second, ReplicateInterval: -1, RepublishInterval: -1, RefreshInterval: -1, QueueRetry: -1}
	var nodes []*benchNode
	start := func(boot []dht.Contact) *benchNode {
		o := opts
		o.Bootstrap = boot
		nd, err := sim.StartNode(false, o)
		if err != nil {
			t.Fatal(err)
		}
		n := &benchNode{db: nd.DB, d: nd.DHT, sim: nd}
		t.Cleanup(n.close)
		nodes = append(nodes, n)
		return n
	}
	first := start(nil)
	for range 3 {
		if err := start([]dht.Contact{first.d.Self()}).d.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Two writers that know no one: their Sets queue.
	writer, lone := start(nil), start(nil)
	write := func(n *benchNode) benchRec {
		owner := key.NewKeypair()
		desc, err := record.NewDescriptor(owner, record.Schema{OwnerSubkeys: 1})
		if err != nil {
			t.Fatal(err)
		}
		v, err := record.NewValue(desc.Key(), 0, 1, []byte("queued"), owner)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.d.Set(ctx, desc, 0, v); err != nil {
			t.Fatal(err)
		}
		if p := n.d.Pending(); p != 1 {
			t.Fatalf("Pending = %d after an offline Set, want 1", p)
		}
		return benchRec{owner, desc, v}
	}
	r, _ := write(writer), write(lone)
	// The writer learns of the network without a Bootstrap (which would
	// wake its queue): only the bench's passes send its write.
	writer.d.AddContacts(first.d.Self())

	left, err := benchFlushQueues(ctx, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if left != 1 || writer.d.Pending() != 0 || lone.d.Pending() != 1 {
		t.Fatalf("left %d (writer %d, lone %d), want 1 (0, 1)", left, writer.d.Pending(), lone.d.Pending())
	}
	for i, n := range nodes[:4] {
		if _, v, err := n.d.GetLocal(ctx, r.desc.Key(), 0); err != nil || v == nil || v.Seq != r.val.Seq {
			t.Errorf("node %d does not hold the flushed write: %v, %v", i, v, err)
		}
	}
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := benchFlushQueues(cctx, nodes); err == nil {
		t.Fatal("benchFlushQueues with a cancelled context: no error")
	}
}
