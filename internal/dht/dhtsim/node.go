package dhtsim

import (
	"fmt"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/store"
)

var (
	_ dht.StreamEndpoint = (*Endpoint)(nil)
	_ dht.Stream         = (*stream)(nil)
)

// Node is one DHT node on a Network: its endpoint, an in-memory store
// (store.Options.Memory) and the real internal/dht code over them.
type Node struct {
	EP  *Endpoint
	DB  *store.DB
	DHT *dht.DHT
}

// StartNode puts a new node with a fresh identity on the network and
// starts a DHT on it with opts (whose Endpoint, Streams and Store are
// set here). A nat node runs in client mode (opts.Client), as core runs a
// node its reachability check finds unreachable. The node does not
// bootstrap: call DHT.Bootstrap.
func (n *Network) StartNode(nat bool, opts dht.Options) (*Node, error) {
	ep, err := n.Listen(key.NewKeypair().ID(), nat)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(fmt.Sprintf("dhtsim-%s", ep.ID()), store.Options{Memory: true})
	if err != nil {
		ep.Crash()
		return nil, err
	}
	opts.Endpoint, opts.Streams, opts.Store = nil, ep, db
	opts.Client = opts.Client || nat
	d, err := dht.New(opts)
	if err != nil {
		ep.Crash()
		db.Close()
		return nil, err
	}
	ep.SetPeerShutdown(d.PeerShutdown)
	return &Node{EP: ep, DB: db, DHT: d}, nil
}

// Crash takes the node down without a word to its peers (Endpoint.Crash)
// and frees its DHT and store.
func (nd *Node) Crash() {
	nd.EP.Crash()
	nd.DHT.Close()
	nd.DB.Close()
}

// Close shuts the node down cleanly (Endpoint.Close: its peers hear of
// it) and frees its DHT and store.
func (nd *Node) Close() {
	nd.DHT.Close()
	nd.EP.Close()
	nd.DB.Close()
}
