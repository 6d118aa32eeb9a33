package dht

import (
	"context"
	"fmt"
	"sync"

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

// lookup is the iterative lookup shared by Closest and Get. Each round sends
// query to up to Alpha unqueried candidates among the n nearest; a round
// that finds nothing nearer than the best so far queries all unqueried
// candidates among the n nearest (the paper's final step).
//
// The rounds until the returned nearest node was first asked are observed
// as the lookup's hops (dweb_dht_lookup_hops{op}).
func (d *DHT) lookup(ctx context.Context, op string, target [32]byte, n int, query queryFunc) ([]Contact, error) {
	if n <= 0 {
		return nil, nil
	}
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
		// A candidate known dead since it was found (a clean shutdown
		// heard, another lookup's request failed) is not asked, and
		// leaves the n nearest to the next candidate.
		kept := cands[:0]
		for _, c := range cands {
			if seen[c.ID] == fresh && d.isDead(c.ID) {
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
