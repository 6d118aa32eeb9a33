package dht

import (
	"net/netip"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// Adaptive timeouts (docs/dht.md, "Lookups under churn"). Every answered
// request is a round-trip sample, from opening the stream to reading the
// response (half of it when it dialed first), of one estimate per contact
// and one of all contacts, each by RFC 6298 §2 (Jacobson/Karels). A lookup stops waiting for a query after its
// contact's retransmission timeout (RTO) and starts another in its place,
// and ends without its answer after giveUpRTOs of them; the slow query
// still runs to Options.RPCTimeout, and still counts if it answers before
// the lookup ends.

// Bounds of the stall timeout. minStall keeps a loaded machine's jitter from
// starting needless queries (measured in bench dht at 100 nodes: with 20 ms
// and stalls shortened by a lookup's own round trips, reads before churn
// took p50/p99 77/812 ms against 40/270 ms for the old lookup; with 50 ms
// and stalls by the estimates only, 35/190 ms). The upper bound is Options.RPCTimeout /
// maxStallDiv: a stall costs one more query at most (and no early end,
// which needs evidence: lookup), while estimates taken under a passing
// overload would otherwise hold every lookup that meets a dead contact for
// the whole RPCTimeout.
const (
	minStall    = 50 * time.Millisecond
	maxStallDiv = 4
	// rttGranularity is RFC 6298's G: the clock granularity added to the
	// variance term, so that a perfectly regular contact still gets slack.
	rttGranularity = time.Millisecond
)

// maxRTTKept bounds the contacts with an estimate; past it, the one not
// sampled for longest is forgotten (it falls back to the first-request
// estimate).
const maxRTTKept = 4096

// rttEst is one smoothed round-trip estimate, RFC 6298 §2: the first sample
// R sets SRTT = R and RTTVAR = R/2; each later sample R' sets
// RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'| and then SRTT = 7/8 SRTT + 1/8 R'.
// The zero value has no samples.
type rttEst struct {
	srtt, rttvar time.Duration
	n            int
	at           time.Time // last sample
}

// sample adds one measured round trip r.
func (e *rttEst) sample(r time.Duration, now time.Time) {
	if e.n == 0 {
		e.srtt, e.rttvar = r, r/2
	} else {
		diff := e.srtt - r
		if diff < 0 {
			diff = -diff
		}
		e.rttvar = (3*e.rttvar + diff) / 4
		e.srtt = (7*e.srtt + r) / 8
	}
	e.n++
	e.at = now
}

// rto is RFC 6298's RTO = SRTT + max(G, 4 RTTVAR), unclamped; 0 without
// samples.
func (e *rttEst) rto() time.Duration {
	if e.n == 0 {
		return 0
	}
	return e.srtt + max(rttGranularity, 4*e.rttvar)
}

// rttFresh is how long a contact's own estimate is trusted after its last
// sample; past it the estimate of all contacts, which many samples keep
// current, stands in (a contact last measured while the machine or the
// path was loaded would keep a timeout far from today's).
const rttFresh = 10 * time.Second

// rtts holds a DHT's estimates: one per contact, and all over every
// contact for those without a fresh one. A request that had to dial took
// two round trips (QUIC's 1-RTT handshake, then the request): it is half
// its time that is sampled, and a request that will dial gets twice the
// RTO.
type rtts struct {
	mu    sync.Mutex
	peers map[key.NodeID]*rttEst
	all   rttEst
}

func newRTTs() *rtts { return &rtts{peers: map[key.NodeID]*rttEst{}} }

// sample records a request to id that took r, and dialed first or not.
func (t *rtts) sample(id key.NodeID, r time.Duration, dialed bool) {
	if dialed {
		r /= 2
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.all.sample(r, now)
	e, ok := t.peers[id]
	if !ok {
		if len(t.peers) >= maxRTTKept {
			var oldest key.NodeID
			var at time.Time
			for x, o := range t.peers {
				if at.IsZero() || o.at.Before(at) {
					oldest, at = x, o.at
				}
			}
			delete(t.peers, oldest)
		}
		e = &rttEst{}
		t.peers[id] = e
	}
	e.sample(r, now)
}

// rto returns the retransmission timeout of a request to id: its own
// estimate's if sampled within rttFresh, else the estimate of all
// contacts; doubled when it must dial; 0 when nothing was measured yet.
func (t *rtts) rto(id key.NodeID, dial bool) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.all.rto()
	if e, ok := t.peers[id]; ok && time.Since(e.at) < rttFresh {
		r = e.rto()
	}
	if dial {
		r *= 2
	}
	return r
}

// forget drops id's estimate (it failed).
func (t *rtts) forget(id key.NodeID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.peers, id)
}

// pooled reports whether the endpoint holds a live connection to id (a
// request need not dial); true when the endpoint cannot tell.
func (d *DHT) pooled(id key.NodeID) bool {
	p, ok := d.rawEP.(interface {
		PooledAddr(key.NodeID) (netip.AddrPort, bool)
	})
	if !ok {
		return true
	}
	_, live := p.PooledAddr(id)
	return live
}

// giveUpRTOs: a stalled lookup query may go late (the lookup may end
// without it) this many stall timeouts after it was sent: the RTO and one
// backed-off, doubled one (RFC 6298 §5.5).
const giveUpRTOs = 3

// queryTimeout returns how long a lookup waits for an answer from c before
// it starts another query in its place: c's RTO (rtts.rto), clamped to
// [minStall, Options.RPCTimeout/maxStallDiv]; RPCTimeout when nothing was
// measured yet or Options.FixedTimeouts is set. dial reports that the request must dial
// first (no pooled connection).
func (d *DHT) queryTimeout(c Contact) (stall time.Duration, dial bool) {
	dial = !d.pooled(c.ID)
	r := d.rtt.rto(c.ID, dial)
	if d.opts.FixedTimeouts || r == 0 {
		return d.opts.RPCTimeout, dial
	}
	return min(max(r, minStall), d.opts.RPCTimeout/maxStallDiv), dial
}
