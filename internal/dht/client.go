package dht

import (
	"context"
	"errors"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// Client mode (docs/dht.md, "Client mode"): a node that others cannot dial
// (behind NAT, found so by a dial-back check) still reads, writes and
// watches, but marks every request and response it sends with the client
// flag. Other nodes then keep it out of their routing tables and closer
// lists, never count it as a holder, and push watch changes to it only over
// a connection it keeps open. A client counts only other nodes as holders
// of records (it is not one itself), asks no one for a hand-off and runs no
// replication sweep of reader copies; it still republishes what it wrote.

// clientTTL is how long a node remembers that a peer said it is a client
// (a request or response without the flag forgets it at once).
const clientTTL = 10 * time.Minute

// maxClientsKept bounds the remembered clients; past it, expired entries
// are swept and, if still full, the new one is not remembered (the flag on
// each message still keeps the client out of the table).
const maxClientsKept = 4096

// SetClient turns client mode on or off (Options.Client sets it at New).
// On a change it runs a lookup of this node's own ID in the background, so
// that its nearest nodes, which see the flag (or its absence), drop it from
// or add it to their routing tables without waiting for the next refresh.
func (d *DHT) SetClient(on bool) {
	if d.client.Swap(on) == on {
		return
	}
	d.log.Info("dht client mode", "on", on)
	d.spawn(func() {
		ctx, cancel := context.WithTimeout(d.ctx, 4*d.opts.RPCTimeout)
		defer cancel()
		if _, err := d.closest(ctx, "refresh", d.self.ID, d.opts.K); err != nil {
			d.log.Debug("self-lookup after client mode change", "err", err)
		}
	})
}

// Client reports whether this node is in client mode.
func (d *DHT) Client() bool { return d.client.Load() }

// noteClient records what a message from id said about client mode: a
// client is removed from the routing table and remembered for clientTTL.
func (d *DHT) noteClient(id key.NodeID, client bool) {
	if client {
		d.table.remove(id)
	}
	d.clientMu.Lock()
	defer d.clientMu.Unlock()
	if !client {
		delete(d.clients, id)
		return
	}
	now := time.Now()
	if len(d.clients) >= maxClientsKept {
		for x, t := range d.clients {
			if now.Sub(t) > clientTTL {
				delete(d.clients, x)
			}
		}
		if len(d.clients) >= maxClientsKept {
			return
		}
	}
	d.clients[id] = now
}

// isClient reports whether id said it was a client within clientTTL.
func (d *DHT) isClient(id key.NodeID) bool {
	d.clientMu.Lock()
	defer d.clientMu.Unlock()
	t, ok := d.clients[id]
	return ok && time.Since(t) < clientTTL
}

// errClientPeer: a lookup asked a node that answered as a client; it is not
// a holder and gives no closer contacts, so the lookup leaves it out.
var errClientPeer = errors.New("dht: peer is in client mode")
