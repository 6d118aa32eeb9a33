// Package dhtsim is a simulated network for internal/dht: in-memory
// endpoints (dht.StreamEndpoint) whose streams carry bytes with the delays,
// losses and failures of a wide-area network, so that the DHT's own code
// (lookups, routing table, placement, replication, client mode) runs with
// thousands of nodes in one process, which real QUIC endpoints on
// loopback do not allow (a few hundred at most).
//
// The model, and its units:
//
//   - Round trips. Each pair of nodes has a fixed round-trip time drawn
//     from a log-normal distribution, RTT = median · exp(σ·Z) with Z
//     standard normal, clamped to [MinRTT, MaxRTT]. The defaults (median
//     150 ms, σ = 0.6, so a mean near 180 ms and a 99th percentile near
//     600 ms; 2 ms .. 2 s) are a log-normal fit to the summary figures of
//     the King data set (Gummadi, Saroiu & Gribble, "King: Estimating
//     Latency between Arbitrary Internet End Hosts", IMW 2002), the
//     pairwise RTTs of 1740 DNS servers that p2psim and the Vivaldi paper
//     (Dabek et al., SIGCOMM 2004) simulate DHTs over, with a median of
//     about 150 ms and a mean of about 180 ms as reported there. The data
//     set itself is not used (this machine has no Internet): the fit is
//     to those published figures, and a pair's RTT is a hash of the pair
//     and Options.Seed, so it is the same for every message and run.
//     The distribution has no geography: RTTs do not obey the triangle
//     inequality any better than chance.
//   - Streams. Every write reaches the other end RTT/2 after it was made,
//     in order (a later write never overtakes an earlier one). Close (FIN)
//     and resets travel the same way. There is no bandwidth limit and no
//     flow control: DHT messages are at most 100 KiB.
//   - Loss. Each write is lost with probability Options.Loss and, as QUIC
//     would, sent again one probe timeout later: PTO = 1.5·RTT + 25 ms
//     (RFC 9002 §6.2: smoothed RTT + 4·RTTVAR + max_ack_delay, with
//     RTTVAR ≈ RTT/8), doubled on each further loss of the same write.
//     Bytes are never lost for good: the DHT runs over reliable streams.
//   - Connections. A node's first stream to a peer dials: one RTT of
//     handshake (QUIC 1-RTT) before the stream opens, each lost handshake
//     flight costing QUIC's initial PTO of 1 s (RFC 9002 §6.2.2, doubled
//     each time). The connection is then pooled at both ends
//     (Endpoint.PooledAddr) until it has been idle for IdleTimeout.
//   - NAT. A node listened with nat cannot be dialled: a dial to it hangs
//     until the caller's context ends, as packets dropped by a NAT do. It
//     is reached only over a connection it opened itself while that
//     connection lives. Such nodes should run the DHT in client mode
//     (dht.Options.Client), as core does for nodes its reachability
//     check finds unreachable.
//   - Failures. Endpoint.Crash is a node that vanishes (power, network):
//     its peers hear nothing; dials to it and requests in flight hang until
//     their deadlines. Endpoint.Close is a clean shutdown, as
//     transport.Endpoint.Close: each peer with a live connection hears of
//     it RTT/2 later (SetPeerShutdown's callback; its streams from the
//     node fail with transport.ErrPeerShutdown, and OpenStream to it does
//     for transport.ShutdownHold).
//
// Limits: time is real (time.Now and timers), so a simulated minute takes
// a minute and the CPU of the machine adds to every delay: the latencies
// measured are the model's plus scheduling, which grows with the number
// of operations in flight. There is no encryption, handshake CPU,
// congestion, bandwidth or address change, and no per-peer stream limit.
package dhtsim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/zeebo/blake3"
)

// Defaults for zero Options fields.
const (
	DefaultRTTMedian   = 150 * time.Millisecond
	DefaultRTTSigma    = 0.6
	DefaultMinRTT      = 2 * time.Millisecond
	DefaultMaxRTT      = 2 * time.Second
	DefaultIdleTimeout = 30 * time.Second // quic-go's default MaxIdleTimeout
)

// Options shape a Network; the zero value is the King-like wide-area
// network described in the package comment, without loss.
type Options struct {
	Seed        uint64        // picks every pair's RTT and the nodes' addresses
	RTTMedian   time.Duration // median round trip; default DefaultRTTMedian
	RTTSigma    float64       // σ of ln(RTT); default DefaultRTTSigma
	MinRTT      time.Duration // default DefaultMinRTT
	MaxRTT      time.Duration // default DefaultMaxRTT
	Loss        float64       // probability that one write (or handshake flight) is lost and sent again; 0..0.5
	IdleTimeout time.Duration // a connection unused this long is gone; default DefaultIdleTimeout
}

// Network is one simulated network of Endpoints. Its methods are safe for
// concurrent use.
type Network struct {
	opts Options
	mu   sync.RWMutex
	byID map[key.NodeID]*Endpoint
	ips  map[netip.Addr]bool
	rnd  *rand.Rand // addresses; under mu
}

// New returns an empty network.
func New(opts Options) (*Network, error) {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opts.RTTMedian, DefaultRTTMedian)
	def(&opts.MinRTT, DefaultMinRTT)
	def(&opts.MaxRTT, DefaultMaxRTT)
	def(&opts.IdleTimeout, DefaultIdleTimeout)
	if opts.RTTSigma <= 0 {
		opts.RTTSigma = DefaultRTTSigma
	}
	if opts.Loss < 0 || opts.Loss > 0.5 || math.IsNaN(opts.Loss) {
		return nil, fmt.Errorf("dhtsim: loss %v: want 0..0.5", opts.Loss)
	}
	if opts.MinRTT > opts.MaxRTT {
		return nil, fmt.Errorf("dhtsim: MinRTT %v above MaxRTT %v", opts.MinRTT, opts.MaxRTT)
	}
	return &Network{
		opts: opts,
		byID: map[key.NodeID]*Endpoint{},
		ips:  map[netip.Addr]bool{},
		rnd:  rand.New(rand.NewPCG(opts.Seed, 0x64776562)),
	}, nil
}

// ErrDuplicate is returned by Listen for a node ID that listened before.
var ErrDuplicate = errors.New("dhtsim: node ID already listening")

// Listen puts a node on the network with a fresh public IPv4 address
// (distinct /24s are likely, not guaranteed, as on the Internet). With
// nat, nothing can dial it (see the package comment). An ID listens once
// per network: a node that went down does not come back (ErrDuplicate).
func (n *Network) Listen(id key.NodeID, nat bool) (*Endpoint, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.byID[id] != nil {
		return nil, fmt.Errorf("%w: %s", ErrDuplicate, id)
	}
	var ip netip.Addr
	for {
		ip = publicIPv4(n.rnd)
		if !n.ips[ip] {
			break
		}
	}
	n.ips[ip] = true
	e := newEndpoint(n, id, netip.AddrPortFrom(ip, 4433), nat)
	n.byID[id] = e
	return e, nil
}

// endpoint returns the node listening as id, nil if none ever did.
func (n *Network) endpoint(id key.NodeID) *Endpoint {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.byID[id]
}

// publicIPv4 draws an address outside the private, loopback, link-local,
// shared (100.64/10), multicast and reserved ranges.
func publicIPv4(r *rand.Rand) netip.Addr {
	for {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], r.Uint32())
		a := netip.AddrFrom4(b)
		switch {
		case b[0] == 0 || b[0] == 10 || b[0] == 127 || b[0] >= 224,
			b[0] == 100 && b[1]&0xc0 == 64,
			b[0] == 169 && b[1] == 254,
			b[0] == 172 && b[1]&0xf0 == 16,
			b[0] == 192 && b[1] == 168,
			b[3] == 0 || b[3] == 255:
			continue
		}
		return a
	}
}

// RTT returns the round-trip time between nodes a and b: the same for
// both directions and for the life of the network.
func (n *Network) RTT(a, b key.NodeID) time.Duration {
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	h := blake3.New()
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], n.opts.Seed)
	h.Write(seed[:])
	h.Write(a[:])
	h.Write(b[:])
	var sum [16]byte
	h.Digest().Read(sum[:])
	// Box-Muller from two uniforms in (0, 1].
	u1 := (float64(binary.BigEndian.Uint64(sum[:8])>>11) + 1) / (1 << 53)
	u2 := float64(binary.BigEndian.Uint64(sum[8:])>>11) / (1 << 53)
	z := math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
	return n.rttOf(z)
}

// rttOf maps a standard normal z to a round trip of the model.
func (n *Network) rttOf(z float64) time.Duration {
	r := time.Duration(float64(n.opts.RTTMedian) * math.Exp(n.opts.RTTSigma*z))
	return min(max(r, n.opts.MinRTT), n.opts.MaxRTT)
}

// RTTQuantile returns the p-quantile (0 < p < 1) of the pairwise RTTs of
// the model, against which lookup latencies can be read ("a Get took 3
// median RTTs").
func (n *Network) RTTQuantile(p float64) time.Duration {
	return n.rttOf(normQuantile(p))
}

// SampleRTTs returns the RTTs of count random pairs of the nodes now
// listening, for the distribution actually drawn.
func (n *Network) SampleRTTs(count int) []time.Duration {
	n.mu.RLock()
	ids := make([]key.NodeID, 0, len(n.byID))
	for id := range n.byID {
		ids = append(ids, id)
	}
	n.mu.RUnlock()
	if len(ids) < 2 {
		return nil
	}
	slices.SortFunc(ids, func(a, b key.NodeID) int { return bytes.Compare(a[:], b[:]) })
	r := rand.New(rand.NewPCG(n.opts.Seed, 1))
	out := make([]time.Duration, 0, count)
	for range count {
		i, j := r.IntN(len(ids)), r.IntN(len(ids)-1)
		if j >= i {
			j++
		}
		out = append(out, n.RTT(ids[i], ids[j]))
	}
	return out
}

// normQuantile is the standard normal quantile (Acklam's rational
// approximation, relative error below 1.2e-9).
func normQuantile(p float64) float64 {
	a := [...]float64{-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00}
	b := [...]float64{-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01}
	c := [...]float64{-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00}
	d := [...]float64{7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00}
	const lo = 0.02425
	switch {
	case p <= 0:
		return math.Inf(-1)
	case p >= 1:
		return math.Inf(1)
	case p < lo:
		q := math.Sqrt(-2 * math.Log(p))
		return (((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q + c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q + 1)
	case p > 1-lo:
		q := math.Sqrt(-2 * math.Log(1-p))
		return -(((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q + c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q + 1)
	}
	q := p - 0.5
	r := q * q
	return (((((a[0]*r+a[1])*r+a[2])*r+a[3])*r+a[4])*r + a[5]) * q / (((((b[0]*r+b[1])*r+b[2])*r+b[3])*r+b[4])*r + 1)
}

// delay returns when a write made now on a path of round trip rtt
// arrives: RTT/2 later, plus a probe timeout for each time it is lost.
func (n *Network) delay(rtt time.Duration) time.Duration {
	d := rtt / 2
	if n.opts.Loss > 0 {
		pto := rtt*3/2 + 25*time.Millisecond
		for rand.Float64() < n.opts.Loss {
			d += pto
			pto *= 2
		}
	}
	return d
}

// handshake returns how long a dial on a path of round trip rtt takes:
// one RTT, plus QUIC's initial probe timeout (1 s, doubling) for each
// lost flight.
func (n *Network) handshake(rtt time.Duration) time.Duration {
	d := rtt
	if n.opts.Loss > 0 {
		pto := time.Second
		for rand.Float64() < 1-(1-n.opts.Loss)*(1-n.opts.Loss) { // either flight
			d += pto
			pto *= 2
		}
	}
	return d
}
