package dhtsim

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/quic-go/quic-go"
)

func newNet(t *testing.T, o Options) *Network {
	t.Helper()
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func listen(t *testing.T, n *Network, nat bool) *Endpoint {
	t.Helper()
	e, err := n.Listen(key.NewKeypair().ID(), nat)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Crash)
	return e
}

// TestRTTModel: pairwise RTTs are symmetric, fixed, and follow the
// log-normal's median and spread.
func TestRTTModel(t *testing.T) {
	n := newNet(t, Options{Seed: 7})
	var ids []key.NodeID
	for range 200 {
		e := listen(t, n, false)
		ids = append(ids, e.ID())
	}
	if a, b := ids[0], ids[1]; n.RTT(a, b) != n.RTT(b, a) || n.RTT(a, b) != n.RTT(a, b) {
		t.Fatal("RTT not symmetric or not fixed")
	}
	s := n.SampleRTTs(20000)
	slices.Sort(s)
	p50, p99 := s[len(s)/2], s[len(s)*99/100]
	if p50 < 140*time.Millisecond || p50 > 160*time.Millisecond {
		t.Fatalf("median RTT %v, want about %v", p50, DefaultRTTMedian)
	}
	if want := n.RTTQuantile(0.99); p99 < want*9/10 || p99 > want*11/10 {
		t.Fatalf("99th percentile %v, want about %v", p99, want)
	}
	if q := n.RTTQuantile(0.5); q != DefaultRTTMedian {
		t.Fatalf("RTTQuantile(0.5) = %v, want the median", q)
	}
}

// TestStreamTiming: a request and its answer take one RTT on a pooled
// connection and two when the first request dials; a NATed node cannot
// be dialled but answers over the connection it opened.
func TestStreamTiming(t *testing.T) {
	n := newNet(t, Options{RTTMedian: 40 * time.Millisecond, RTTSigma: 0.01})
	a, b, c := listen(t, n, false), listen(t, n, false), listen(t, n, true)
	echo := func(ctx context.Context, peer transport.Peer, s dht.Stream) {
		b, _ := io.ReadAll(s)
		s.Write(b)
	}
	for _, e := range []*Endpoint{a, b, c} {
		e.HandleStreams(transport.ProtoDHT, echo)
	}
	ask := func(from, to *Endpoint, addr bool) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		t0 := time.Now()
		ap := to.LocalAddr()
		if !addr {
			ap = netip0
		}
		s, err := from.OpenStream(ctx, to.ID(), ap, transport.ProtoDHT)
		if err != nil {
			return 0, err
		}
		s.SetDeadline(time.Now().Add(500 * time.Millisecond))
		s.Write([]byte("ping"))
		s.Close()
		got, err := io.ReadAll(s)
		if err == nil && string(got) != "ping" {
			t.Fatalf("echo %q", got)
		}
		return time.Since(t0), err
	}
	rtt := n.RTT(a.ID(), b.ID())
	if d, err := ask(a, b, true); err != nil || d < 2*rtt || d > 2*rtt+30*time.Millisecond {
		t.Fatalf("first request: %v, %v; want two RTTs of %v", d, err, rtt)
	}
	if _, ok := a.PooledAddr(b.ID()); !ok {
		t.Fatal("no pooled connection after a request")
	}
	if d, err := ask(b, a, true); err != nil || d < rtt || d > rtt+30*time.Millisecond {
		t.Fatalf("pooled request: %v, %v; want one RTT of %v", d, err, rtt)
	}
	if _, err := ask(a, c, true); err == nil {
		t.Fatal("dialled a NATed node")
	}
	if _, err := ask(c, a, true); err != nil {
		t.Fatalf("NATed node dials out: %v", err)
	}
	if _, err := ask(a, c, false); err != nil {
		t.Fatalf("answer over the NATed node's connection: %v", err)
	}
}

var netip0 netip.AddrPort // no address: only a pooled connection will do

// TestStreamFailures: a crashed node leaves its callers hanging until the
// deadline; a closed one tells its peers, whose streams fail with
// transport.ErrPeerShutdown; a reset reaches the other end.
func TestStreamFailures(t *testing.T) {
	n := newNet(t, Options{RTTMedian: 20 * time.Millisecond, RTTSigma: 0.01})
	a, b, c := listen(t, n, false), listen(t, n, false), listen(t, n, false)
	hold := func(ctx context.Context, peer transport.Peer, s dht.Stream) { <-ctx.Done() }
	b.HandleStreams(transport.ProtoDHT, hold)
	c.HandleStreams(transport.ProtoDHT, hold)
	open := func(to *Endpoint) dht.Stream {
		s, err := a.OpenStream(context.Background(), to.ID(), to.LocalAddr(), transport.ProtoDHT)
		if err != nil {
			t.Fatal(err)
		}
		s.SetDeadline(time.Now().Add(300 * time.Millisecond))
		return s
	}
	sb, sc := open(b), open(c)
	shut := make(chan key.NodeID, 1)
	a.SetPeerShutdown(func(id key.NodeID) { shut <- id })
	b.Crash()
	c.Close()
	if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, transport.ErrPeerShutdown) {
		t.Fatalf("read from a node that closed: %v, want ErrPeerShutdown", err)
	}
	if id := <-shut; id != c.ID() {
		t.Fatal("shutdown callback for the wrong node")
	}
	if _, err := a.OpenStream(context.Background(), c.ID(), c.LocalAddr(), transport.ProtoDHT); !errors.Is(err, transport.ErrPeerShutdown) {
		t.Fatalf("open to a node that closed: %v, want ErrPeerShutdown", err)
	}
	t0 := time.Now()
	if _, err := sb.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(t0) < 200*time.Millisecond {
		t.Fatalf("read from a crashed node: %v after %v, want the deadline", err, time.Since(t0))
	}

	d := listen(t, n, false)
	d.HandleStreams(transport.ProtoDHT, func(ctx context.Context, peer transport.Peer, s dht.Stream) {
		s.CancelWrite(0x42)
	})
	s := open(d)
	var se *quic.StreamError
	if _, err := s.Read(make([]byte, 1)); !errors.As(err, &se) || !se.Remote || se.ErrorCode != 0x42 {
		t.Fatalf("read after the peer's reset: %v", err)
	}
}

// TestDHTOverSim runs the real DHT on a few hundred simulated nodes,
// a fifth of them NATed clients, with 1 % loss: every record written is
// read back, in few hops, and again after 30 % of the nodes crashed and
// the survivors ran one replication sweep. RTTs are an eighth of the
// Internet's (median 20 ms, at most 300 ms) to keep it short.
func TestDHTOverSim(t *testing.T) {
	nodes, records := 300, 100
	if testing.Short() || raceEnabled {
		nodes, records = 120, 40
	}
	n := newNet(t, Options{Seed: 1, RTTMedian: 20 * time.Millisecond, MaxRTT: 300 * time.Millisecond, Loss: 0.01})
	m := dht.NewMetrics()
	opts := dht.Options{
		// Lookups that place records wait for a dead node's requests to
		// time out (twice, for a node only suspected): the timeout, not
		// the RTTs, sets how long the repair sweep takes.
		RPCTimeout:        time.Second * time.Duration(1+raceSlowdown),
		ReplicateInterval: -1, RepublishInterval: -1, RefreshInterval: -1, QueueRetry: -1,
		Metrics: m,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all := make([]*Node, nodes)
	t.Cleanup(func() {
		for _, nd := range all {
			if nd != nil {
				nd.Crash()
			}
		}
	})
	began := time.Now()
	first, err := n.StartNode(false, opts)
	if err != nil {
		t.Fatal(err)
	}
	all[0] = first
	boot := opts
	boot.Bootstrap = []dht.Contact{first.DHT.Self()}
	par(t, nodes-1, 64, func(i int) error {
		nd, err := n.StartNode(i%5 == 4, boot)
		if err != nil {
			return err
		}
		all[i+1] = nd
		return bootstrap(ctx, nd.DHT)
	})
	par(t, nodes, 64, func(i int) error { return bootstrap(ctx, all[i].DHT) })
	t.Logf("started: %v", time.Since(began))

	type rec struct {
		desc *record.Descriptor
		val  *record.Value
	}
	recs := make([]rec, records)
	par(t, records, 32, func(i int) error {
		owner := key.NewKeypair()
		desc, err := record.NewDescriptor(owner, record.Schema{OwnerSubkeys: 1})
		if err != nil {
			return err
		}
		v, err := record.NewValue(desc.Key(), 0, 1, []byte("sim record "+strconv.Itoa(i)), owner)
		if err != nil {
			return err
		}
		recs[i] = rec{desc, v}
		return all[rand.N(nodes)].DHT.Set(ctx, desc, 0, v)
	})
	read := func(from []*Node) int {
		var mu sync.Mutex
		ok := 0
		par(t, records, 32, func(i int) error {
			_, v, err := from[rand.N(len(from))].DHT.Get(ctx, recs[i].desc.Key(), 0)
			if err == nil && v != nil && v.Seq == recs[i].val.Seq && string(v.Data) == string(recs[i].val.Data) {
				mu.Lock()
				ok++
				mu.Unlock()
			} else {
				// Where is it? The ranks of its holders among the
				// live nodes that can hold records, by distance.
				t.Logf("record %d: %v, %v", i, v, err)
				k := recs[i].desc.Key()
				var cand []*Node
				for _, nd := range from {
					if nd != nil && !nd.EP.NAT() {
						cand = append(cand, nd)
					}
				}
				slices.SortFunc(cand, func(a, b *Node) int {
					da, db := xor(k, a.EP.ID()), xor(k, b.EP.ID())
					return slices.Compare(da[:], db[:])
				})
				for j, nd := range cand {
					_, lv, _ := nd.DHT.GetLocal(ctx, k, 0)
					if lv != nil {
						t.Logf("  holder at rank %d: %s", j, nd.EP.ID().String()[:8])
					}
				}
			}
			return nil
		})
		return ok
	}
	t.Logf("written: %v", time.Since(began))
	h0, c0 := m.Hops("get")
	if ok := read(all); ok != records {
		t.Fatalf("read back %d of %d records", ok, records)
	}
	h1, c1 := m.Hops("get")
	if mean := (h1 - h0) / float64(c1-c0); mean > 5 {
		t.Fatalf("mean hops %.2f, want at most 5", mean)
	} else {
		t.Logf("%d nodes: mean hops %.2f", nodes, mean)
	}

	var alive []*Node
	for i, j := range rand.Perm(nodes) {
		if i < nodes*3/10 {
			all[j].Crash()
			all[j] = nil
		} else {
			alive = append(alive, all[j])
		}
	}
	t.Logf("read: %v", time.Since(began))
	par(t, len(alive), len(alive), func(i int) error { return alive[i].DHT.Replicate(ctx) })
	t.Logf("repaired: %v", time.Since(began))
	if ok := read(alive); ok != records {
		t.Fatalf("after 30%% crashed: read back %d of %d records", ok, records)
	}
}

func xor(k key.RecordKey, id key.NodeID) (d [32]byte) {
	for i := range d {
		d[i] = k[i] ^ id[i]
	}
	return d
}

// bootstrap bootstraps d, up to three times as core does: a lost
// handshake flight costs a second (Options.Loss).
func bootstrap(ctx context.Context, d *dht.DHT) error {
	var err error
	for range 3 {
		if err = d.Bootstrap(ctx); err == nil {
			return nil
		}
	}
	return err
}

// par runs fn(0..n-1), width at once, and fails t on the first error.
func par(t *testing.T, n, width int, fn func(i int) error) {
	t.Helper()
	sem := make(chan struct{}, width)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				once.Do(func() { first = err })
			}
		}()
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}
