package dht

import (
	"bytes"
	"context"
	"errors"
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
// starts the next one as soon as one answers rather than in rounds.
//
// A query not answered within its contact's RTO (RFC 6298, from measured
// round trips; queryTimeout) stalls: it stops counting against Alpha, and
// its place among the n nearest is taken by the next candidate, so a slow
// or dead contact widens the lookup instead of holding it (by at most
// Alpha more queries in flight; n more for a read). A query goes late
// after giveUpRTOs RTOs, or after one once n queries have answered (the RTO shortened by this
// lookup's own round trips once it has hereSamples answers, as the
// estimates lag behind a load that just fell), but only once a query sent after it has answered, or n have:
// then it is the contact that is slow, not the whole machine or network,
// which would hold every query alike and must not make a lookup end early
// on far nodes. Only a Get's lookup ("get") lets queries go late; the
// others wait for every stalled query among the n nearest to answer or
// fail. The lookup may end without a late query's answer; any answer that
// comes before the end counts.
//
// The lookups that place a record or a watch ("set", "replicate",
// "watch") stall a query only on that same evidence (they wait anyway:
// a stall would only add load), ask contacts only suspected dead
// (deadMark), and ask once more a contact whose query ran out RPCTimeout
// while not sure to be dead: on an overloaded machine a live near node
// left out is a replica placed where readers do not look.
//
// An answer that brings nothing nearer than the best known widens the
// lookup to all unqueried candidates among the n nearest (the paper's
// final step); one that does narrows it back to Alpha. The lookup ends
// when the n nearest candidates, leaving out the failed and the late,
// have all answered, or when nothing is left to ask. Queries still in
// flight then run on to their own timeout (so that a dead contact is found
// dead and evicted), and their answers are dropped.
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
		c     Contact
		st    state
		hop   int
		sent  time.Time     // when it was asked
		rto   time.Duration // its stall timeout then (queryTimeouts)
		dial  bool          // it had to dial
		again bool          // asked once more after it ran out RPCTimeout
	}
	type result struct {
		id  key.NodeID
		cs  []Contact
		err error
	}
	// Only a read (Get: op "get") may end without a late query: a miss
	// among the R nearest reads the K nearest (GetReached). A lookup
	// whose result places a record (Set, replication, hand-off, watches)
	// waits for stalled queries to answer or fail: measured, a loaded
	// 200-node bench that let Set leave slow near nodes out stored a
	// write where not even the K nearest of a reader had it. Those that
	// place a record or a watch (places) also ask contacts only suspected
	// dead (deadMark): TestScale under the race detector with two CPU
	// burners wrote records on 2 of the 8 nearest when writers skipped
	// nodes that had timed out once. Reads, bootstrap and refresh skip
	// them, as a second timeout would cost them its seconds.
	read := op == "get"
	places := op == "set" || op == "replicate" || op == "watch"
	// Stalled queries make room for at most extra more in flight: Alpha,
	// and n for a read. A read whose first 2·Alpha queries all met dead
	// contacts (after churn, with nothing answered there is no evidence
	// to let any go late) otherwise waited for them to fail at
	// RPCTimeout: traced in bench dht after the churn, 5 of the 36 read
	// lookups over 600 ms took the whole 2 s RPCTimeout so
	// (TestGetPastSixDeadContacts). The others stall only on evidence
	// that the contact is slow (canStall), so the cap binds them less.
	extra := d.opts.Alpha
	if read {
		extra = n
	}
	byID := map[key.NodeID]*cand{}
	var cands []*cand // sorted by distance to target
	add := func(cs []Contact, hop int) {
		grew := false
		for _, c := range cs {
			if c.ID == d.self.ID || d.isDead(c.ID, places) || d.isClient(c.ID) {
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
	stalledN := 0                           // stalled
	var overtaken time.Time                 // latest send time of a query that answered
	// A query stalls at its contact's RTO from the estimates of past
	// requests: conservative, as a stall starts one more query, and on a
	// loaded machine more queries are more load. It goes late at
	// giveUpRTOs of an RTO that this lookup's own round trips may shorten
	// once it has a few (the freshest samples: the estimates lag behind a
	// load that just fell), but only with evidence that it is that contact
	// that is slow, not this node or every path (which would hold all
	// queries alike, and must not end a lookup early on far nodes).
	var here rttEst
	// rto is x's RTO: its contact's, or shorter by this lookup's own round
	// trips once there are hereSamples of them.
	rto := func(x *cand) time.Duration {
		r := x.rto
		if l := here.rto(); here.n >= hereSamples {
			if x.dial {
				l *= 2
			}
			r = min(r, max(l, minStall))
		}
		return r
	}
	stallAt := func(x *cand) time.Time { return x.sent.Add(x.rto) }
	// Once n answered, the lookup has as many responsive nodes as it
	// returns: a query past its RTO is then a straggler, and goes late at
	// once rather than after giveUpRTOs (bench dht after churn: reads that
	// had their n answers waited up to a second more for dead contacts).
	lateAt := func(x *cand) time.Time {
		k := time.Duration(giveUpRTOs)
		if answeredN >= n {
			k = 1
		}
		return x.sent.Add(min(k*rto(x), d.opts.RPCTimeout))
	}
	// slow: evidence that x's contact, not everything, is slow: a query
	// sent after it answered, or n answers in already (the lookup can end
	// without it, and its own round trips set lateAt). Only a read may
	// end without a query on that evidence (evidence). A lookup that
	// places a record waits for its stalled queries anyway, so a stall
	// gains it nothing unless the contact is slow (dead): only then does
	// it stall (canStall). On a machine overloaded as a whole, every query
	// outlasts RTOs from quieter moments, and stalls that start more
	// queries would only add load, and with it RPCs that fail at
	// RPCTimeout and leave live nodes out of where a record is placed
	// (TestScale's repair under the race detector with two CPU burners).
	slow := func(x *cand) bool { return overtaken.After(x.sent) || answeredN >= n }
	evidence := func(x *cand) bool { return read && slow(x) }
	canStall := func(x *cand) bool { return read || slow(x) }
	goLate := func(now time.Time) {
		for _, x := range cands {
			if (x.st == waiting || x.st == stalled) && evidence(x) && !now.Before(lateAt(x)) {
				if x.st == waiting {
					inflight--
				} else {
					stalledN--
				}
				x.st = late
			}
		}
	}
	for {
		// Among the n nearest that have not failed or gone late: are they
		// all answered, and which are still to ask?
		width := d.opts.Alpha
		if wide {
			width = n
		}
		// The lookup is complete when the n nearest, leaving out the
		// failed and the late, have answered; what to ask next is found
		// among the n nearest leaving out the stalled too, so that a
		// stalled query's place is taken at once.
		top, complete := 0, true
		for _, x := range cands {
			if top == n {
				break
			}
			if x.st == failed || x.st == late {
				continue
			}
			if x.st != answered {
				complete = false
			}
			top++
		}
		top = 0
		var next []*cand
		for _, x := range cands {
			// Stalled queries make room for at most extra more.
			if top == n || inflight+len(next) >= width || inflight+stalledN+len(next) >= width+extra {
				break
			}
			switch x.st {
			case failed, late, stalled:
				continue
			case fresh:
				if d.isDead(x.c.ID, true) {
					// Sure to be dead since it became a candidate (a
					// clean shutdown heard meanwhile): not asked.
					x.st = failed
					continue
				}
				next = append(next, x)
			}
			top++
		}
		// Done when the n nearest answered, the late left out: they are
		// late on evidence that their contacts, not all, are slow.
		if complete {
			break
		}
		now := time.Now()
		for _, x := range next {
			x.rto, x.dial = d.queryTimeout(x.c)
			x.st, x.sent = waiting, now
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
				if !canStall(x) {
					continue // an answer wakes the loop
				}
				t = stallAt(x)
				if evidence(x) {
					t = minTime(t, lateAt(x))
				}
			case stalled:
				if !evidence(x) {
					continue // an answer wakes the loop
				}
				t = lateAt(x)
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
				if x.st == waiting && canStall(x) && !now.Before(stallAt(x)) {
					x.st = stalled
					inflight--
					stalledN++
					d.m.LookupStalls.Inc()
				}
			}
			goLate(now)
		case r := <-results:
			x := byID[r.id]
			switch x.st {
			case waiting:
				inflight--
			case stalled:
				stalledN--
			}
			running--
			if r.err != nil {
				if places && !x.again && errors.Is(r.err, errTimedOut) {
					// Not sure to be dead (deadMark), and a lookup that
					// places a record must not leave a live near node
					// out for a moment's overload: asked once more.
					x.again, x.st = true, fresh
					continue
				}
				x.st = failed
				d.log.Debug("lookup query failed", "peer", r.id.String(), "err", r.err)
				continue
			}
			x.st = answered
			answeredN++
			if took := time.Since(x.sent); x.dial {
				here.sample(took/2, time.Now())
			} else {
				here.sample(took, time.Now())
			}
			overtaken = maxTime(overtaken, x.sent)
			goLate(time.Now())
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
			if c.ID == d.self.ID || d.isDead(c.ID, false) || d.isClient(c.ID) {
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
		// A candidate known dead since it was found (a clean shutdown
		// heard, another lookup's request failed) is not asked, and
		// leaves the n nearest to the next candidate.
		kept := cands[:0]
		for _, c := range cands {
			if seen[c.ID] == fresh && d.isDead(c.ID, false) {
				seen[c.ID] = failed
			}
			if seen[c.ID] != failed {
				kept = append(kept, c)
			}
		}
		cands = kept
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

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// hereSamples is how many answers a lookup needs before its own round
// trips may shorten its timeouts.
const hereSamples = 3
