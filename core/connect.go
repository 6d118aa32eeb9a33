package core

import (
	"context"
	"time"
)

// Entering the network, behind Start. Start returns once the endpoint
// listens; connect then runs the DHT bootstrap through Options.Bootstrap
// and the saved contacts (contacts.go). The bootstrap pings every contact
// and looks up the node's own ID, so the contacts that do not answer are
// marked dead and skipped by the lookups that follow; that first attempt
// ending (however it ended) closes b.booted, which the operations that
// need the network wait for (waitBooted). While no contact answers the
// bootstrap is retried, bootstrapRetryMin apart at first and then twice as
// long each time, up to bootstrapRetryMax, until a node answers or calls
// (an inbound request puts its sender in the routing table at once).

// Bounds of connect's work.
const (
	bootstrapTimeout  = 10 * time.Second
	bootstrapRetryMin = 5 * time.Second
	bootstrapRetryMax = time.Minute
)

// connect is Start's background work of entering the network; hasBoot
// tells whether there were any contacts to bootstrap through.
func (b *Backend) connect(hasBoot bool) {
	defer b.wg.Done()
	if !hasBoot {
		close(b.booted) // the first node: nothing to wait for
		return
	}
	retry := bootstrapRetryMin
	for first := true; ; first = false {
		err := b.bootstrapOnce()
		if first {
			close(b.booted)
		}
		if err == nil {
			b.saveContacts()
			return
		}
		if b.ctx.Err() != nil || b.reached() {
			return
		}
		b.log.Info("bootstrap: no contact answered; retrying", "in", retry, "err", err)
		if !sleepCtx(b.ctx, retry) || b.reached() {
			return
		}
		retry = min(2*retry, bootstrapRetryMax)
	}
}

func (b *Backend) bootstrapOnce() error {
	ctx, cancel := context.WithTimeout(b.ctx, bootstrapTimeout)
	defer cancel()
	return b.dht.Bootstrap(ctx)
}

// reached reports whether a node reached this one by itself (a failed
// bootstrap leaves in the routing table only the nodes that answered or
// called): the DHT's own table refresh then keeps it in the network.
func (b *Backend) reached() bool {
	if len(b.dht.Contacts()) == 0 {
		return false
	}
	b.log.Info("bootstrap: reached by a node; the table refresh takes over")
	b.saveContacts()
	return true
}

// waitBooted waits until the first bootstrap attempt has ended, ctx ends
// or the node closes, whichever comes first. The caller then goes on
// either way: its own work fails by its context if it must.
func (b *Backend) waitBooted(ctx context.Context) {
	select {
	case <-b.booted:
	case <-ctx.Done():
	case <-b.ctx.Done():
	}
}

// isBooted reports whether the first bootstrap attempt has ended.
func (b *Backend) isBooted() bool {
	select {
	case <-b.booted:
		return true
	default:
		return false
	}
}
