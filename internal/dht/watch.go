package dht

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
)

// Watches (after Veilid's WatchValue): a reader asks the R nearest holders
// of a record to push changes of chosen subkeys for a lease. A holder that
// stores a better value of a watched subkey sends VALUE_CHANGED to the
// watcher over a new stream. The watcher renews the lease every
// Options.WatchRenew with a fresh lookup of the holders; each renewal
// answer carries the holder's seqs, so a watcher that missed pushes (a
// holder died, a push was dropped) sees a newer seq and re-reads the
// subkey with Get.

// maxServedWatches bounds the watches one node serves in total.
const maxServedWatches = 1 << 16

// Change is one new value of a watched subkey, verified against the
// record's descriptor and better (record.Better) than any value delivered
// before for that subkey.
type Change struct {
	Key    key.RecordKey
	Subkey uint32
	Value  *record.Value
}

// watchRef names a served watch: the watcher and its watch ID.
type watchRef struct {
	peer key.NodeID
	id   uint64
}

// served is a watch this node serves to another.
type served struct {
	charge  rcmgr.Charge // in d.watchQ
	to      Contact
	subkeys map[uint32]bool // nil: all
	expires time.Time
}

// watcher is one of this node's own watches.
type watcher struct {
	id   uint64
	k    key.RecordKey
	subs []uint32        // as asked; nil: all
	want map[uint32]bool // nil: all

	mu      sync.Mutex
	last    map[uint32]*record.Value // best value delivered (or known at start), by subkey
	pending map[uint32]*record.Value // to deliver
	kick    chan struct{}
	holders []Contact // holders the lease was last renewed with
	placed  int       // of holders, those that accepted it
}

// offer queues v for delivery if it is better than what was delivered.
func (w *watcher) offer(sk uint32, v *record.Value) {
	if v == nil || (w.want != nil && !w.want[sk]) {
		return
	}
	w.mu.Lock()
	if !record.Better(v, w.last[sk]) {
		w.mu.Unlock()
		return
	}
	w.last[sk] = v
	w.pending[sk] = v
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// watchRetryMin is the first wait before a watch's renewal that did not
// lease every holder it found is tried again.
const watchRetryMin = 250 * time.Millisecond

// Watch asks the R nodes nearest to record k to push changes of subkeys
// (empty: every subkey of the record) and returns the channel the changes
// arrive on. The channel first carries the watched subkeys whose value on
// the network is newer than this node's copy, then each new value as a
// holder pushes it (typically within milliseconds of the write reaching
// the holder). Changes to one subkey are coalesced when the reader is slow:
// it always gets the latest. The lease (Options.WatchLease) is renewed
// every Options.WatchRenew; on each renewal holders report their seqs and
// any subkey newer than what was delivered is re-read, so pushes missed
// while a holder died are recovered within one renewal. A renewal that
// some of the nearest holders it found refused or did not answer is tried
// again sooner, from watchRetryMin doubling up to WatchRenew, and one that
// found no other node at all (a start or resume before the network is
// back) also as soon as a node answers or calls: a watch placed before
// the network came back catches up within moments of it, not a WatchRenew
// later. The channel is
// closed when ctx ends or the DHT closes; the leases are then cancelled.
//
// Errors: ErrNotFound if the record's descriptor is not found,
// record.ErrSubkeyRange for a subkey the schema does not have, ErrBadRequest
// for more than record.MaxSubkeys subkeys.
func (d *DHT) Watch(ctx context.Context, k key.RecordKey, subkeys []uint32) (<-chan Change, error) {
	if len(subkeys) > record.MaxSubkeys {
		return nil, fmt.Errorf("%w: watch of %d subkeys, limit %d", ErrBadRequest, len(subkeys), record.MaxSubkeys)
	}
	desc, err := d.localDesc(k)
	if err != nil {
		return nil, err
	}
	if desc == nil {
		first := uint32(0)
		if len(subkeys) > 0 {
			first = subkeys[0]
		}
		if desc, _, err = d.Get(ctx, k, first); err != nil {
			return nil, fmt.Errorf("dht: watch %s: %w", k, err)
		}
	}
	w := &watcher{
		id:      rand.Uint64() | 1,
		k:       k,
		last:    map[uint32]*record.Value{},
		pending: map[uint32]*record.Value{},
		kick:    make(chan struct{}, 1),
	}
	if len(subkeys) > 0 {
		w.subs = slices.Clone(subkeys)
		slices.Sort(w.subs)
		w.subs = slices.Compact(w.subs)
		w.want = map[uint32]bool{}
		for _, sk := range w.subs {
			if sk >= desc.SubkeyCount() {
				return nil, fmt.Errorf("dht: watch %s: %w: subkey %d, record has %d", k, record.ErrSubkeyRange, sk, desc.SubkeyCount())
			}
			w.want[sk] = true
		}
	}
	local, err := d.localValues(k)
	if err != nil {
		return nil, err
	}
	for sk, v := range local {
		if w.want == nil || w.want[sk] {
			w.last[sk] = v
		}
	}
	d.watchMu.Lock()
	d.watchers[w.id] = w
	d.watchMu.Unlock()
	out := make(chan Change, 16)
	if !d.spawn(func() { d.runWatch(ctx, w, out) }) {
		d.dropWatcher(w)
		return nil, ErrClosed
	}
	return out, nil
}

func (d *DHT) dropWatcher(w *watcher) {
	d.watchMu.Lock()
	delete(d.watchers, w.id)
	d.watchMu.Unlock()
}

// runWatch renews w's leases and delivers its changes until ctx or the
// DHT ends.
func (d *DHT) runWatch(ctx context.Context, w *watcher, out chan<- Change) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()
	defer func() {
		d.dropWatcher(w)
		close(out)
		// Cancel the leases, best effort.
		w.mu.Lock()
		holders := w.holders
		w.mu.Unlock()
		if d.ctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(d.ctx, time.Second)
			defer ccancel()
			req := &request{Op: opWatch, Target: w.k[:], Watch: w.id}
			var wg sync.WaitGroup
			for _, c := range holders {
				wg.Add(1)
				go func() { defer wg.Done(); d.call(cctx, c, req) }()
			}
			wg.Wait()
		}
	}()
	renew := time.NewTimer(0)
	defer renew.Stop()
	retry := min(watchRetryMin, d.opts.WatchRenew)
	var seen <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-seen:
			// The first node since a renewal that knew none: renew now.
			seen = nil
			renew.Reset(0)
		case <-renew.C:
			found, placed := d.renewWatch(ctx, w)
			seen = nil
			switch {
			case found > 0 && placed == found:
				retry = min(watchRetryMin, d.opts.WatchRenew)
				renew.Reset(d.opts.WatchRenew)
			case found == 0:
				seen = d.nextSeen()
				fallthrough
			default:
				renew.Reset(retry)
				retry = min(2*retry, d.opts.WatchRenew)
			}
		case <-w.kick:
			w.mu.Lock()
			var batch []Change
			for sk, v := range w.pending {
				batch = append(batch, Change{Key: w.k, Subkey: sk, Value: v})
			}
			clear(w.pending)
			w.mu.Unlock()
			slices.SortFunc(batch, func(a, b Change) int { return int(a.Subkey) - int(b.Subkey) })
			for _, c := range batch {
				select {
				case out <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// Watching reports whether a watch of this node on record k holds a lease
// with another node: one that accepted it at its last renewal, whose
// newer values have been read since, so this node's copy is current and
// the changes written elsewhere reach it. A watch whose leases
// all failed (no node reachable) keeps only this node's own writes.
func (d *DHT) Watching(k key.RecordKey) bool {
	d.watchMu.Lock()
	ws := make([]*watcher, 0, len(d.watchers))
	for _, w := range d.watchers {
		if w.k == k {
			ws = append(ws, w)
		}
	}
	d.watchMu.Unlock()
	for _, w := range ws {
		w.mu.Lock()
		placed := w.placed
		w.mu.Unlock()
		if placed > 0 {
			return true
		}
	}
	return false
}

// renewWatch finds the R nearest holders of w's record, (re)places the
// lease with each, and re-reads the subkeys a holder reports newer than
// what was delivered. It returns how many other nodes it found to ask and
// how many accepted the lease.
func (d *DHT) renewWatch(ctx context.Context, w *watcher) (found, placed int) {
	near, err := d.closest(ctx, "watch", w.k, d.opts.R)
	if err != nil {
		return 0, 0
	}
	var holders []Contact
	for _, c := range d.holders(w.k, near, d.opts.R) {
		if c.ID != d.self.ID { // this node's own changes reach w directly
			holders = append(holders, c)
		}
	}
	req := &request{Op: opWatch, Target: w.k[:], Subkeys: w.subs, Watch: w.id, LeaseMS: uint32(d.opts.WatchLease / time.Millisecond)}
	var (
		mu    sync.Mutex
		newer = map[uint32]bool{}
		wg    sync.WaitGroup
	)
	for _, c := range holders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := d.call(ctx, c, req)
			if err != nil || resp.Code != codeOK {
				return
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			mu.Lock()
			defer mu.Unlock()
			placed++
			for _, s := range resp.Seqs {
				if len(s.Hash) != 32 || s.Seq > record.MaxSeq || (w.want != nil && !w.want[s.Subkey]) {
					continue
				}
				if v := w.last[s.Subkey]; v == nil || seqBeats(s, v) {
					newer[s.Subkey] = true
				}
			}
		}()
	}
	wg.Wait()
	w.mu.Lock()
	w.holders = holders
	w.mu.Unlock()
	for sk := range newer {
		_, v, err := d.Get(ctx, w.k, sk)
		if err != nil {
			d.log.Debug("watch re-read", "record", w.k.String(), "subkey", sk, "err", err)
			continue
		}
		w.offer(sk, v)
	}
	// Only now is this node's copy as new as the holders said.
	w.mu.Lock()
	w.placed = placed
	w.mu.Unlock()
	return len(holders), placed
}

// serveWatch answers WATCH: it places, renews or (lease 0) cancels peer's
// watch and reports the seqs of the watched subkeys this node holds.
func (d *DHT) serveWatch(req request, peer transport.Peer, fail func(error) *response) *response {
	t, err := target32(req.Target)
	if err != nil {
		return fail(err)
	}
	k := key.RecordKey(t)
	if len(req.Subkeys) > record.MaxSubkeys {
		return fail(fmt.Errorf("%w: watch of %d subkeys", ErrBadRequest, len(req.Subkeys)))
	}
	to := Contact{ID: peer.ID, Addr: peer.Addr}
	if req.Client {
		// A client cannot be dialled: pushes go only over a connection it
		// keeps open (OpenStream with no address uses the pooled one or
		// fails). Its renewals re-open the connection.
		to.Addr = netip.AddrPort{}
	} else if to.validate() != nil {
		return fail(fmt.Errorf("%w: watcher address unknown", ErrBadRequest))
	}
	ref := watchRef{peer.ID, req.Watch}
	lease := min(time.Duration(req.LeaseMS)*time.Millisecond, MaxWatchLease)
	d.watchMu.Lock()
	m := d.watches[k]
	old, exists := m[ref]
	if req.LeaseMS == 0 {
		if exists {
			delete(m, ref)
			d.unservedLocked(k, old)
		}
		d.watchMu.Unlock()
		return &response{}
	}
	var charge rcmgr.Charge
	if exists {
		charge = old.charge
	} else {
		if charge, err = d.watchQ.Take(peer.ID, peer.Addr.Addr()); err != nil {
			d.watchMu.Unlock()
			return fail(fmt.Errorf("%w: watches: %w", ErrQuota, err))
		}
		if m == nil {
			m = map[watchRef]*served{}
			d.watches[k] = m
		}
	}
	s := &served{charge: charge, to: to, expires: time.Now().Add(lease)}
	var want map[uint32]bool
	if len(req.Subkeys) > 0 {
		want = map[uint32]bool{}
		for _, sk := range req.Subkeys {
			want[sk] = true
		}
		s.subkeys = want
	}
	m[ref] = s
	d.watchMu.Unlock()
	resp := &response{LeaseMS: uint32(lease / time.Millisecond)}
	if has, _ := d.db.Has(descKey(k)); has {
		resp.Has = true
		if resp.Seqs, err = d.localSeqs(k, want); err != nil {
			return fail(err)
		}
	}
	return resp
}

// unservedLocked forgets served watch s of k, already deleted from
// d.watches[k] (watchMu held).
func (d *DHT) unservedLocked(k key.RecordKey, s *served) {
	if len(d.watches[k]) == 0 {
		delete(d.watches, k)
	}
	d.watchQ.Release(s.charge)
}

// expireWatches forgets the served watches whose lease ran out.
func (d *DHT) expireWatches() {
	now := time.Now()
	d.watchMu.Lock()
	defer d.watchMu.Unlock()
	for k, m := range d.watches {
		for ref, s := range m {
			if now.After(s.expires) {
				delete(m, ref)
				d.unservedLocked(k, s)
			}
		}
	}
}

// notifyWatchers tells the watchers of subkey of k, served and own, that v
// is its new value. It does not block: pushes run in the background, at
// most cap(pushSem) at once; a push that finds no room is dropped, and the
// watcher recovers it on renewal.
func (d *DHT) notifyWatchers(k key.RecordKey, subkey uint32, v *record.Value) {
	type target struct {
		to Contact
		id uint64
	}
	var targets []target
	var own []*watcher
	now := time.Now()
	d.watchMu.Lock()
	for ref, s := range d.watches[k] {
		if now.After(s.expires) {
			delete(d.watches[k], ref)
			d.unservedLocked(k, s)
			continue
		}
		if s.subkeys == nil || s.subkeys[subkey] {
			targets = append(targets, target{s.to, ref.id})
		}
	}
	for _, w := range d.watchers {
		if w.k == k {
			own = append(own, w)
		}
	}
	d.watchMu.Unlock()
	for _, w := range own {
		w.offer(subkey, v)
	}
	if len(targets) == 0 {
		return
	}
	enc, err := record.EncodeValue(v)
	if err != nil {
		return
	}
	for _, t := range targets {
		select {
		case d.pushSem <- struct{}{}:
		default:
			d.log.Debug("watch push dropped: too many in flight", "record", k.String())
			continue
		}
		if !d.spawn(func() {
			defer func() { <-d.pushSem }()
			req := &request{Op: opValueChanged, Target: k[:], Subkey: subkey, Watch: t.id, Value: enc}
			resp, err := d.call(d.ctx, t.to, req)
			if err != nil {
				return
			}
			d.m.Pushes.Inc()
			if resp.Code == codeNotFound { // the watcher has forgotten this watch
				d.watchMu.Lock()
				ref := watchRef{t.to.ID, t.id}
				if s, ok := d.watches[k][ref]; ok {
					delete(d.watches[k], ref)
					d.unservedLocked(k, s)
				}
				d.watchMu.Unlock()
			}
		}) {
			<-d.pushSem
		}
	}
}

// serveValueChanged answers VALUE_CHANGED: a holder pushes a new value of a
// subkey this node watches. The value is verified and stored locally,
// which delivers it to the watch. Unknown watches get ErrNotFound, so the
// holder drops them.
func (d *DHT) serveValueChanged(req request, peer transport.Peer, fail func(error) *response) *response {
	t, err := target32(req.Target)
	if err != nil {
		return fail(err)
	}
	k := key.RecordKey(t)
	d.watchMu.Lock()
	w, ok := d.watchers[req.Watch]
	d.watchMu.Unlock()
	if !ok || w.k != k {
		return &response{Code: codeNotFound, Msg: "no such watch"}
	}
	desc, err := d.localDesc(k)
	if err != nil || desc == nil {
		return &response{Code: codeNotFound, Msg: "no such record"}
	}
	v, err := record.DecodeValue(req.Value)
	if err != nil {
		return fail(err)
	}
	if _, err := d.acceptFrom(k, desc, req.Subkey, v, time.Time{}, nil); err != nil {
		if errors.Is(err, ErrStale) {
			return &response{}
		}
		d.log.Debug("bad push", "peer", peer.ID.String(), "record", k.String(), "err", err)
		return fail(err)
	}
	return &response{}
}
