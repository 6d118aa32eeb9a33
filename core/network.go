package core

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/tunnel"
)

// The node's network half, apart from its store: the QUIC endpoint, the
// DHT over it, the relay protocol, and every goroutine that works the
// network (entering it, watches, republishing, reachability checks, the
// backup loop). Start builds one netRun; Pause tears it down, so a paused
// node holds no socket, no timer and no goroutine of its own that wakes,
// and Resume builds the next one. Between them the store, the groups, the
// event subscriptions and the closed run's DHT stay: reads of what the
// node knows and writes to its own repos (queued for publication) go on.

// netRun is one period of the node on the network, from Start or Resume
// to Pause or Close.
type netRun struct {
	ctx    context.Context // cancelled when the run ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // the run's goroutines (spawn)
	ep     *transport.Endpoint
	dht    *dht.DHT
	relay  *tunnel.Relay
	booted chan struct{} // closed when the first bootstrap attempt ends (connect.go)
	// netChanged asks the network watch to redial and republish
	// (Backend.NetworkChanged).
	netChanged chan struct{}
}

// ErrPaused is returned by operations that need the network while the
// node is paused (Backend.Pause).
var ErrPaused = errors.New("node paused")

// run returns the current (or, while paused or closed, the last) network
// run; nil before Start.
func (b *Backend) run() *netRun { return b.netp.Load() }

// curDHT returns the DHT of the current run (nil before Start). While the
// node is paused it is the last run's, closed: it still reads the records
// this node holds and queues its own writes.
func (b *Backend) curDHT() *dht.DHT {
	if r := b.run(); r != nil {
		return r.dht
	}
	return nil
}

// curEP returns the endpoint of the current run (nil before Start; closed
// while paused).
func (b *Backend) curEP() *transport.Endpoint {
	if r := b.run(); r != nil {
		return r.ep
	}
	return nil
}

// runCtx returns the context of the current run, cancelled when it ends.
func (b *Backend) runCtx() context.Context {
	if r := b.run(); r != nil {
		return r.ctx
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// spawn runs f in a goroutine of the current run, with the run's context;
// Pause and Close wait for it. It reports false, and runs nothing, when
// the node is not on the network (before Start, paused, closing).
func (b *Backend) spawn(f func(ctx context.Context)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.spawnLocked(f)
}

// spawnLocked is spawn with b.mu held.
func (b *Backend) spawnLocked(f func(ctx context.Context)) bool {
	r := b.run()
	if r == nil || b.offNet {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f(r.ctx)
	}()
	return true
}

// online returns ErrNotStarted before Start, ErrPaused while paused.
func (b *Backend) online() error {
	if err := b.started(); err != nil {
		return err
	}
	if b.Paused() {
		return ErrPaused
	}
	return nil
}

// Paused reports whether the node is paused (Pause).
func (b *Backend) Paused() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.paused
}

// Pause takes the node off the network, for an app going to the
// background: it stops the republisher, removes the node's tunnel
// descriptors from its repos (at most shutdownTimeout, 3 s, and only if
// it reached the network), saves its DHT contacts, stops every goroutine,
// loop and timer of the run (entering the network, watches and their
// renewals, the DHT's maintenance and publication queue, reachability
// checks, relay reservations, the backup loop, idle tunnels) and closes
// every connection and the UDP socket: peers see a clean shutdown, and
// nothing of the node wakes while it is paused.
//
// While paused, what needs only the store still works: listings from the
// collections the node last verified, reads of local files, adds and
// deletes in its own repos (their publication queued), event
// subscriptions. What needs the network (a join, a group's creation, a
// download) fails with ErrPaused. Pause on a paused node does nothing;
// before Start it is ErrNotStarted. Call Resume to come back.
func (b *Backend) Pause() error {
	b.life.Lock()
	defer b.life.Unlock()
	b.mu.Lock()
	closed, paused := b.closed, b.paused
	b.mu.Unlock()
	switch {
	case closed:
		return errors.New("core: Pause after Close")
	case b.run() == nil:
		return ErrNotStarted
	case paused:
		return nil
	}
	b.stopNet(true)
	b.log.Info("node paused")
	return nil
}

// Resume puts a paused node back on the network: it listens again on the
// address it had (its port, so peers' contacts stay good; another if that
// is taken) and returns as soon as it does, as Start. Behind it the node
// re-enters the DHT through its saved contacts, sends the publications
// queued while paused, republishes its tunnel descriptors (each told as
// a publication.state event, record "tunnel") and re-establishes its
// watches. Resume on a node that is not paused does nothing; ctx is not
// used after it returns. On an error the node stays paused.
func (b *Backend) Resume(ctx context.Context) error {
	b.life.Lock()
	defer b.life.Unlock()
	b.mu.Lock()
	paused := b.paused && !b.closed
	b.mu.Unlock()
	if !paused {
		return nil
	}
	if err := b.startNet(b.curEP().LocalAddr().String()); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	b.log.Info("node resumed")
	return nil
}
