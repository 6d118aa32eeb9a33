package dht

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/zeebo/blake3"
)

// Placement and repair (docs/dht.md has the rules and intervals):
//
//   - a record lives on the R nodes nearest to its key;
//   - every ReplicateInterval each node, for each record it is among the R
//     nearest to (by a fresh lookup), INSPECTs the other R-1 and sends each
//     the values it lacks or has stale, and fetches the values it has
//     better (so holders converge, partitions included);
//   - every RepublishInterval a node does the same for the records it wrote,
//     refreshing them;
//   - a node that joins sends HANDOFF to its neighbours, who send it the
//     records it is now among the R nearest to;
//   - a record nobody refreshed for Expiry is dropped by its holders.

// maxParallelRecords bounds the records one sweep works on at once.
const maxParallelRecords = 4

// spawn runs fn in a goroutine that Close waits for; it reports false (and
// runs nothing) once the DHT is closed.
func (d *DHT) spawn(fn func()) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		fn()
	}()
	return true
}

// maintain starts the periodic loops.
func (d *DHT) maintain() {
	defer d.bg.Done()
	d.every(d.opts.ReplicateInterval, nil, func(ctx context.Context) {
		if err := d.Replicate(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("replication sweep", "err", err)
		}
		if err := d.Expire(); err != nil {
			d.log.Warn("expire records", "err", err)
		}
		d.expireWatches()
	})
	d.every(d.opts.RepublishInterval, nil, func(ctx context.Context) {
		if err := d.Republish(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("republish", "err", err)
		}
	})
	d.every(d.opts.RefreshInterval, nil, func(ctx context.Context) {
		d.refresh(ctx)
	})
	d.spawn(d.queueLoop)
}

// every runs fn every interval (the first time after a random 50-100% of
// it, so nodes started together do not work in step) and whenever kick
// fires, until Close. A negative interval disables the timer.
func (d *DHT) every(interval time.Duration, kick <-chan struct{}, fn func(ctx context.Context)) {
	d.spawn(func() {
		var tc <-chan time.Time
		var t *time.Timer
		if interval > 0 {
			t = time.NewTimer(interval/2 + rand.N(interval/2+1))
			defer t.Stop()
			tc = t.C
		}
		for {
			select {
			case <-d.ctx.Done():
				return
			case <-tc:
				fn(d.ctx)
				t.Reset(interval)
			case <-kick:
				fn(d.ctx)
			}
		}
	})
}

// refresh re-runs the self-lookup (Kademlia's bucket refresh) and looks
// up an ID in each far bucket left empty (refreshFar), or
// Bootstrap when the table has emptied (every contact failed: the network
// was gone).
func (d *DHT) refresh(ctx context.Context) {
	if d.table.size() == 0 {
		d.Bootstrap(ctx)
		return
	}
	if _, err := d.closest(ctx, "refresh", d.self.ID, d.opts.K); err != nil {
		d.log.Debug("refresh", "err", err)
	}
	d.refreshFar(ctx)
}

// Replicate runs one replication sweep now: for every record this node
// stores and is among the R nearest to, or was sent to hold (STORE) while
// not its writer, the other R nearest are brought
// up to date (INSPECT, then STORE of what they lack, GET of what they have
// better). The maintenance loop runs it every Options.ReplicateInterval;
// it is exported for tests, benchmarks and operators. It returns the first
// store error, or the context's.
func (d *DHT) Replicate(ctx context.Context) error {
	return d.sweep(ctx, false)
}

// Republish re-sends now every record this node wrote (Set) to its R
// nearest nodes, refreshing it there. The maintenance loop runs it every
// Options.RepublishInterval.
func (d *DHT) Republish(ctx context.Context) error {
	return d.sweep(ctx, true)
}

func (d *DHT) sweep(ctx context.Context, republish bool) error {
	keys, err := d.localKeys()
	if err != nil {
		return err
	}
	sem := make(chan struct{}, maxParallelRecords)
	var wg sync.WaitGroup
	for _, k := range keys {
		if republish && !d.published(k) {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d.replicateRecord(ctx, k, republish)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// replicateRecord brings the R nearest nodes to k up to date with this
// node's copy, if this node is one of them, holds k for the DHT (it was
// sent k to store), or republish is set.
func (d *DHT) replicateRecord(ctx context.Context, k key.RecordKey, republish bool) {
	desc, err := d.localDesc(k)
	if err != nil || desc == nil {
		return
	}
	isSelf := func(c Contact) bool { return c.ID == d.self.ID }
	// A record this node was sent to hold (STORE, from its writer or a
	// replicating holder) has a refresh time; a copy it only read has
	// none. A held record is handed on to the R nearest even when this
	// node is not among them: a write whose lookup met near nodes too
	// slow to answer (an overloaded moment) lands farther out, where
	// readers do not look, and only its holders can move it in (bench
	// dht at 400 nodes on 2 cores: 1 record in 1000 held at ranks
	// 96-103 and missed by every reader, before and after the sweep).
	// Its writer's own copy is left to Republish.
	refreshed := d.refreshed(k)
	held := !refreshed.IsZero() && !d.published(k)
	// The routing table knows this node's neighbourhood well: if by the
	// table this node is far from being among the R nearest (2R), a copy
	// it only read is a reader's, and no lookup is spent on it.
	if !republish && !held && !slices.ContainsFunc(d.holders(k, d.table.closest(k, 2*d.opts.R, d.self.ID), 2*d.opts.R), isSelf) {
		return
	}
	near, err := d.closest(ctx, "replicate", k, d.opts.R)
	if err != nil {
		return
	}
	holders := d.holders(k, near, d.opts.R)
	if !republish && !held && !slices.ContainsFunc(holders, isSelf) {
		return
	}
	if !republish && !refreshed.IsZero() && time.Since(refreshed) > d.opts.Expiry {
		return // expired: Expire drops it
	}
	if republish {
		refreshed = time.Now()
		if err := d.bumpRefreshed(k, refreshed); err != nil {
			d.log.Warn("refresh record", "record", k.String(), "err", err)
		}
	}
	var wg sync.WaitGroup
	for _, c := range holders {
		if c.ID == d.self.ID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.syncTo(ctx, c, k, desc, refreshed); err != nil {
				d.log.Debug("replicate", "record", k.String(), "peer", c.ID.String(), "err", err)
			}
		}()
	}
	wg.Wait()
}

// syncTo compares c's copy of record k with this node's (INSPECT, once
// more if it ran out RPCTimeout: callAgain), sends c the values it lacks
// or has worse, and takes from c the values it has better. Only differing
// values move.
func (d *DHT) syncTo(ctx context.Context, c Contact, k key.RecordKey, desc *record.Descriptor, refreshed time.Time) error {
	resp, err := d.callAgain(ctx, c, &request{Op: opInspect, Target: k[:], Refreshed: unixTime(refreshed)})
	if err != nil {
		return err
	}
	if resp.Code != codeOK {
		return &RemoteError{Peer: c.ID, Code: resp.Code, Msg: resp.Msg}
	}
	theirs := map[uint32]wireSeq{}
	for _, s := range resp.Seqs {
		// A seq above record.MaxSeq is one no node may store (a holder
		// kept it from before the limit): c lacks a valid value there.
		if len(s.Hash) == 32 && s.Subkey < desc.SubkeyCount() && s.Seq <= record.MaxSeq {
			theirs[s.Subkey] = s
		}
	}
	local, err := d.localValues(k)
	if err != nil {
		return err
	}
	descEnc, err := record.EncodeDescriptor(desc)
	if err != nil {
		return err
	}
	store := func(sk uint32, v *record.Value) error {
		req := &request{Op: opStore, Target: k[:], Subkey: sk, Desc: descEnc, Refreshed: unixTime(refreshed)}
		if v != nil {
			if req.Value, err = record.EncodeValue(v); err != nil {
				return err
			}
		}
		resp, err := d.storeTo(ctx, c, req)
		if err != nil {
			return err
		}
		if resp.Code == codeStale {
			if cur, err := record.DecodeValue(resp.Value); err == nil {
				d.acceptFrom(k, desc, sk, cur, time.Time{}, nil)
			}
			return nil
		}
		if resp.Code != codeOK {
			return &RemoteError{Peer: c.ID, Code: resp.Code, Msg: resp.Msg}
		}
		d.m.Replicated.Inc()
		return nil
	}
	var errs []error
	if !resp.Has && len(local) == 0 {
		errs = append(errs, store(0, nil))
	}
	// In subkey order: a membership-checked record's list (subkey 0)
	// reaches a holder before the slots it checks.
	for _, sk := range slices.Sorted(maps.Keys(local)) {
		v := local[sk]
		if t, ok := theirs[sk]; ok && !beatsSeq(v, t) {
			continue
		}
		errs = append(errs, store(sk, v))
	}
	for sk, t := range theirs {
		if v := local[sk]; v != nil && !seqBeats(t, v) {
			continue
		}
		// c has a better value: fetch it.
		gr, err := d.call(ctx, c, &request{Op: opGet, Target: k[:], Subkey: sk})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if gr.Code != codeOK || gr.Value == nil {
			continue
		}
		v, err := record.DecodeValue(gr.Value)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := d.acceptFrom(k, desc, sk, v, time.Time{}, nil); err != nil && !errors.Is(err, ErrStale) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// beatsSeq reports whether v wins (record.Better) over the value INSPECT
// described as t.
func beatsSeq(v *record.Value, t wireSeq) bool {
	if v.Seq != t.Seq {
		return v.Seq > t.Seq
	}
	h := blake3.Sum256(v.Data)
	return bytes.Compare(h[:], t.Hash) < 0
}

// seqBeats reports whether the value INSPECT described as t wins over v.
func seqBeats(t wireSeq, v *record.Value) bool {
	if v.Seq != t.Seq {
		return t.Seq > v.Seq
	}
	h := blake3.Sum256(v.Data)
	return bytes.Compare(t.Hash, h[:]) < 0
}

// Expire drops every record not written by this node that nobody refreshed
// for Options.Expiry. Records stored before refresh times were kept are
// stamped now. The maintenance loop runs it after each replication sweep.
func (d *DHT) Expire() error {
	keys, err := d.localKeys()
	if err != nil {
		return err
	}
	now := time.Now()
	for _, k := range keys {
		if d.published(k) {
			continue
		}
		r := d.refreshed(k)
		if r.IsZero() {
			if err := d.bumpRefreshed(k, now); err != nil {
				return err
			}
			continue
		}
		if now.Sub(r) > d.opts.Expiry {
			if err := d.dropRecord(k); err != nil {
				return err
			}
			d.quota.release(k)
			d.m.Expired.Inc()
			d.log.Debug("record expired", "record", k.String(), "refreshed", r)
		}
	}
	return nil
}

// askHandoff sends HANDOFF to each of near, so that they send this node
// the records it is now among the R nearest to.
func (d *DHT) askHandoff(ctx context.Context, near []Contact) {
	var wg sync.WaitGroup
	for _, c := range near {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := d.call(ctx, c, &request{Op: opHandoff})
			if err == nil && resp.Count > 0 {
				d.log.Debug("hand-off", "from", c.ID.String(), "records", resp.Count)
			}
		}()
	}
	wg.Wait()
}

// serveHandoff answers HANDOFF from peer: it lists the records this node
// holds that peer is among the R nearest to (by this node's routing table)
// and sends them to peer in the background. At most 4 hand-offs run at
// once; a request beyond that gets count 0 (the replication sweep covers
// it later). A client (which holds nothing for others) gets count 0.
func (d *DHT) serveHandoff(peer transport.Peer, client bool) *response {
	to := Contact{ID: peer.ID, Addr: peer.Addr}
	if client || to.validate() != nil {
		return &response{}
	}
	select {
	case d.handoffs <- struct{}{}:
	default:
		return &response{}
	}
	keys, err := d.localKeys()
	if err != nil {
		<-d.handoffs
		return &response{Code: codeInternal, Msg: "list records"}
	}
	var send []key.RecordKey
	for _, k := range keys {
		near := d.table.closest(k, d.opts.R, to.ID)
		near = append(near, to, d.self)
		sortByDistance(k, near)
		if slices.ContainsFunc(near[:min(d.opts.R, len(near))], func(c Contact) bool { return c.ID == to.ID }) {
			send = append(send, k)
		}
	}
	if len(send) == 0 || !d.spawn(func() {
		defer func() { <-d.handoffs }()
		for _, k := range send {
			desc, err := d.localDesc(k)
			if err != nil || desc == nil {
				continue
			}
			if err := d.syncTo(d.ctx, to, k, desc, d.refreshed(k)); err != nil {
				d.log.Debug("hand-off", "record", k.String(), "peer", to.ID.String(), "err", err)
			}
			if d.ctx.Err() != nil {
				return
			}
		}
	}) {
		<-d.handoffs
		return &response{}
	}
	return &response{Count: uint32(len(send))}
}
