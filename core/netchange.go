package core

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"time"
)

// Network changes: when the machine's addresses change (a phone moving
// from Wi-Fi to mobile data), the node's connections are bound to a path
// that may be gone and its tunnel descriptors name addresses peers can no
// longer dial. watchNetwork notices, without polling faster than once a
// minute: on Linux it subscribes to the kernel's address and route
// notifications (a netlink socket, netchange_linux.go) and reads them
// blocked, waking only when the kernel tells of a change; elsewhere, and
// on Android, where apps may not bind netlink sockets (docs/ffi.md, "How
// a phone lists its addresses"), it compares the addresses every
// addrPoll. On a change of the address set it closes every connection
// (transport.DisconnectAll), enters the DHT again through its contacts
// (redialling them from the new addresses), and republishes its tunnel
// descriptors if they changed; the watches' holders reach it again over
// the new connections. An app that hears of network changes itself can
// say so with NetworkChanged.

// Bounds of the network watch.
const (
	// addrPoll is how often addresses are compared where the kernel does
	// not tell of changes.
	addrPoll = time.Minute
	// addrSettle lets a burst of notifications (an address removed, one
	// added, routes following) settle into one change.
	addrSettle = 200 * time.Millisecond
)

// watchNetwork runs for the network run r until ctx ends.
func (b *Backend) watchNetwork(ctx context.Context, r *netRun) {
	notes, err := watchAddrs(ctx)
	if notes != nil {
		src := notes
		defer func() {
			for range src { // its reader ends with ctx
			}
		}()
	}
	var tick <-chan time.Time
	startPoll := func() {
		t := time.NewTicker(addrPoll)
		context.AfterFunc(ctx, func() { t.Stop() })
		tick = t.C
	}
	if err != nil {
		b.log.Debug("address changes: the kernel does not tell; comparing every minute", "err", err)
		startPoll()
	}
	last := addrSet()
	for {
		forced := false
		select {
		case <-ctx.Done():
			return
		case _, ok := <-notes:
			if !ok {
				if ctx.Err() != nil {
					return
				}
				b.log.Warn("address changes: kernel notifications ended; comparing every minute")
				notes = nil
				startPoll()
				continue
			}
		case <-tick:
		case <-r.netChanged:
			forced = true
		}
		if !sleepCtx(ctx, addrSettle) {
			return
		}
		drain(notes)
		now := addrSet()
		if drain(r.netChanged) {
			forced = true
		}
		if slices.Equal(now, last) && !forced {
			continue
		}
		b.log.Info("network changed: redialling and republishing", "addrs", now, "was", last)
		last = now
		b.networkChanged(ctx, r)
	}
}

// networkChanged redials and republishes after the addresses changed.
func (b *Backend) networkChanged(ctx context.Context, r *netRun) {
	n := r.ep.DisconnectAll()
	b.log.Debug("network changed: connections closed", "n", n)
	// What peers observed of the old path says nothing of the new one:
	// the descriptor drops it until a dial-back check tells again.
	b.rs.mu.Lock()
	b.rs.reach = Reachability{}
	clear(b.rs.observed)
	b.rs.mu.Unlock()
	signal(b.rs.recheck)
	signal(b.rs.changed) // the republisher compares the descriptor with the last it wrote
	if err := bootstrapOnce(ctx, r); err != nil && ctx.Err() == nil {
		b.log.Info("network changed: no contact answered yet", "err", err)
	}
}

// NetworkChanged tells the node that the device's network changed, for
// an app that hears of it from the platform (Android's
// ConnectivityManager, iOS's NWPathMonitor) where the node cannot: it
// redials and republishes as when it notices a change itself. It does
// nothing while paused or before Start.
func (b *Backend) NetworkChanged() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.run(); r != nil && !b.offNet {
		signal(r.netChanged)
	}
}

// drain empties c without blocking and reports whether it held anything.
func drain(c <-chan struct{}) bool {
	got := false
	for {
		select {
		case <-c:
			got = true
		default:
			return got
		}
	}
}

// addrSet returns the machine's unicast addresses, link-local and
// loopback left out, sorted: what a change of network changes.
func addrSet() []string {
	ifaddrs, _ := interfaceAddrs()
	var out []string
	for _, a := range ifaddrs {
		pn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(pn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			continue
		}
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}
