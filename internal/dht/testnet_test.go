package dht

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
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
	opt  func(*Options)
	mu   sync.Mutex
	down bool
}

// startTestNode starts a node with identity kp on listen ("" = any port)
// and store dir, bootstrapping through boot (none: it is the first node).
func startTestNode(t testing.TB, dir string, kp key.Keypair, listen string, boot []Contact) *testNode {
	t.Helper()
	n, err := launch(t, dir, kp, listen, boot, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// launch starts a node like startTestNode, with Options adjusted by opt
// (may be nil), and returns errors instead of failing t, so that it can
// run in parallel goroutines.
func launch(t testing.TB, dir string, kp key.Keypair, listen string, boot []Contact, opt func(*Options)) (*testNode, error) {
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ep, err := transport.Listen(transport.Options{Identity: kp, ListenAddr: listen})
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	o := Options{Endpoint: ep, Store: db, Bootstrap: boot, RPCTimeout: 3 * time.Second}
	if opt != nil {
		opt(&o)
	}
	d, err := New(o)
	if err != nil {
		ep.Close()
		db.Close()
		return nil, err
	}
	n := &testNode{t: t, dir: dir, kp: kp, ep: ep, db: db, dht: d, addr: ep.LocalAddr().String(), opt: opt}
	t.Cleanup(n.stop)
	if len(boot) > 0 {
		// Tried up to three times, as a node's start retries it
		// (core/connect.go): under the race detector on two busy cores a
		// first request can outlast a short RPCTimeout.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for try := 1; ; try++ {
			err := d.Bootstrap(ctx)
			if err == nil {
				break
			}
			if try == 3 || ctx.Err() != nil {
				return n, fmt.Errorf("bootstrap %s (%d tries): %w", n.dht.Self(), try, err)
			}
		}
	}
	return n, nil
}

// stop closes the node's DHT, endpoint and store.
func (n *testNode) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
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
	n2, err := launch(n.t, n.dir, n.kp, n.addr, boot, n.opt)
	if err != nil {
		n.t.Fatal(err)
	}
	return n2
}

// newNet builds an n-node network on loopback with Options adjusted by opt:
// node 0 first, then the others in parallel (8 at a time), each
// bootstrapping through node 0; then every
// node bootstraps once more, so that all routing tables are filled.
func newNet(t testing.TB, n int, opt func(*Options)) []*testNode {
	t.Helper()
	base := t.TempDir()
	first, err := launch(t, filepath.Join(base, "0"), key.NewKeypair(), "", nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*testNode, n)
	nodes[0] = first
	boot := []Contact{first.dht.Self()}
	errs := make([]error, n)
	par(n-1, 8, func(i int) {
		nodes[i+1], errs[i+1] = launch(t, filepath.Join(base, strconv.Itoa(i+1)), key.NewKeypair(), "", boot, opt)
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	refill(t, nodes)
	return nodes
}

// refill runs Bootstrap on every live node, in parallel, each tried up
// to three times as launch does.
func refill(t testing.TB, nodes []*testNode) {
	t.Helper()
	errs := make([]error, len(nodes))
	par(len(nodes), 8, func(i int) {
		if nodes[i].down {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for try := 1; ; try++ {
			errs[i] = nodes[i].dht.Bootstrap(ctx)
			if errs[i] == nil || try == 3 || ctx.Err() != nil {
				return
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// par runs fn(0..n-1) with at most width at once.
func par(n, width int, fn func(i int)) {
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
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

// localValueOf returns n's stored value of subkey of record k (nil: none
// stored). A store error fails the test, so nil means "not held", not
// "could not read".
func localValueOf(t testing.TB, n *testNode, k key.RecordKey, subkey uint32) *record.Value {
	t.Helper()
	v, err := n.dht.localValue(k, subkey)
	if err != nil {
		t.Fatalf("node %s: stored value of %s/%d: %v", n.dht.Self().ID, k, subkey, err)
	}
	return v
}

// localDescOf returns n's stored descriptor of record k (nil: none); a
// store error fails the test.
func localDescOf(t testing.TB, n *testNode, k key.RecordKey) *record.Descriptor {
	t.Helper()
	d, err := n.dht.localDesc(k)
	if err != nil {
		t.Fatalf("node %s: stored descriptor of %s: %v", n.dht.Self().ID, k, err)
	}
	return d
}
