// Package testnet builds networks of real dweb nodes for tests: each node
// has a QUIC endpoint on 127.0.0.1, a Pebble store in a temp dir and a DHT,
// bootstrapped through node 0. Everything is closed by t.Cleanup.
package testnet

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
)

// Node is one node of a test network.
type Node struct {
	Endpoint *transport.Endpoint
	Store    *store.DB
	DHT      *dht.DHT
	Dir      string
}

// Contact returns the node's DHT contact.
func (n *Node) Contact() dht.Contact { return n.DHT.Self() }

// New starts n nodes (n >= 1) and bootstraps nodes 1..n-1 through node 0.
func New(t testing.TB, n int) []*Node {
	t.Helper()
	dir := t.TempDir()
	nodes := make([]*Node, 0, n)
	for i := 0; i < n; i++ {
		var boot []dht.Contact
		if i > 0 {
			boot = []dht.Contact{nodes[0].Contact()}
		}
		nodes = append(nodes, Start(t, filepath.Join(dir, "node"+strconv.Itoa(i)), boot))
	}
	return nodes
}

// Start starts one node with a fresh identity and its store in dir,
// bootstrapping through boot (none: it is the first node).
func Start(t testing.TB, dir string, boot []dht.Contact) *Node {
	t.Helper()
	ep, err := transport.Listen(transport.Options{Identity: key.NewKeypair(), ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("testnet: listen: %v", err)
	}
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		ep.Close()
		t.Fatalf("testnet: store: %v", err)
	}
	d, err := dht.New(dht.Options{Endpoint: ep, Store: db, Bootstrap: boot, RPCTimeout: 3 * time.Second})
	if err != nil {
		ep.Close()
		db.Close()
		t.Fatalf("testnet: dht: %v", err)
	}
	n := &Node{Endpoint: ep, Store: db, DHT: d, Dir: dir}
	t.Cleanup(func() {
		d.Close()
		ep.Close()
		db.Close()
	})
	if len(boot) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Bootstrap(ctx); err != nil {
			t.Fatalf("testnet: bootstrap: %v", err)
		}
	}
	return n
}
