package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/dht/dhtsim"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/spf13/cobra"
)

func init() { benchCommands = append(benchCommands, benchDHTCmd) }

// benchDHTResult is what `dweb bench dht` prints. Latencies are in
// milliseconds, measured around one Set/Get/Watch call of the public API.
type benchDHTResult struct {
	Nodes                int     `json:"nodes"`
	Records              int     `json:"records"`
	Churn                float64 `json:"churn"`
	Killed               int     `json:"killed"`
	GetSuccess           float64 `json:"get_success"`             // fraction of records read back with the written value
	GetSuccessAfterChurn float64 `json:"get_success_after_churn"` // the same after the kill and one repair sweep
	GetP50ms             float64 `json:"get_p50_ms"`
	GetP99ms             float64 `json:"get_p99_ms"`
	GetAfterChurnP50ms   float64 `json:"get_after_churn_p50_ms"`
	GetAfterChurnP99ms   float64 `json:"get_after_churn_p99_ms"`
	// SetQueued: Sets that reached no holder and were queued offline.
	// The daemon retries its queue (every 30 s, dht.Options.QueueRetry);
	// the bench runs no timers, so it drives the queues itself between
	// the writes and the reads, as the daemon's passes would: passes of
	// dht.DHT.FlushQueue on every node with writes queued, at once, then
	// 1 s and 2 s later for what is left (the queue loop's retries after
	// a pass that left writes behind). SetQueuedLeft: writes still queued
	// when the reads start (those records are held by their writer alone).
	SetQueued            int     `json:"set_queued"`
	SetQueuedLeft        int     `json:"set_queued_left"`
	QueueS               float64 `json:"queue_s"` // the queue passes' wall time (0: nothing queued)
	SetP50ms             float64 `json:"set_p50_ms"`
	SetP99ms             float64 `json:"set_p99_ms"`
	MeanHops             float64 `json:"mean_hops"` // rounds of a Get lookup until its nearest holder was asked
	Watches              int     `json:"watches"`
	WatchSeen            int     `json:"watch_seen"` // changes that reached their watcher (a watch whose first read failed is a miss)
	WatchP50ms           float64 `json:"watch_p50_ms"`
	WatchP99ms           float64 `json:"watch_p99_ms"`
	RepairS              float64 `json:"repair_s"` // one replication sweep on every survivor, in parallel
	SetS                 float64 `json:"set_s"`    // the phases' wall times: the writes,
	GetS                 float64 `json:"get_s"`    // the reads,
	WatchS               float64 `json:"watch_s"`  // the watch samples (one at a time),
	GetAfterChurnS       float64 `json:"get_after_churn_s"`
	StartS               float64 `json:"start_s"`  // starting and bootstrapping the nodes
	TotalS               float64 `json:"total_s"`  // the whole run
	Replicas             int     `json:"replicas"` // R
	GoMaxProcs           int     `json:"gomaxprocs"`
	PeakRSSMB            float64 `json:"peak_rss_mb"`          // the process's peak resident set (getrusage ru_maxrss), MB
	ConnsAfterReads      int     `json:"conns_after_reads"`    // QUIC connections open on all nodes together after the first reads (each counted at both ends)
	PooledAfterReads     int     `json:"pooled_after_reads"`   // of which pooled (the one per peer that requests use)
	HeapMBAfterReads     float64 `json:"heap_mb_after_reads"`  // Go heap in use after the first reads (runtime.MemStats.HeapInuse), MB
	StackMBAfterReads    float64 `json:"stack_mb_after_reads"` // goroutine stacks then (StackInuse), MB
	GoroutinesAfterReads int     `json:"goroutines_after_reads"`
	FixedTimeouts        bool    `json:"fixed_timeouts"` // the baseline: dht.Options.FixedTimeouts

	// With --sim: the simulated network (internal/dht/dhtsim) and the
	// latencies in its round trips.
	Sim                  bool    `json:"sim,omitempty"`
	NATNodes             int     `json:"nat_nodes,omitempty"`    // nodes behind NAT, in client mode
	Loss                 float64 `json:"loss,omitempty"`         // probability that a write is lost (and sent again)
	RTTp50ms             float64 `json:"rtt_p50_ms,omitempty"`   // the simulated pairwise RTTs, 10,000 random pairs of the model
	RTTp99ms             float64 `json:"rtt_p99_ms,omitempty"`   //
	GetP50RTTs           float64 `json:"get_p50_rtts,omitempty"` // get_p50_ms / rtt_p50_ms
	GetAfterChurnP50RTTs float64 `json:"get_after_churn_p50_rtts,omitempty"`
	SetP50RTTs           float64 `json:"set_p50_rtts,omitempty"`

	// Misses: each read that did not return the written value, with where
	// the record lay then (empty when every read succeeded).
	Misses []benchMiss `json:"misses,omitempty"`
}

// benchMiss is one failed read of the bench: the record's index, the
// phase ("get", "watch" or "after_churn"), the reader's error, and the
// ranks (0 = nearest) by XOR distance to the record's key, among the
// nodes live in that phase that can hold records (not behind a NAT), of
// the nodes that held the record just after the read (holders include earlier readers, which keep what they read).
type benchMiss struct {
	Record      int    `json:"record"`
	Phase       string `json:"phase"`
	Err         string `json:"err,omitempty"`
	HolderRanks []int  `json:"holder_ranks"`
	// NearerKnown: for each holder, how many of its live contacts
	// (dht.DHT.Contacts) are nearer to the key than the nearest holder.
	NearerKnown []int `json:"nearer_known"`
	// NearestKnownBy: for each of the R nodes nearest to the key, how
	// many nodes have it among their live contacts.
	NearestKnownBy []int `json:"nearest_known_by"`
}

// benchDHTCmd measures a network of separate DHT nodes (each its own QUIC
// endpoint on 127.0.0.1 and its own Pebble store) in this process; with
// --sim, nodes on a simulated wide-area network (internal/dht/dhtsim) with
// in-memory stores, up to 20,000 of them.
func benchDHTCmd(a *app) *cobra.Command {
	var cfg benchDHTConfig
	var dir string
	cmd := &cobra.Command{
		Use:   "dht",
		Short: "a loopback network of DHT nodes: set/get/watch latencies, hops, and reads after churn (prints JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if maxNodes := map[bool]int{false: 1000, true: 20000}[cfg.sim]; cfg.nodes < 2 || cfg.nodes > maxNodes {
				return &usageError{fmt.Errorf("--nodes %d: want 2..%d", cfg.nodes, maxNodes)}
			}
			if cfg.nat < 0 || cfg.nat > 0.9 || math.IsNaN(cfg.nat) {
				return &usageError{fmt.Errorf("--nat %v: want 0..0.9", cfg.nat)}
			}
			if cfg.loss < 0 || cfg.loss > 0.5 || math.IsNaN(cfg.loss) {
				return &usageError{fmt.Errorf("--loss %v: want 0..0.5", cfg.loss)}
			}
			if cfg.records < 1 || cfg.records > 100000 {
				return &usageError{fmt.Errorf("--records %d: want 1..100000", cfg.records)}
			}
			if cfg.churn < 0 || cfg.churn > 0.9 || math.IsNaN(cfg.churn) {
				return &usageError{fmt.Errorf("--churn %v: want 0..0.9", cfg.churn)}
			}
			if cfg.watches < 0 || cfg.watches > 1000 {
				return &usageError{fmt.Errorf("--watches %d: want 0..1000", cfg.watches)}
			}
			if cfg.sim && !cmd.Flags().Changed("parallel") {
				// Simulated operations spend their time waiting for
				// round trips of ~150 ms, not CPU.
				cfg.parallel = 64
			}
			if cfg.sim && !cmd.Flags().Changed("timeout") {
				cfg.timeout = 30 * time.Minute // 10,000 nodes take minutes to join
			}
			tmp, err := os.MkdirTemp(dir, "dweb-bench-dht-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			cfg.dir = tmp
			ctx, cancel := context.WithTimeout(cmd.Context(), cfg.timeout)
			defer cancel()
			res, err := benchDHT(ctx, cfg)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "%d nodes, %d records: get %.0f%% (p50 %.1f ms, p99 %.1f ms), after %.0f%% churn %.0f%%; set p50 %.1f ms; %.2f hops; watch p50 %.1f ms\n",
				res.Nodes, res.Records, 100*res.GetSuccess, res.GetP50ms, res.GetP99ms, 100*res.Churn, 100*res.GetSuccessAfterChurn, res.SetP50ms, res.MeanHops, res.WatchP50ms)
			return nil
		},
	}
	cmd.Flags().IntVar(&cfg.nodes, "nodes", 200, "nodes in the network")
	cmd.Flags().IntVar(&cfg.records, "records", 1000, "records written (one subkey each)")
	cmd.Flags().Float64Var(&cfg.churn, "churn", 0.3, "fraction of nodes killed before the second read")
	cmd.Flags().IntVar(&cfg.watches, "watches", 50, "watch latency samples")
	cmd.Flags().IntVar(&cfg.parallel, "parallel", 16, "operations in flight at once (64 with --sim)")
	cmd.Flags().DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "give up after this long (30 min with --sim)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the node stores (default: the system temp dir)")
	cmd.Flags().BoolVar(&cfg.fixed, "fixed-timeouts", false, "baseline: lookups in rounds that wait up to the RPC timeout, no replacement cache (dht.Options.FixedTimeouts)")
	cmd.Flags().StringVar(&cfg.memProfile, "memprofile", "", "write a heap profile here after the first reads (for go tool pprof)")
	cmd.Flags().BoolVar(&cfg.sim, "sim", false, "run the nodes on a simulated wide-area network (internal/dht/dhtsim: King-like RTTs, loss, NAT) with in-memory stores; churn crashes nodes silently")
	cmd.Flags().Float64Var(&cfg.nat, "nat", 0.2, "with --sim: fraction of nodes behind NAT, which nothing can dial and which run in client mode")
	cmd.Flags().Float64Var(&cfg.loss, "loss", 0.01, "with --sim: probability that a write is lost and sent again a probe timeout later")
	cmd.Flags().Uint64Var(&cfg.seed, "seed", 1, "with --sim: seed of the pairwise RTTs and addresses")
	return cmd
}

type benchDHTConfig struct {
	nodes, records, watches, parallel int
	churn                             float64
	timeout                           time.Duration
	dir                               string
	fixed                             bool
	memProfile                        string
	sim                               bool
	nat, loss                         float64
	seed                              uint64
}

type benchNode struct {
	ep   *transport.Endpoint // nil with --sim
	db   *store.DB
	d    *dht.DHT
	sim  *dhtsim.Node // with --sim
	dead bool
}

// close stops the node: with --sim it crashes, silently, as a node that
// loses power or network does; on loopback its endpoint closes.
func (n *benchNode) close() {
	n.dead = true
	if n.sim != nil {
		n.sim.Crash()
		return
	}
	n.d.Close()
	n.ep.Close()
	n.db.Close()
}

type benchRec struct {
	owner key.Keypair
	desc  *record.Descriptor
	val   *record.Value
}

// benchDHT runs the benchmark: start and bootstrap the nodes, write
// cfg.records records from random nodes, read each back from another
// random node, measure watches, kill cfg.churn of the nodes, run one
// replication sweep on every survivor, and read every record again.
func benchDHT(ctx context.Context, cfg benchDHTConfig) (*benchDHTResult, error) {
	began := time.Now()
	if cfg.parallel < 1 {
		cfg.parallel = 16
	}
	metrics := dht.NewMetrics()
	var queued atomic.Int64
	res := &benchDHTResult{Nodes: cfg.nodes, Records: cfg.records, Churn: cfg.churn, Replicas: dht.DefaultR, GoMaxProcs: runtime.GOMAXPROCS(0), FixedTimeouts: cfg.fixed}

	var simNet *dhtsim.Network
	if cfg.sim {
		var err error
		if simNet, err = dhtsim.New(dhtsim.Options{Seed: cfg.seed, Loss: cfg.loss}); err != nil {
			return nil, err
		}
		res.Sim, res.Loss = true, cfg.loss
		// Pairs of the model's distribution: the nodes are not there
		// yet, and their RTTs are drawn from it alike.
		rtts := make([]time.Duration, 10000)
		for i := range rtts {
			rtts[i] = simNet.RTT(key.NewKeypair().ID(), key.NewKeypair().ID())
		}
		ms := make([]float64, len(rtts))
		for i, r := range rtts {
			ms[i] = float64(r.Microseconds()) / 1000
		}
		res.RTTp50ms, res.RTTp99ms = percentile(ms, 0.5), percentile(ms, 0.99)
	}
	nodes := make([]*benchNode, cfg.nodes)
	defer func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			if n != nil && !n.dead {
				wg.Add(1)
				go func() { defer wg.Done(); n.close() }()
			}
		}
		wg.Wait()
	}()
	dhtOpts := func(boot []dht.Contact) dht.Options {
		return dht.Options{
			Bootstrap: boot,
			// A dead node costs one timeout per caller, which dominates
			// reads after churn; under the load of 200 nodes starting on
			// 2 cores, 1 s is too short for a busy bootstrap node. On the
			// simulated Internet, the default (5 s): a dial and a request
			// there take two RTTs of up to 2 s each.
			RPCTimeout: map[bool]time.Duration{false: 2 * time.Second, true: dht.DefaultRPCTimeout}[cfg.sim],
			// Maintenance is driven by the benchmark (Replicate, and
			// the offline queue: benchFlushQueues) so that the phases
			// are measured apart.
			ReplicateInterval: -1,
			RepublishInterval: -1,
			RefreshInterval:   -1,
			QueueRetry:        -1,
			WatchRenew:        time.Minute,
			Metrics:           metrics,
			FixedTimeouts:     cfg.fixed,
			OnWrite: func(ev dht.WriteEvent) {
				if ev.State == dht.WriteQueued {
					queued.Add(1)
				}
			},
		}
	}
	var natNodes atomic.Int64
	start := func(i int, boot []dht.Contact) error {
		if simNet != nil {
			// Node 0, the bootstrap node, is reachable; of the others
			// a fraction cfg.nat is behind NAT, spread evenly.
			nat := i > 0 && int(float64(i)*cfg.nat) != int(float64(i-1)*cfg.nat)
			nd, err := simNet.StartNode(nat, dhtOpts(boot))
			if err != nil {
				return err
			}
			if nat {
				natNodes.Add(1)
			}
			nodes[i] = &benchNode{db: nd.DB, d: nd.DHT, sim: nd}
			return nil
		}
		ep, err := transport.Listen(transport.Options{
			Identity:    key.NewKeypair(),
			ListenAddr:  "127.0.0.1:0",
			IdleTimeout: 20 * time.Second,
			KeepAlive:   -1, // idle connections close; the next request dials again
			// Every node reaches the bootstrap node: the phone preset's
			// 128 connections would refuse most of 200 nodes.
			Resources: rcmgr.New(rcmgr.ServerLimits()),
		})
		if err != nil {
			return err
		}
		db, err := store.Open(filepath.Join(cfg.dir, strconv.Itoa(i)), store.Options{})
		if err != nil {
			ep.Close()
			return err
		}
		o := dhtOpts(boot)
		o.Endpoint, o.Store = ep, db
		d, err := dht.New(o)
		if err != nil {
			ep.Close()
			db.Close()
			return err
		}
		nodes[i] = &benchNode{ep: ep, db: db, d: d}
		return nil
	}
	if err := start(0, nil); err != nil {
		return nil, err
	}
	boot := []dht.Contact{nodes[0].d.Self()}
	if !cfg.sim {
		if err := benchPar(ctx, cfg.nodes-1, cfg.parallel, func(i int) error {
			if err := start(i+1, boot); err != nil {
				return err
			}
			return bootstrapRetry(ctx, nodes[i+1].d)
		}); err != nil {
			return nil, fmt.Errorf("start nodes: %w", err)
		}
		// A second self-lookup everywhere fills the tables of the early nodes.
		if err := benchPar(ctx, cfg.nodes, cfg.parallel, func(i int) error { return bootstrapRetry(ctx, nodes[i].d) }); err != nil {
			return nil, fmt.Errorf("refresh tables: %w", err)
		}
	} else if err := simJoin(ctx, cfg, nodes, start); err != nil {
		return nil, err
	}
	res.StartS = time.Since(began).Seconds()
	res.NATNodes = int(natNodes.Load())

	// Writes.
	recs := make([]benchRec, cfg.records)
	setMS := make([]float64, cfg.records)
	if err := benchPar(ctx, cfg.records, cfg.parallel, func(i int) error {
		owner := key.NewKeypair()
		desc, err := record.NewDescriptor(owner, record.Schema{OwnerSubkeys: 1})
		if err != nil {
			return err
		}
		v, err := record.NewValue(desc.Key(), 0, 1, []byte("bench record "+strconv.Itoa(i)), owner)
		if err != nil {
			return err
		}
		recs[i] = benchRec{owner, desc, v}
		t0 := time.Now()
		if err := nodes[rand.N(cfg.nodes)].d.Set(ctx, desc, 0, v); err != nil {
			return fmt.Errorf("set record %d: %w", i, err)
		}
		setMS[i] = msSince(t0)
		return nil
	}); err != nil {
		return nil, err
	}
	res.SetP50ms, res.SetP99ms = percentile(setMS, 0.5), percentile(setMS, 0.99)
	res.SetS = time.Since(began).Seconds() - res.StartS
	phase := time.Now()
	res.SetQueued = int(queued.Load())
	if res.SetQueued > 0 {
		left, err := benchFlushQueues(ctx, nodes)
		if err != nil {
			return nil, fmt.Errorf("send queued writes: %w", err)
		}
		res.SetQueuedLeft = left
		res.QueueS = time.Since(phase).Seconds()
		phase = time.Now()
	}

	// Reads, each from a random node.
	hops0, n0 := metrics.Hops("get")
	ok, getMS, misses := benchReads(ctx, nodes, recs, cfg.parallel, "get")
	res.Misses = append(res.Misses, misses...)
	hops1, n1 := metrics.Hops("get")
	if n1 > n0 {
		res.MeanHops = (hops1 - hops0) / float64(n1-n0)
	}
	res.GetSuccess = float64(ok) / float64(cfg.records)
	res.GetP50ms, res.GetP99ms = percentile(getMS, 0.5), percentile(getMS, 0.99)
	res.GetS = time.Since(phase).Seconds()
	for _, n := range nodes {
		if n.ep != nil {
			st := n.ep.Stats()
			res.ConnsAfterReads += st.Conns
			res.PooledAfterReads += st.Pooled
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapMBAfterReads = math.Round(float64(ms.HeapInuse)/(1<<20)*10) / 10
	res.StackMBAfterReads = math.Round(float64(ms.StackInuse)/(1<<20)*10) / 10
	res.GoroutinesAfterReads = runtime.NumGoroutine()
	if cfg.memProfile != "" {
		if err := writeHeapProfile(cfg.memProfile); err != nil {
			return nil, err
		}
	}

	// Watches: a random node watches a record, another writes it.
	phase = time.Now()
	var watchMS []float64
	for i := range min(cfg.watches, cfg.records) {
		ms, err := benchWatch(ctx, nodes, recs[i])
		if errors.Is(err, dht.ErrNotFound) {
			// The watcher's read found no holder: a miss, reported.
			res.Watches++
			res.Misses = append(res.Misses, newMiss(ctx, nodes, i, "watch", recs[i].desc.Key(), err))
			continue
		}
		if err != nil {
			return nil, err
		}
		res.Watches++
		if ms >= 0 {
			res.WatchSeen++
			watchMS = append(watchMS, ms)
		}
	}
	res.WatchP50ms, res.WatchP99ms = percentile(watchMS, 0.5), percentile(watchMS, 0.99)
	res.WatchS = time.Since(phase).Seconds()

	// Churn: kill a fraction, repair, read again.
	res.Killed = int(math.Round(cfg.churn * float64(cfg.nodes)))
	var wg sync.WaitGroup
	for _, i := range rand.Perm(cfg.nodes)[:res.Killed] {
		wg.Add(1)
		go func() { defer wg.Done(); nodes[i].close() }()
	}
	wg.Wait()
	var alive []*benchNode
	for _, n := range nodes {
		if !n.dead {
			alive = append(alive, n)
		}
	}
	t0 := time.Now()
	if err := benchPar(ctx, len(alive), len(alive), func(i int) error { return alive[i].d.Replicate(ctx) }); err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	res.RepairS = time.Since(t0).Seconds()
	phase = time.Now()
	ok, getMS, misses = benchReads(ctx, alive, recs, cfg.parallel, "after_churn")
	res.Misses = append(res.Misses, misses...)
	res.GetAfterChurnS = time.Since(phase).Seconds()
	res.GetSuccessAfterChurn = float64(ok) / float64(cfg.records)
	res.GetAfterChurnP50ms, res.GetAfterChurnP99ms = percentile(getMS, 0.5), percentile(getMS, 0.99)
	res.TotalS = time.Since(began).Seconds()
	res.PeakRSSMB = peakRSSMB()
	if simNet != nil {
		perRTT := func(ms float64) float64 { return math.Round(ms/res.RTTp50ms*100) / 100 }
		res.GetP50RTTs, res.GetAfterChurnP50RTTs, res.SetP50RTTs = perRTT(res.GetP50ms), perRTT(res.GetAfterChurnP50ms), perRTT(res.SetP50ms)
	}
	return res, ctx.Err()
}

// simJoin starts and bootstraps nodes 1.. of a simulated network (node 0
// runs already). As on the Internet, where invites carry hints, not one
// node is everyone's way in: the first simFirst nodes join through node
// 0, with cfg.parallel at once, and bootstrap a second time to fill the
// tables of the earliest; every later node joins through a random
// reachable one of them, simWidth at once (they wait for round trips,
// not CPU). 10,000 joins through node 0 alone, 1024 at once, left it too
// busy to answer within the RPC timeout.
func simJoin(ctx context.Context, cfg benchDHTConfig, nodes []*benchNode, start func(int, []dht.Contact) error) error {
	const simFirst, simWidth = 256, 512
	first := min(simFirst, len(nodes))
	boot := []dht.Contact{nodes[0].d.Self()}
	if err := benchPar(ctx, first-1, cfg.parallel, func(i int) error {
		if err := start(i+1, boot); err != nil {
			return err
		}
		return bootstrapRetry(ctx, nodes[i+1].d)
	}); err != nil {
		return fmt.Errorf("start nodes: %w", err)
	}
	if err := benchPar(ctx, first, cfg.parallel, func(i int) error { return bootstrapRetry(ctx, nodes[i].d) }); err != nil {
		return fmt.Errorf("refresh tables: %w", err)
	}
	var entry []dht.Contact
	for _, n := range nodes[:first] {
		if !n.sim.EP.NAT() {
			entry = append(entry, n.d.Self())
		}
	}
	if err := benchPar(ctx, len(nodes)-first, simWidth, func(i int) error {
		if err := start(first+i, []dht.Contact{entry[rand.N(len(entry))]}); err != nil {
			return err
		}
		return bootstrapRetry(ctx, nodes[first+i].d)
	}); err != nil {
		return fmt.Errorf("start nodes: %w", err)
	}
	return nil
}

// benchFlushQueues sends the nodes' offline queues as the queue loop of
// a daemon would (dht.Options.QueueRetry): a pass (dht.DHT.FlushQueue)
// on every node with writes queued, in parallel, and for those that
// still have some, another pass 1 s later, then one 2 s after that. It
// returns the writes still queued on all nodes; an error only when ctx
// ended (a pass that reached no node leaves its writes counted).
func benchFlushQueues(ctx context.Context, nodes []*benchNode) (left int, _ error) {
	wait := time.Duration(0)
	for pass := 0; pass < 3; pass++ {
		var pending []*benchNode
		for _, n := range nodes {
			if !n.dead && n.d.Pending() > 0 {
				pending = append(pending, n)
			}
		}
		if len(pending) == 0 {
			return 0, nil
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		wait = max(time.Second, 2*wait)
		benchPar(ctx, len(pending), len(pending), func(i int) error {
			pending[i].d.FlushQueue(ctx)
			return nil
		})
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	for _, n := range nodes {
		if !n.dead {
			left += n.d.Pending()
		}
	}
	return left, nil
}

// writeHeapProfile writes the heap profile (after a GC) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// benchReads reads every record from a random node of nodes and returns
// how many came back with the written value, the latencies, and the
// misses (phase names them).
func benchReads(ctx context.Context, nodes []*benchNode, recs []benchRec, parallel int, phase string) (int, []float64, []benchMiss) {
	var (
		mu     sync.Mutex
		ok     int
		misses []benchMiss
	)
	ms := make([]float64, len(recs))
	benchPar(ctx, len(recs), parallel, func(i int) error {
		r := recs[i]
		t0 := time.Now()
		_, v, err := nodes[rand.N(len(nodes))].d.Get(ctx, r.desc.Key(), 0)
		ms[i] = msSince(t0)
		mu.Lock()
		defer mu.Unlock()
		if err == nil && v != nil && !record.Better(v, r.val) && !record.Better(r.val, v) {
			ok++
			return nil
		}
		misses = append(misses, newMiss(ctx, nodes, i, phase, r.desc.Key(), err))
		return nil
	})
	return ok, ms, misses
}

// newMiss describes a read of record k that missed: where the record
// lay among nodes (benchMiss).
func newMiss(ctx context.Context, nodes []*benchNode, i int, phase string, k key.RecordKey, err error) benchMiss {
	m := benchMiss{Record: i, Phase: phase}
	if err != nil {
		m.Err = err.Error()
	}
	nearer := func(a, b key.NodeID) bool {
		for i := range a {
			if da, db := a[i]^k[i], b[i]^k[i]; da != db {
				return da < db
			}
		}
		return false
	}
	// Nodes that can hold records: behind a NAT (--sim) a node is a
	// client and holds none.
	var byDist []*benchNode
	for _, n := range nodes {
		if n.sim == nil || !n.sim.EP.NAT() {
			byDist = append(byDist, n)
		}
	}
	slices.SortFunc(byDist, func(a, b *benchNode) int {
		switch x, y := a.d.Self().ID, b.d.Self().ID; {
		case nearer(x, y):
			return -1
		case nearer(y, x):
			return 1
		}
		return 0
	})
	var holders []*benchNode
	for r, n := range byDist {
		if _, _, err := n.d.GetLocal(ctx, k, 0); err == nil {
			m.HolderRanks = append(m.HolderRanks, r)
			holders = append(holders, n)
		}
	}
	if len(holders) == 0 {
		return m
	}
	first := holders[0].d.Self().ID
	for _, h := range holders {
		c := 0
		for _, x := range h.d.Contacts() {
			if nearer(x.ID, first) {
				c++
			}
		}
		m.NearerKnown = append(m.NearerKnown, c)
	}
	nearest := map[key.NodeID]int{}
	for i, t := range byDist[:min(dht.DefaultR, len(byDist))] {
		nearest[t.d.Self().ID] = i
	}
	m.NearestKnownBy = make([]int, len(nearest))
	for _, n := range nodes {
		for _, x := range n.d.Contacts() {
			if i, ok := nearest[x.ID]; ok {
				m.NearestKnownBy[i]++
			}
		}
	}
	return m
}

// benchWatch has a random node watch r, waits for the lease to be placed,
// writes a new value from another random node and returns the time from
// the start of that Set to the change reaching the watcher, or -1 if it
// did not within 5 s. r.val becomes the new value.
func benchWatch(ctx context.Context, nodes []*benchNode, r benchRec) (float64, error) {
	wn, sn := nodes[rand.N(len(nodes))], nodes[rand.N(len(nodes))]
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := wn.d.Watch(wctx, r.desc.Key(), []uint32{0})
	if err != nil {
		return 0, fmt.Errorf("watch: %w", err)
	}
	time.Sleep(100 * time.Millisecond) // the first lease goes out at once; let it land
	v, err := record.NewValue(r.desc.Key(), 0, r.val.Seq+1, []byte("changed"), r.owner)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := sn.d.Set(ctx, r.desc, 0, v); err != nil {
		return 0, fmt.Errorf("set watched record: %w", err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case c := <-ch:
			if c.Value.Seq == v.Seq {
				*r.val = *v
				return msSince(t0), nil
			}
		case <-timeout:
			*r.val = *v
			return -1, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// benchPar runs fn(0..n-1), width at once, and returns the first error.
func benchPar(ctx context.Context, n, width int, fn func(i int) error) error {
	sem := make(chan struct{}, width)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	return ctx.Err()
}

// bootstrapRetry bootstraps d, trying again (at most 5 times, 200 ms
// apart) when the contacts were too busy to answer in time: 200 nodes on
// two shared cores queue behind each other.
func bootstrapRetry(ctx context.Context, d *dht.DHT) error {
	var err error
	for try := 0; try < 5; try++ {
		if err = d.Bootstrap(ctx); err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// percentile returns the p-quantile (nearest rank) of xs, 0 for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return math.Round(s[max(0, min(i, len(s)-1))]*100) / 100
}
