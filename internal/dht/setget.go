package dht

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

// Set and Get: a record's values written to and read from the nodes
// nearest its key, with read repair.

// holders returns the up-to-n nodes, this one included, nearest to target
// among this node and others (which must not hold this node). In client
// mode this node is never a holder: only others are returned.
func (d *DHT) holders(target [32]byte, others []Contact, n int) []Contact {
	all := slices.Clone(others)
	if !d.client.Load() {
		all = append(all, d.self)
	}
	sortByDistance(target, all)
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// Set writes v as the value of subkey of desc's record: it checks and stores
// it locally, marks the record as written by this node (so it republishes
// it every Options.RepublishInterval), then sends STORE to the other nodes
// among the R nearest to the record key (this node counts as one of them if
// it is that near). It succeeds when at least one remote holder accepted.
//
// When the routing table has no live contact left (every one failed or
// timed out), Set first bootstraps again, once (rejoin). When no other
// node can be reached (none known, or none answered), the write is kept in the store's offline queue (dhtq/, see queue.go) and Set
// returns nil: the queue is sent when the network is back (after
// Bootstrap, and every Options.QueueRetry), across restarts. Pending
// reports the queue's length.
//
// If this node or a holder already has a better value, Set returns a
// *StaleError (errors.Is ErrStale) carrying it, and keeps that value
// locally. Invalid input fails with record's errors (record.ErrBadSignature,
// ErrNotWriter, record.ErrTooLarge as a *record.LimitError, ...) or
// ErrKeyMismatch.
func (d *DHT) Set(ctx context.Context, desc *record.Descriptor, subkey uint32, v *record.Value) error {
	if desc == nil || v == nil {
		return fmt.Errorf("%w: Set needs a descriptor and a value", ErrBadRequest)
	}
	k := desc.Key()
	_, err := d.acceptFrom(k, desc, subkey, v, time.Now(), nil)
	if errors.Is(err, ErrNoList) {
		// A slot of a membership-checked record, and this node has not
		// read the list yet: read it (Get keeps it), then check again.
		if _, _, gerr := d.Get(ctx, k, 0); gerr == nil {
			_, err = d.acceptFrom(k, desc, subkey, v, time.Now(), nil)
		}
	}
	if err != nil {
		return fmt.Errorf("dht: set %s/%d: %w", k, subkey, err)
	}
	if err := d.db.Set(pubKey(k), nil, true); err != nil {
		return fmt.Errorf("dht: set %s/%d: %w", k, subkey, err)
	}
	err = d.publish(ctx, desc, subkey, v, time.Now())
	if errors.Is(err, ErrNoPeers) && d.rejoin(ctx) {
		err = d.publish(ctx, desc, subkey, v, time.Now())
	}
	if err == nil {
		d.noteWrite(k, subkey, v.Seq, WriteSent)
	}
	if err == nil || errors.Is(err, ErrStale) || ctx.Err() != nil || d.ctx.Err() != nil {
		return err
	}
	if qerr := d.enqueue(desc, subkey, v); qerr != nil {
		return errors.Join(err, qerr)
	}
	d.noteWrite(k, subkey, v.Seq, WriteQueued)
	if errors.Is(err, ErrNoPeers) {
		d.log.Info("no node reachable: write queued", "record", k.String(), "subkey", subkey, "seq", v.Seq)
		return nil
	}
	return err
}

// rejoinEvery is the least time between two rejoins of a DHT.
const rejoinEvery = 30 * time.Second

// rejoin bootstraps again (Bootstrap: from the bootstrap contacts, or
// with none from the table's stale contacts), within ctx, when the
// routing table has no live contact left, and reports whether that
// brought one back. A table empties so without this node going offline:
// on a machine overloaded for a moment every contact may run out
// RPCTimeout once and go stale (routing.go), and a lookup then has no
// one to start from. Measured: the 6 Sets of two 10,000-node
// simulations (dweb bench dht --sim) that reached no holder failed so, in
// microseconds, on nodes whose tables held one contact, stale (most
// likely their join's self-lookup timed out on it); they were queued
// until the queue's next pass, which bootstraps likewise. Reads from
// such nodes found nothing, as fast.
//
// A node that is in fact offline, or whose every peer is gone, would
// otherwise pay a Bootstrap (dials that run out RPCTimeout) on every Set
// and Get: so one rejoin runs at a time, at most once per rejoinEvery,
// and a Set or Get that finds one running, or one run recently, goes on
// without (a Set is then queued, as before; the queue's passes bootstrap
// on their own schedule).
func (d *DHT) rejoin(ctx context.Context) bool {
	if d.table.size() > 0 || ctx.Err() != nil || d.ctx.Err() != nil {
		return false
	}
	if !d.rejoinMu.TryLock() {
		return false
	}
	defer d.rejoinMu.Unlock()
	if !d.lastRejoin.IsZero() && time.Since(d.lastRejoin) < rejoinEvery {
		return false
	}
	d.lastRejoin = time.Now()
	if err := d.Bootstrap(ctx); err != nil {
		d.log.Debug("rejoin", "err", err)
		return false
	}
	return d.table.size() > 0
}

// publish sends STORE of v to the R nearest nodes to desc's record other
// than this one. It fails with ErrNoPeers when none is known or none
// accepted, with a *StaleError when a holder has a better value (which is
// then kept locally).
func (d *DHT) publish(ctx context.Context, desc *record.Descriptor, subkey uint32, v *record.Value, refreshed time.Time) error {
	k := desc.Key()
	others, err := d.closest(ctx, "set", k, d.opts.R)
	if err != nil {
		return fmt.Errorf("dht: set %s/%d: %w", k, subkey, err)
	}
	var targets []Contact
	for _, c := range d.holders(k, others, d.opts.R) {
		if c.ID != d.self.ID {
			targets = append(targets, c)
		}
	}
	if len(targets) == 0 {
		return fmt.Errorf("dht: set %s/%d: %w: no other node known", k, subkey, ErrNoPeers)
	}
	descEnc, err := record.EncodeDescriptor(desc)
	if err != nil {
		return err
	}
	valEnc, err := record.EncodeValue(v)
	if err != nil {
		return err
	}
	req := &request{Op: opStore, Target: k[:], Subkey: subkey, Desc: descEnc, Value: valEnc, Refreshed: unixTime(refreshed)}
	errs := make([]error, len(targets))
	stale := make([]*record.Value, len(targets))
	var wg sync.WaitGroup
	for i, c := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := d.storeTo(ctx, c, req)
			if err != nil {
				errs[i] = err
				return
			}
			if resp.Code == codeStale {
				cur, derr := record.DecodeValue(resp.Value)
				if derr == nil && d.verifyValue(k, desc, subkey, cur) == nil {
					stale[i] = cur
				}
			}
			if resp.Code != codeOK {
				errs[i] = &RemoteError{Peer: c.ID, Code: resp.Code, Msg: resp.Msg}
			}
		}()
	}
	wg.Wait()
	var best *record.Value
	accepted := 0
	for i := range targets {
		if errs[i] == nil {
			accepted++
		}
		if stale[i] != nil && record.Better(stale[i], best) {
			best = stale[i]
		}
	}
	if best != nil && record.Better(best, v) {
		if err := d.accept(k, desc, subkey, best); err != nil && !errors.Is(err, ErrStale) {
			d.log.Warn("keep better value", "record", k.String(), "subkey", subkey, "err", err)
		}
		return fmt.Errorf("dht: set %s/%d seq %d: %w", k, subkey, v.Seq, &StaleError{Current: best})
	}
	if accepted == 0 {
		return fmt.Errorf("dht: set %s/%d: %w: no holder accepted: %w", k, subkey, ErrNoPeers, errors.Join(errs...))
	}
	d.m.Replicated.Add(float64(accepted))
	d.log.Debug("set", "record", k.String(), "subkey", subkey, "seq", v.Seq, "accepted", accepted, "of", len(targets))
	return nil
}

// Get returns the descriptor of record k and the best value (record.Better)
// of subkey among this node and the R nodes nearest to k that answer (the
// read quorum is all of them: the lookup ends only when the R nearest it
// knows have all answered); when none of them has the record, among the K
// nearest. When no node answered and the routing table has no live
// contact left, Get bootstraps again once first (rejoin). The value is nil,
// with no error, when the record exists but no one has written subkey. It
// fails with ErrNotFound when no node answered with the descriptor. The
// descriptor and best value are kept locally, and holders near k that
// answered with a worse value or none are sent the best one (read repair).
func (d *DHT) Get(ctx context.Context, k key.RecordKey, subkey uint32) (*record.Descriptor, *record.Value, error) {
	desc, v, _, err := d.GetReached(ctx, k, subkey)
	return desc, v, err
}

// GetReached is Get that also reports whether any other node answered:
// with reached false the value is this node's own copy, possibly stale
// (its routing table was empty, or every node asked failed).
func (d *DHT) GetReached(ctx context.Context, k key.RecordKey, subkey uint32) (_ *record.Descriptor, _ *record.Value, reached bool, _ error) {
	desc, err := d.localDesc(k)
	if err != nil {
		return nil, nil, false, err
	}
	var best *record.Value
	if desc != nil {
		if best, err = d.localValue(k, subkey); err != nil {
			return nil, nil, false, err
		}
	}
	var (
		mu      sync.Mutex
		answers = map[key.NodeID]*record.Value{}
		ended   bool // the lookup returned: late answers are dropped
	)
	query := func(ctx context.Context, c Contact) ([]Contact, error) {
		mu.Lock()
		want := desc == nil
		mu.Unlock()
		resp, err := d.call(ctx, c, &request{Op: opGet, Target: k[:], Subkey: subkey, WantDesc: want})
		if err != nil {
			return nil, err
		}
		if resp.Client {
			return nil, fmt.Errorf("dht: %s: %w", c.ID, errClientPeer)
		}
		if resp.Code != codeOK {
			return nil, &RemoteError{Peer: c.ID, Code: resp.Code, Msg: resp.Msg}
		}
		mu.Lock()
		defer mu.Unlock()
		if ended {
			return fromWire(resp.Closer), nil
		}
		if desc == nil && resp.Desc != nil {
			if rd, err := record.DecodeDescriptor(resp.Desc); err == nil && rd.Verify() == nil && rd.Key() == k {
				desc = rd
			} else {
				d.log.Debug("bad descriptor in GET response", "peer", c.ID.String(), "record", k.String())
			}
		}
		var v *record.Value
		if resp.Value != nil {
			v, err = record.DecodeValue(resp.Value)
			if err != nil {
				d.log.Debug("bad value in GET response", "peer", c.ID.String(), "err", err)
				v = nil
			}
		}
		answers[c.ID] = v
		return fromWire(resp.Closer), nil
	}
	others, err := d.lookup(ctx, "get", k, d.opts.R, query)
	if err == nil && len(others) == 0 && d.rejoin(ctx) {
		// No one answered, and the table has no live contact left:
		// joined again, read again.
		others, err = d.lookup(ctx, "get", k, d.opts.R, query)
	}
	mu.Lock()
	found := desc != nil
	ended = err != nil || found || d.opts.FixedTimeouts
	mu.Unlock()
	if err == nil && !found && !d.opts.FixedTimeouts {
		// None of the R nearest had it: a write made while the network
		// was overloaded may sit a little farther out (its lookup left
		// slow near nodes out). Ask the K nearest, as go-libp2p-kad-dht's
		// GetValue does.
		others, err = d.lookup(ctx, "get", k, d.opts.K, query)
		mu.Lock()
		ended = true
		mu.Unlock()
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("dht: get %s/%d: %w", k, subkey, err)
	}
	if desc == nil {
		return nil, nil, false, fmt.Errorf("dht: get %s: %w", k, ErrNotFound)
	}
	if desc.Schema.MembershipChecked() && subkey != 0 {
		// Slot values are checked against the list: read it first if
		// this node has none (Get keeps it).
		if list, err := d.localValue(k, 0); err == nil && list == nil {
			if _, _, err := d.Get(ctx, k, 0); err != nil {
				d.log.Debug("read membership list", "record", k.String(), "err", err)
			}
		}
	}
	// Values are checked against the descriptor only now: it may have
	// arrived after them.
	for id, v := range answers {
		if v != nil && d.verifyValue(k, desc, subkey, v) != nil {
			d.log.Debug("invalid value in GET response", "peer", id.String(), "record", k.String())
			answers[id] = nil
			continue
		}
		if record.Better(v, best) {
			best = v
		}
	}
	if err := d.accept(k, desc, subkey, best); err != nil && !errors.Is(err, ErrStale) {
		d.log.Warn("keep record", "record", k.String(), "err", err)
	}
	if best != nil {
		d.repair(ctx, k, desc, subkey, best, others, answers)
	}
	return desc, best, len(answers) > 0, nil
}

// repair sends best to the holders near k that answered without it.
func (d *DHT) repair(ctx context.Context, k key.RecordKey, desc *record.Descriptor, subkey uint32, best *record.Value, others []Contact, answers map[key.NodeID]*record.Value) {
	var stale []Contact
	for _, c := range d.holders(k, others, d.opts.R) {
		if v, ok := answers[c.ID]; ok && record.Better(best, v) {
			stale = append(stale, c)
		}
	}
	if len(stale) == 0 {
		return
	}
	descEnc, err1 := record.EncodeDescriptor(desc)
	valEnc, err2 := record.EncodeValue(best)
	if err1 != nil || err2 != nil {
		return
	}
	req := &request{Op: opStore, Target: k[:], Subkey: subkey, Desc: descEnc, Value: valEnc, Refreshed: unixTime(d.refreshed(k))}
	var wg sync.WaitGroup
	for _, c := range stale {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.storeTo(ctx, c, req); err != nil {
				d.log.Debug("read repair", "peer", c.ID.String(), "err", err)
			}
		}()
	}
	wg.Wait()
}
