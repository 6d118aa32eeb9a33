package dht

import (
	"net/netip"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// TestRTTEstimate checks the estimator against RFC 6298 §2 worked by hand.
func TestRTTEstimate(t *testing.T) {
	ms := time.Millisecond
	var e rttEst
	if e.rto() != 0 {
		t.Fatal("an estimate without samples has an RTO")
	}
	now := time.Now()
	e.sample(100*ms, now) // SRTT 100, RTTVAR 50: RTO 100 + 200
	if e.srtt != 100*ms || e.rttvar != 50*ms || e.rto() != 300*ms {
		t.Fatalf("after one sample: srtt %v rttvar %v rto %v", e.srtt, e.rttvar, e.rto())
	}
	e.sample(200*ms, now) // RTTVAR 3/4*50 + 1/4*100 = 62.5; SRTT 7/8*100 + 1/8*200 = 112.5
	if e.rttvar != 62500*time.Microsecond || e.srtt != 112500*time.Microsecond || e.rto() != 362500*time.Microsecond {
		t.Fatalf("after two samples: srtt %v rttvar %v rto %v", e.srtt, e.rttvar, e.rto())
	}
	var flat rttEst
	for range 100 {
		flat.sample(10*ms, now)
	}
	if r := flat.rto(); r < 10*ms+rttGranularity || r > 11*ms {
		t.Fatalf("steady 10 ms: RTO %v, want 10 ms plus the granularity", r)
	}
}

// TestQueryTimeouts checks which estimate a lookup's stall timeout comes
// from, and its clamps.
func TestQueryTimeouts(t *testing.T) {
	ms := time.Millisecond
	d := &DHT{opts: Options{RPCTimeout: 4 * time.Second}, rtt: newRTTs(), rawEP: pooledEP{}}
	a, b := key.NewKeypair().ID(), key.NewKeypair().ID()
	stall := func(id key.NodeID) time.Duration {
		s, _ := d.queryTimeout(Contact{ID: id})
		return s
	}
	if s := stall(a); s != 4*time.Second {
		t.Fatalf("nothing measured: %v, want RPCTimeout", s)
	}
	d.rtt.sample(a, 100*ms, false)
	if s := stall(a); s != 300*ms {
		t.Fatalf("one 100 ms sample: stall %v, want 300 ms", s)
	}
	if s := stall(b); s != 300*ms {
		t.Fatalf("an unmeasured contact: stall %v, want the estimate of all contacts, 300 ms", s)
	}
	d.rtt.sample(b, 100*time.Microsecond, false)
	if s := stall(b); s != minStall {
		t.Fatalf("a 0.1 ms contact: stall %v, want the floor %v", s, minStall)
	}
	d.rtt.sample(a, 5*time.Second, false)
	if s := stall(a); s != time.Second {
		t.Fatalf("a 5 s sample: %v, want it clamped to RPCTimeout/4", s)
	}
	// A dial: twice the RTO; a dialed sample counts half.
	d.rawEP = nothingPooled{}
	c := key.NewKeypair().ID()
	d.rtt.sample(c, 200*ms, true)
	if s, dial := d.queryTimeout(Contact{ID: c}); s != 600*ms || !dial {
		t.Fatalf("dial to c after a 200 ms dialed request: stall %v (dial %v), want twice 300 ms", s, dial)
	}
	// A stale estimate gives way to the estimate of all contacts.
	d.rtt.peers[c].at = time.Now().Add(-2 * rttFresh)
	d.rawEP = pooledEP{}
	if s := stall(c); s != min(d.rtt.all.rto(), time.Second) {
		t.Fatalf("a stale estimate: stall %v, want that of all contacts", s)
	}
	d.opts.FixedTimeouts = true
	if s := stall(b); s != 4*time.Second {
		t.Fatalf("FixedTimeouts: stall %v, want RPCTimeout", s)
	}
}

// pooledEP is an Endpoint whose every peer has a pooled connection; only
// PooledAddr is called.
type pooledEP struct{ Endpoint }

func (pooledEP) PooledAddr(key.NodeID) (netip.AddrPort, bool) { return netip.AddrPort{}, true }

// nothingPooled is an Endpoint with no pooled connection.
type nothingPooled struct{ Endpoint }

func (nothingPooled) PooledAddr(key.NodeID) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
