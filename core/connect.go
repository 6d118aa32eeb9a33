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

// connect is the background work of entering the network of run r (Start,
// Resume), until ctx ends; hasBoot tells whether there were any contacts
// to bootstrap through.
func (b *Backend) connect(ctx context.Context, r *netRun, hasBoot bool) {
	if !hasBoot {
		close(r.booted) // the first node: nothing to wait for
		return
	}
	retry := bootstrapRetryMin
	for first := true; ; first = false {
		err := bootstrapOnce(ctx, r)
		if first {
			close(r.booted)
		}
		if err == nil {
			b.saveContacts()
			return
		}
		if ctx.Err() != nil || b.reached() {
			return
		}
		b.log.Info("bootstrap: no contact answered; retrying", "in", retry, "err", err)
		if !sleepCtx(ctx, retry) || b.reached() {
			return
		}
		retry = min(2*retry, bootstrapRetryMax)
	}
}

func bootstrapOnce(ctx context.Context, r *netRun) error {
	ctx, cancel := context.WithTimeout(ctx, bootstrapTimeout)
	defer cancel()
	return r.dht.Bootstrap(ctx)
}

// reached reports whether a node reached this one by itself (a failed
// bootstrap leaves in the routing table only the nodes that answered or
// called): the DHT's own table refresh then keeps it in the network.
func (b *Backend) reached() bool {
	if len(b.curDHT().Contacts()) == 0 {
		return false
	}
	b.log.Info("bootstrap: reached by a node; the table refresh takes over")
	b.saveContacts()
	return true
}

// waitBooted waits until the first bootstrap attempt of the current run
// has ended, ctx ends or the run ends (the node pauses or closes),
// whichever comes first. The caller then goes on either way: its own
// work fails by its context if it must.
func (b *Backend) waitBooted(ctx context.Context) {
	r := b.run()
	select {
	case <-r.booted:
	case <-ctx.Done():
	case <-r.ctx.Done():
	}
}

// isClosed reports whether c is closed.
func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
