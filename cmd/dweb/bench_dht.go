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
	"syscall"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/prometheus/client_golang/prometheus"
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
	SetQueued            int     `json:"set_queued"` // Sets that reached no holder and were queued offline (never retried here)
	SetP50ms             float64 `json:"set_p50_ms"`
	SetP99ms             float64 `json:"set_p99_ms"`
	MeanHops             float64 `json:"mean_hops"` // rounds of a Get lookup until its nearest holder was asked
	Watches              int     `json:"watches"`
	WatchSeen            int     `json:"watch_seen"` // changes that reached their watcher (a watch whose first read failed is a miss)
	WatchP50ms           float64 `json:"watch_p50_ms"`
	WatchP99ms           float64 `json:"watch_p99_ms"`
	RepairS              float64 `json:"repair_s"` // one replication sweep on every survivor, in parallel
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
	// Misses: each read that did not return the written value, with where
	// the record lay then (empty when every read succeeded).
	Misses []benchMiss `json:"misses,omitempty"`
}

// benchMiss is one failed read of the bench: the record's index, the
// phase ("get", "watch" or "after_churn"), the reader's error, and the
// ranks (0 = nearest) by XOR distance to the record's key, among the
// nodes live in that phase, of the nodes that held the record just after
// the read (holders include earlier readers, which keep what they read).
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
// endpoint on 127.0.0.1 and its own Pebble store) in this process.
func benchDHTCmd(a *app) *cobra.Command {
	var cfg benchDHTConfig
	var dir string
	cmd := &cobra.Command{
		Use:   "dht",
		Short: "a loopback network of DHT nodes: set/get/watch latencies, hops, and reads after churn (prints JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.nodes < 2 || cfg.nodes > 1000 {
				return &usageError{fmt.Errorf("--nodes %d: want 2..1000", cfg.nodes)}
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
	cmd.Flags().IntVar(&cfg.parallel, "parallel", 16, "operations in flight at once")
	cmd.Flags().DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "give up after this long")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the node stores (default: the system temp dir)")
	cmd.Flags().BoolVar(&cfg.fixed, "fixed-timeouts", false, "baseline: lookups in rounds that wait up to the RPC timeout, no replacement cache (dht.Options.FixedTimeouts)")
	cmd.Flags().StringVar(&cfg.memProfile, "memprofile", "", "write a heap profile here after the first reads (for go tool pprof)")
	return cmd
}

type benchDHTConfig struct {
	nodes, records, watches, parallel int
	churn                             float64
	timeout                           time.Duration
	dir                               string
	fixed                             bool
	memProfile                        string
}

type benchNode struct {
	ep   *transport.Endpoint
	db   *store.DB
	d    *dht.DHT
	dead bool
}

func (n *benchNode) close() {
	n.dead = true
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
	reg := prometheus.NewRegistry()
	if err := reg.Register(metrics); err != nil {
		return nil, err
	}
	res := &benchDHTResult{Nodes: cfg.nodes, Records: cfg.records, Churn: cfg.churn, Replicas: dht.DefaultR, GoMaxProcs: runtime.GOMAXPROCS(0), FixedTimeouts: cfg.fixed}

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
	start := func(i int, boot []dht.Contact) error {
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
		d, err := dht.New(dht.Options{
			Endpoint:  ep,
			Store:     db,
			Bootstrap: boot,
			// A dead node costs one timeout per caller, which dominates
			// reads after churn; under the load of 200 nodes starting on
			// 2 cores, 1 s is too short for a busy bootstrap node.
			RPCTimeout: 2 * time.Second,
			// Maintenance is driven by the benchmark (Replicate) so that
			// the phases are measured apart.
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
		})
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
	res.StartS = time.Since(began).Seconds()

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
	res.SetQueued = int(queued.Load())

	// Reads, each from a random node.
	hops0, n0 := hopStats(reg)
	ok, getMS, misses := benchReads(ctx, nodes, recs, cfg.parallel, "get")
	res.Misses = append(res.Misses, misses...)
	hops1, n1 := hopStats(reg)
	if n1 > n0 {
		res.MeanHops = (hops1 - hops0) / (n1 - n0)
	}
	res.GetSuccess = float64(ok) / float64(cfg.records)
	res.GetP50ms, res.GetP99ms = percentile(getMS, 0.5), percentile(getMS, 0.99)
	for _, n := range nodes {
		st := n.ep.Stats()
		res.ConnsAfterReads += st.Conns
		res.PooledAfterReads += st.Pooled
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
	ok, getMS, misses = benchReads(ctx, alive, recs, cfg.parallel, "after_churn")
	res.Misses = append(res.Misses, misses...)
	res.GetSuccessAfterChurn = float64(ok) / float64(cfg.records)
	res.GetAfterChurnP50ms, res.GetAfterChurnP99ms = percentile(getMS, 0.5), percentile(getMS, 0.99)
	res.TotalS = time.Since(began).Seconds()
	res.PeakRSSMB = peakRSSMB()
	return res, ctx.Err()
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

// peakRSSMB is the process's peak resident set size in MB (ru_maxrss, which
// Linux gives in KiB), 0 where getrusage fails.
func peakRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return math.Round(float64(ru.Maxrss)/1024*10) / 10
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
	byDist := slices.Clone(nodes)
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
	for _, t := range byDist[:min(dht.DefaultR, len(byDist))] {
		c := 0
		for _, n := range nodes {
			if slices.ContainsFunc(n.d.Contacts(), func(x dht.Contact) bool { return x.ID == t.d.Self().ID }) {
				c++
			}
		}
		m.NearestKnownBy = append(m.NearestKnownBy, c)
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

// hopStats returns the sum and count of dweb_dht_lookup_hops{op="get"}.
func hopStats(reg *prometheus.Registry) (sum, count float64) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() != "dweb_dht_lookup_hops" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == "get" {
					sum += m.GetHistogram().GetSampleSum()
					count += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return sum, count
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
