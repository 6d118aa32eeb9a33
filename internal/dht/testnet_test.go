package dht

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
)

// testNode is one node of a loopback test network: a real QUIC endpoint on
// 127.0.0.1, a real Pebble store in a temp dir, and its DHT.
type testNode struct {
	t    testing.TB
	dir  string
	kp   key.Keypair
	ep   *transport.Endpoint
	db   *store.DB
	dht  *DHT
	addr string // listen address, kept across restarts
	down bool
}

// startTestNode starts a node with identity kp on listen ("" = any port)
// and store dir, bootstrapping through boot (none: it is the first node).
func startTestNode(t testing.TB, dir string, kp key.Keypair, listen string, boot []Contact) *testNode {
	t.Helper()
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ep, err := transport.Listen(transport.Options{Identity: kp, ListenAddr: listen})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		ep.Close()
		t.Fatalf("store: %v", err)
	}
	d, err := New(Options{Endpoint: ep, Store: db, Bootstrap: boot, RPCTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, dir: dir, kp: kp, ep: ep, db: db, dht: d, addr: ep.LocalAddr().String()}
	t.Cleanup(n.stop)
	if len(boot) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap %s: %v", n.dht.Self(), err)
		}
	}
	return n
}

// stop closes the node's DHT, endpoint and store.
func (n *testNode) stop() {
	if n.down {
		return
	}
	n.down = true
	n.dht.Close()
	n.ep.Close()
	if err := n.db.Close(); err != nil {
		n.t.Errorf("close store: %v", err)
	}
}

// restart stops the node and starts it again with the same identity,
// address and store directory.
func (n *testNode) restart(boot []Contact) *testNode {
	n.t.Helper()
	n.stop()
	return startTestNode(n.t, n.dir, n.kp, n.addr, boot)
}

// newTestNet builds an n-node network on loopback, every node bootstrapped
// from node 0, each in turn.
func newTestNet(t testing.TB, n int) []*testNode {
	t.Helper()
	base := t.TempDir()
	nodes := []*testNode{startTestNode(t, filepath.Join(base, "0"), key.NewKeypair(), "", nil)}
	for i := 1; i < n; i++ {
		nodes = append(nodes, startTestNode(t, filepath.Join(base, strconv.Itoa(i)), key.NewKeypair(), "", []Contact{nodes[0].dht.Self()}))
	}
	return nodes
}
