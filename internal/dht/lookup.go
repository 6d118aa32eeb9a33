package dht

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// Closest returns up to n nodes nearest to target by XOR distance, found by
// an iterative lookup (Kademlia's node lookup): it starts from the routing
// table, queries Alpha candidates per round with FIND_NODE and stops when
// the n nearest candidates it knows have all answered, or after a bounded
// number of rounds. Only nodes that answered are returned, nearest first;
// this node is never among them. An empty result with no error means no
// other node is known.
func (d *DHT) Closest(ctx context.Context, target [32]byte, n int) ([]Contact, error) {
	return d.closest(ctx, "find_node", target, n)
}

// closest is Closest with the op label of the lookup_hops metric.
func (d *DHT) closest(ctx context.Context, op string, target [32]byte, n int) ([]Contact, error) {
	return d.lookup(ctx, op, target, n, func(ctx context.Context, c Contact) ([]Contact, error) {
		return d.findNode(ctx, c, target)
	})
}

// queryFunc asks one contact during a lookup and returns the contacts it
// gave as closer to the target.
type queryFunc func(ctx context.Context, c Contact) ([]Contact, error)

// lookup is the iterative lookup shared by Closest and Get, asynchronous
// as go-libp2p-kad-dht's and Coral's: it keeps Alpha queries in flight to
// the nearest unqueried candidates among the n nearest it knows, and
// starts the next one as soon as one answers rather than in rounds. A
// query that has not answered within its contact's stall timeout
// (queryTimeouts: the RTO of RFC 6298 from that contact's measured round
// trips) stops counting against Alpha, so one slow or dead contact widens
// the lookup instead of holding it; after giveUpRTOs such timeouts the
// lookup may end without it, and its answer still counts if it comes
// before the lookup ends. An answer that brings nothing nearer than the
// best known widens the lookup to all unqueried candidates among the n
// nearest (the paper's final step); one that does narrows it back to Alpha.
// The lookup ends when the n nearest candidates, leaving out the failed
// and the late, have all answered, or when nothing is left to ask.
// Queries still in flight then run on to their own timeout (so that a dead
// contact is found dead and evicted), and their answers are dropped.
//
// With Options.FixedTimeouts it runs lookupRounds instead.
//
// A contact's hop is one more than the hop of the contact whose answer
// named it (1 for those from the routing table); the hop of the returned
// nearest node is observed as the lookup's hops (dweb_dht_lookup_hops{op}).
func (d *DHT) lookup(ctx context.Context, op string, target [32]byte, n int, query queryFunc) ([]Contact, error) {
	if n <= 0 {
		return nil, nil
	}
	if d.opts.FixedTimeouts {
		return d.lookupRounds(ctx, op, target, n, query)
	}
	type state int
	const (
		fresh    state = iota
		waiting        // asked, counts against Alpha
		stalled        // asked, past its stall timeout: another query was started
		late           // asked, past its give-up time: the lookup may end without it
		answered       // answered in time
		failed         // failed, or answered after it ended
	)
	type cand struct {
		c      Contact
		st     state
		hop    int
		stall  time.Time // when a waiting query stalls
		giveUp time.Time // when a stalled query is late
	}
	type result struct {
		id  key.NodeID
		cs  []Contact
		err error
	}
	byID := map[key.NodeID]*cand{}
	var cands []*cand // sorted by distance to target
	add := func(cs []Contact, hop int) {
		grew := false
		for _, c := range cs {
			if c.ID == d.self.ID || d.isDead(c.ID) || d.isClient(c.ID) {
				continue
			}
			if _, ok := byID[c.ID]; ok {
				continue
			}
			x := &cand{c: c, hop: hop}
			byID[c.ID] = x
			cands = append(cands, x)
			grew = true
		}
		if grew {
			slices.SortFunc(cands, func(a, b *cand) int {
				da, db := distance(target, a.c.ID), distance(target, b.c.ID)
				return bytes.Compare(da[:], db[:])
			})
		}
	}
	add(d.table.closest(target, d.opts.K, d.self.ID), 1)

	// Queries outlive the lookup (see above): they run on a context that
	// the caller's end does not cancel (call still bounds each by
	// RPCTimeout, and Close cancels it), and report on a channel nobody
	// reads once done is closed.
	qctx := context.WithoutCancel(ctx)
	results := make(chan result, d.opts.Alpha)
	done := make(chan struct{})
	defer close(done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dht: lookup: %w", err)
	}
	if d.ctx.Err() != nil {
		return nil, ErrClosed
	}

	var best key.NodeID
	haveBest, wide := false, false
	inflight, running, answeredN := 0, 0, 0 // waiting; waiting, stalled or late; answered
	for {
		// Among the n nearest that have not failed or gone late: are they
		// all answered, and which are still to ask?
		width := d.opts.Alpha
		if wide {
			width = n
		}
		top, complete := 0, true
		var next []*cand
		for _, x := range cands {
			if top == n {
				break
			}
			switch x.st {
			case failed, late:
				continue
			case fresh:
				complete = false
				if inflight+len(next) < width {
					next = append(next, x)
				}
			case waiting, stalled:
				complete = false
			}
			top++
		}
		// Done when the n nearest answered; with fewer than n answers in
		// all, late queries are waited for until they end.
		if complete && (answeredN >= n || running == 0) {
			break
		}
		now := time.Now()
		for _, x := range next {
			stall, giveUp := d.queryTimeouts(x.c)
			x.st, x.stall, x.giveUp = waiting, now.Add(stall), now.Add(giveUp)
			inflight++
			running++
			c := x.c
			go func() {
				cs, err := query(qctx, c)
				select {
				case results <- result{c.ID, cs, err}:
				case <-done:
				}
			}()
		}
		var wake time.Time
		for _, x := range cands {
			var t time.Time
			switch x.st {
			case waiting:
				t = x.stall
			case stalled:
				t = x.giveUp
			default:
				continue
			}
			if wake.IsZero() || t.Before(wake) {
				wake = t
			}
		}
		if running == 0 {
			break // nothing in flight and nothing left to ask
		}
		var tick <-chan time.Time
		if !wake.IsZero() {
			timer.Reset(time.Until(wake))
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dht: lookup: %w", ctx.Err())
		case <-d.ctx.Done():
			return nil, ErrClosed
		case <-tick:
			now := time.Now()
			for _, x := range cands {
				if x.st == waiting && !now.Before(x.stall) {
					x.st = stalled
					inflight--
					d.m.LookupStalls.Inc()
				}
				if x.st == stalled && !now.Before(x.giveUp) {
					x.st = late
				}
			}
		case r := <-results:
			x := byID[r.id]
			if x.st == waiting {
				inflight--
			}
			running--
			if r.err != nil {
				x.st = failed
				d.log.Debug("lookup query failed", "peer", r.id.String(), "err", r.err)
				continue
			}
			x.st = answered
			answeredN++
			add(r.cs, x.hop+1)
			var near *cand
			for _, y := range cands {
				if y.st != failed && y.st != late {
					near = y
					break
				}
			}
			if near != nil && (!haveBest || closer(target, near.c.ID, best)) {
				best, haveBest, wide = near.c.ID, true, false
			} else {
				wide = true
			}
		}
	}
	var out []Contact
	hop := 0
	for _, x := range cands {
		if x.st == answered {
			if len(out) == 0 {
				hop = x.hop
			}
			out = append(out, x.c)
			if len(out) == n {
				break
			}
		}
	}
	if len(out) > 0 {
		d.m.LookupHops.WithLabelValues(op).Observe(float64(hop))
	}
	return out, nil
}

// lookupRounds is the lookup of Options.FixedTimeouts, the behaviour
// before adaptive timeouts, kept as the baseline of benchmarks: each round sends
// query to up to Alpha unqueried candidates among the n nearest; a round
// that finds nothing nearer than the best so far queries all unqueried
// candidates among the n nearest (the paper's final step).
//
// The rounds until the returned nearest node was first asked are observed
// as the lookup's hops (dweb_dht_lookup_hops{op}).
func (d *DHT) lookupRounds(ctx context.Context, op string, target [32]byte, n int, query queryFunc) ([]Contact, error) {
	type state int
	const (
		fresh state = iota
		answered
		failed
	)
	seen := map[key.NodeID]state{}
	askedIn := map[key.NodeID]int{} // round (1-based) each contact was asked in
	var cands []Contact             // sorted by distance, failed ones removed
	add := func(cs []Contact) {
		for _, c := range cs {
			if c.ID == d.self.ID || d.isDead(c.ID) || d.isClient(c.ID) {
				continue
			}
			if _, ok := seen[c.ID]; ok {
				continue
			}
			seen[c.ID] = fresh
			cands = append(cands, c)
		}
		sortByDistance(target, cands)
	}
	add(d.table.closest(target, d.opts.K, d.self.ID))

	var best *Contact
	wide := false
	for round := 0; round < maxRounds; round++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("dht: lookup: %w", err)
		}
		if d.ctx.Err() != nil {
			return nil, ErrClosed
		}
		width := d.opts.Alpha
		if wide {
			width = n
		}
		var batch []Contact
		for i := 0; i < len(cands) && i < n && len(batch) < width; i++ {
			if seen[cands[i].ID] == fresh {
				batch = append(batch, cands[i])
			}
		}
		if len(batch) == 0 {
			break
		}
		type result struct {
			c   Contact
			cs  []Contact
			err error
		}
		results := make([]result, len(batch))
		var wg sync.WaitGroup
		for i, c := range batch {
			askedIn[c.ID] = round + 1
			wg.Add(1)
			go func() {
				defer wg.Done()
				cs, err := query(ctx, c)
				results[i] = result{c, cs, err}
			}()
		}
		wg.Wait()
		for _, r := range results {
			if r.err != nil {
				seen[r.c.ID] = failed
				d.log.Debug("lookup query failed", "peer", r.c.ID.String(), "err", r.err)
				continue
			}
			seen[r.c.ID] = answered
			add(r.cs)
		}
		live := cands[:0]
		for _, c := range cands {
			if seen[c.ID] != failed {
				live = append(live, c)
			}
		}
		cands = live
		if len(cands) > 0 && (best == nil || closer(target, cands[0].ID, best.ID)) {
			b := cands[0]
			best = &b
			wide = false
		} else {
			wide = true
		}
	}
	var out []Contact
	defer func() {
		if len(out) > 0 {
			d.m.LookupHops.WithLabelValues(op).Observe(float64(askedIn[out[0].ID]))
		}
	}()
	for _, c := range cands {
		if seen[c.ID] == answered {
			out = append(out, c)
			if len(out) == n {
				break
			}
		}
	}
	return out, nil
}
