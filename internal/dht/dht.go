// Package dht is dweb's Kademlia DHT (Maymounkov & Mazières 2002) of signed
// records (internal/record), over QUIC streams of internal/transport.
//
// Nodes and records share one 256-bit key space with the XOR metric. A
// record lives on the R nodes closest to its key; every holder verifies the
// descriptor and the value signature on every store and keeps the better
// value by record.Better, so holders converge whatever order writes arrive
// in. Lookups are iterative, Alpha requests in flight per round.
//
// Records are kept in place as nodes come and go (replicate.go): a joining
// node is handed the records it is now near, a replication sweep brings
// the R nearest up to date after holders leave, owners republish, and
// records nobody refreshed for 48 h expire. Readers can watch subkeys
// (watch.go); writes made offline are queued (queue.go). Per-peer limits
// (limits.go) and Prometheus metrics (metrics.go) guard and count it all.
// docs/dht.md describes the protocol, rules and intervals.
package dht

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/quic-go/quic-go"
)

// Endpoint is what the DHT needs of a transport endpoint;
// *transport.Endpoint implements it.
type Endpoint interface {
	Handle(p transport.Protocol, h transport.Handler)
	ID() key.NodeID
	LocalAddr() netip.AddrPort
	OpenStream(ctx context.Context, id key.NodeID, addr netip.AddrPort, p transport.Protocol) (*quic.Stream, error)
}

// Stream is what the DHT uses of a bidirectional stream; *quic.Stream
// implements it. Close ends the writing side only (QUIC's FIN); the
// Cancel methods reset a direction with an application error code, and
// the other end's Read or Write then fails with a *quic.StreamError
// whose Remote is true. A read or write past the deadline fails with an
// error that is os.ErrDeadlineExceeded.
type Stream interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
	CancelRead(code quic.StreamErrorCode)
	CancelWrite(code quic.StreamErrorCode)
}

// StreamHandler serves one inbound stream of a StreamEndpoint; ctx and
// peer are as for a transport.Handler.
type StreamHandler func(ctx context.Context, peer transport.Peer, s Stream)

// StreamEndpoint is an endpoint whose streams need not be QUIC streams:
// the simulated network of internal/dht/dhtsim. It may also have
// Resources() *rcmgr.Manager and PooledAddr(key.NodeID)
// (netip.AddrPort, bool) as *transport.Endpoint does; the DHT uses them
// when present.
type StreamEndpoint interface {
	HandleStreams(p transport.Protocol, h StreamHandler)
	ID() key.NodeID
	LocalAddr() netip.AddrPort
	OpenStream(ctx context.Context, id key.NodeID, addr netip.AddrPort, p transport.Protocol) (Stream, error)
}

// quicEndpoint runs the DHT over an Endpoint: its *quic.Stream is passed
// on as a Stream, unchanged.
type quicEndpoint struct{ ep Endpoint }

func (q quicEndpoint) HandleStreams(p transport.Protocol, h StreamHandler) {
	if h == nil {
		q.ep.Handle(p, nil)
		return
	}
	q.ep.Handle(p, func(ctx context.Context, peer transport.Peer, s *quic.Stream) { h(ctx, peer, s) })
}

func (q quicEndpoint) ID() key.NodeID            { return q.ep.ID() }
func (q quicEndpoint) LocalAddr() netip.AddrPort { return q.ep.LocalAddr() }

func (q quicEndpoint) OpenStream(ctx context.Context, id key.NodeID, addr netip.AddrPort, p transport.Protocol) (Stream, error) {
	s, err := q.ep.OpenStream(ctx, id, addr, p)
	if err != nil {
		return nil, err // not a nil *quic.Stream in a non-nil Stream
	}
	return s, nil
}

// Defaults for zero Options fields.
const (
	DefaultK          = 20
	DefaultAlpha      = 3
	DefaultR          = 8
	DefaultRPCTimeout = 5 * time.Second

	// DefaultReplicateInterval is the period of the replication sweep: each
	// record this node is among the R closest to is compared (INSPECT) with
	// the current R closest, and what they lack is sent.
	DefaultReplicateInterval = 10 * time.Minute
	// DefaultRepublishInterval is how often a node re-sends the records it
	// wrote, refreshing them on their holders.
	DefaultRepublishInterval = 12 * time.Hour
	// DefaultExpiry is how long holders keep a record nobody refreshed
	// (go-libp2p-kad-dht's record expiry).
	DefaultExpiry = 48 * time.Hour
	// DefaultRefreshInterval is the period of the self-lookup that keeps the
	// routing table's neighbourhood current (Kademlia's bucket refresh).
	DefaultRefreshInterval = 15 * time.Minute
	// DefaultQueueRetry is how often queued offline writes are retried.
	DefaultQueueRetry = 30 * time.Second
	// DefaultWatchLease is the lease a watcher asks holders for, and
	// MaxWatchLease the longest a holder grants.
	DefaultWatchLease = 5 * time.Minute
	MaxWatchLease     = 30 * time.Minute
)

// maxRounds bounds the rounds of one iterative lookup.
const maxRounds = 32

// Options configure a DHT. Endpoint (or Streams) and Store are required;
// other zero fields take the documented defaults.
type Options struct {
	Endpoint Endpoint // the node's transport endpoint; the DHT registers transport.ProtoDHT on it
	// Streams, when Endpoint is nil, is the endpoint instead: one whose
	// streams are not QUIC's (internal/dht/dhtsim's simulated network).
	Streams   StreamEndpoint
	Store     *store.DB // the node's store; records go under store.PrefixRecord, offline writes under "dhtq/"
	Bootstrap []Contact // nodes to join through (Bootstrap)
	K         int       // bucket size and lookup width; default DefaultK (20)
	Alpha     int       // lookup concurrency; default DefaultAlpha (3)
	R         int       // replicas per record; default DefaultR (8)
	// RPCTimeout bounds one request, from opening the stream (dialing
	// first when no connection is pooled) to reading the response; default
	// DefaultRPCTimeout. A lookup waits less for each query: the
	// contact's retransmission timeout from its measured round trips
	// (RFC 6298; rtt.go), at least 50 ms and at most RPCTimeout/4.
	RPCTimeout time.Duration
	// FixedTimeouts turns off adaptive timeouts and the routing table's
	// replacement cache: lookups run in rounds of Alpha and wait for every
	// query up to RPCTimeout, and a contact that fails is dropped. It is
	// the behaviour before both, kept as the baseline of benchmarks
	// (`dweb bench dht --fixed-timeouts`).
	FixedTimeouts bool
	Logger        *slog.Logger // nil: discard

	// Maintenance intervals (see docs/dht.md). Zero: the default; negative:
	// never (the work can still be run by Replicate, Republish, Expire).
	ReplicateInterval time.Duration // default DefaultReplicateInterval
	RepublishInterval time.Duration // default DefaultRepublishInterval
	RefreshInterval   time.Duration // default DefaultRefreshInterval
	QueueRetry        time.Duration // default DefaultQueueRetry
	Expiry            time.Duration // records not refreshed for this long are dropped; default DefaultExpiry

	// WatchLease is the lease Watch asks for; default DefaultWatchLease,
	// at most MaxWatchLease. WatchRenew is how often Watch renews it and
	// checks for missed pushes; default WatchLease/3.
	WatchLease time.Duration
	WatchRenew time.Duration

	// Limits. Zero: the default; negative: no limit. "Prefix" is an IPv4
	// /24 or IPv6 /48 (rcmgr.Prefix); loopback and private addresses count
	// in no prefix (and loopback in no IP) unless the resource manager's
	// Limits.LocalAddrs says so.
	RequestRate         float64 // requests per second per peer; default DefaultRequestRate
	RequestBurst        int     // default DefaultRequestBurst
	PrefixRequestRate   float64 // requests per second per prefix; default DefaultPrefixRequestRate
	PrefixRequestBurst  int     // default DefaultPrefixBurst
	MaxRecordsPerPeer   int     // default DefaultMaxRecordsPerPeer
	MaxRecordsPerIP     int     // default DefaultMaxRecordsPerIP
	MaxRecordsPerPrefix int     // default DefaultMaxRecordsPerPrefix
	MaxWatchesPerPeer   int     // default DefaultMaxWatchesPerPeer
	MaxWatchesPerPrefix int     // default DefaultMaxWatchesPerPrefix
	MaxPerIPPrefix      int     // routing-table contacts per prefix per bucket; default DefaultMaxPerIPPrefix
	MaxPerIPPrefixAll   int     // the same over the whole table; default DefaultMaxPerIPPrefixAll
	// Resources is the node's resource manager, in which the record and
	// watch quotas and the request rates are counted (their refusals in
	// its metrics too). Nil: the endpoint's (transport.Endpoint.Resources),
	// or if it has none a private one without metrics.
	Resources *rcmgr.Manager
	// DiversityAllAddrs applies the IP-prefix limits to loopback and
	// private addresses too, which they skip by default (one host or LAN
	// is one operator); for tests of the limit on loopback.
	DiversityAllAddrs bool

	// Client starts the node in client mode (SetClient changes it later):
	// for a node others cannot dial. Its messages carry the client flag,
	// so other nodes keep it out of their routing tables and holder sets;
	// it still reads, writes and watches through them. docs/dht.md,
	// "Client mode".
	Client bool

	// Membership checks the values of membership-checked records
	// (record.MembershipSchema) against their membership lists; group
	// provides it (group.Holders). Nil: this node stores no value of such
	// a record (record.ErrBadSchema).
	Membership MembershipChecker

	// Metrics receives the DHT's counters; nil: a private set nobody
	// reads. Share one Metrics between DHTs and register it once.
	Metrics *Metrics

	// OnWrite, if not nil, hears what became of this node's own writes
	// (Set): sent to a holder at once, queued offline, and later sent or
	// superseded from the queue (queue.go). It is called synchronously,
	// from Set or the queue's goroutine, and must neither block nor call
	// into the DHT.
	OnWrite func(WriteEvent)
}

// endpoint returns Endpoint, or Streams when Endpoint is nil, for the
// optional methods (Resources, PooledAddr) the DHT looks for on it.
func (o *Options) endpoint() any {
	if o.Endpoint != nil {
		return o.Endpoint
	}
	return o.Streams
}

func (o *Options) setDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if o.K <= 0 {
		o.K = DefaultK
	}
	if o.Alpha <= 0 {
		o.Alpha = DefaultAlpha
	}
	if o.R <= 0 {
		o.R = DefaultR
	}
	if o.RPCTimeout <= 0 {
		o.RPCTimeout = DefaultRPCTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def(&o.ReplicateInterval, DefaultReplicateInterval)
	def(&o.RepublishInterval, DefaultRepublishInterval)
	def(&o.RefreshInterval, DefaultRefreshInterval)
	def(&o.QueueRetry, DefaultQueueRetry)
	if o.Expiry <= 0 {
		o.Expiry = DefaultExpiry
	}
	if o.WatchLease <= 0 {
		o.WatchLease = DefaultWatchLease
	}
	o.WatchLease = min(o.WatchLease, MaxWatchLease)
	if o.WatchRenew <= 0 || o.WatchRenew >= o.WatchLease {
		o.WatchRenew = o.WatchLease / 3
	}
	if o.RequestRate == 0 {
		o.RequestRate = DefaultRequestRate
	}
	if o.RequestBurst <= 0 {
		o.RequestBurst = DefaultRequestBurst
	}
	if o.PrefixRequestRate == 0 {
		o.PrefixRequestRate = DefaultPrefixRequestRate
	}
	if o.PrefixRequestBurst <= 0 {
		o.PrefixRequestBurst = DefaultPrefixBurst
	}
	if o.Resources == nil {
		if r, ok := o.endpoint().(interface{ Resources() *rcmgr.Manager }); ok {
			o.Resources = r.Resources()
		}
	}
	lim := func(v *int, d int) {
		if *v == 0 {
			*v = d
		} else if *v < 0 {
			*v = 0 // no limit
		}
	}
	lim(&o.MaxRecordsPerPeer, DefaultMaxRecordsPerPeer)
	lim(&o.MaxRecordsPerIP, DefaultMaxRecordsPerIP)
	lim(&o.MaxRecordsPerPrefix, DefaultMaxRecordsPerPrefix)
	lim(&o.MaxWatchesPerPeer, DefaultMaxWatchesPerPeer)
	lim(&o.MaxWatchesPerPrefix, DefaultMaxWatchesPerPrefix)
	lim(&o.MaxPerIPPrefix, DefaultMaxPerIPPrefix)
	lim(&o.MaxPerIPPrefixAll, DefaultMaxPerIPPrefixAll)
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
}

// DHT is one node's view of the DHT. Its methods are safe for concurrent
// use.
type DHT struct {
	ep    StreamEndpoint
	rawEP any // Options.Endpoint or Options.Streams, for its optional methods (pooled)
	db    *store.DB
	opts  Options
	log   *slog.Logger
	self  Contact
	table *table
	rtt   *rtts // round-trip estimates (rtt.go)
	m     *Metrics

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	boot     []Contact // Options.Bootstrap plus AddContacts hints
	inflight sync.WaitGroup
	bg       sync.WaitGroup // maintenance loop, hand-offs, pushes, watches

	recMu sync.Mutex // serialises read-compare-write of local records

	rate   *rcmgr.Rate
	quota  *quotas
	watchQ *rcmgr.Quota // watches served, by watcher

	watchMu  sync.Mutex
	watches  map[key.RecordKey]map[watchRef]*served // watches served to others, by record
	watchers map[uint64]*watcher                    // this node's own watches, by ID
	pushSem  chan struct{}                          // bounds concurrent VALUE_CHANGED pushes

	// answerDelay, in nanoseconds, holds back every answer this node
	// serves: tests make slow but live nodes with it.
	answerDelay atomic.Int64

	deadMu sync.Mutex
	dead   map[key.NodeID]deadMark  // nodes whose last RPC failed, skipped by lookups for deadTTL
	seenAt map[key.NodeID]time.Time // when each node last answered or called this run (LastSeen)
	// seenWait, when not nil, is closed when the next node answers or
	// calls (nextSeen): watches that found no node to lease wait on it.
	seenWait chan struct{}

	client   atomic.Bool // this node is in client mode (client.go)
	clientMu sync.Mutex
	clients  map[key.NodeID]time.Time // peers that said they are clients, kept out of the table and lookups

	queueKick chan struct{} // wakes the offline-write queue

	rejoinMu   sync.Mutex    // one rejoin at a time (TryLock)
	lastRejoin time.Time     // when the last rejoin started; under rejoinMu
	qs         queueState    // the queue's retries (queue.go)
	handoffs   chan struct{} // bounds concurrent hand-offs served
}

// New returns a DHT serving transport.ProtoDHT on opts.Endpoint, with its
// maintenance (replication sweep, republishing, expiry, table refresh,
// offline-write queue) running in the background until Close. It sends
// nothing before the first maintenance tick; call Bootstrap to join.
func New(opts Options) (*DHT, error) {
	var ep StreamEndpoint = opts.Streams
	if opts.Endpoint != nil {
		ep = quicEndpoint{opts.Endpoint}
	}
	if ep == nil || opts.Store == nil {
		return nil, errors.New("dht: Options.Endpoint and Options.Store are required")
	}
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	self := Contact{ID: ep.ID(), Addr: ep.LocalAddr()}
	d := &DHT{
		ep:     ep,
		rawEP:  opts.endpoint(),
		db:     opts.Store,
		opts:   opts,
		log:    opts.Logger.With("dht", self.ID.String()[:8]),
		self:   self,
		table:  newTable(self.ID, opts.K),
		rtt:    newRTTs(),
		m:      opts.Metrics,
		ctx:    ctx,
		cancel: cancel,
		rate: opts.Resources.Rate(KindRequest, rcmgr.RateLimit{
			PeerRate: opts.RequestRate, PeerBurst: opts.RequestBurst,
			PrefixRate: opts.PrefixRequestRate, PrefixBurst: opts.PrefixRequestBurst,
		}),
		quota: newQuotas(opts.Resources.Quota(KindRecord, rcmgr.Limit{
			Peer: opts.MaxRecordsPerPeer, IP: opts.MaxRecordsPerIP, Prefix: opts.MaxRecordsPerPrefix,
		})),
		watchQ: opts.Resources.Quota(KindWatch, rcmgr.Limit{
			Peer: opts.MaxWatchesPerPeer, Prefix: opts.MaxWatchesPerPrefix, System: maxServedWatches,
		}),
		watches:   map[key.RecordKey]map[watchRef]*served{},
		watchers:  map[uint64]*watcher{},
		pushSem:   make(chan struct{}, 64),
		dead:      map[key.NodeID]deadMark{},
		seenAt:    map[key.NodeID]time.Time{},
		clients:   map[key.NodeID]time.Time{},
		queueKick: make(chan struct{}, 1),
		handoffs:  make(chan struct{}, 4),
	}
	d.table.perBucket, d.table.perTable = opts.MaxPerIPPrefix, opts.MaxPerIPPrefixAll
	d.table.allAddrs = opts.DiversityAllAddrs
	d.table.refused = func() { d.m.refused(ReasonIPDiversity) }
	d.client.Store(opts.Client)
	d.AddContacts(opts.Bootstrap...)
	d.ep.HandleStreams(transport.ProtoDHT, d.serve)
	d.bg.Add(1)
	go d.maintain()
	return d, nil
}

// Self returns this node's contact.
func (d *DHT) Self() Contact { return d.self }

// AddContacts adds hints to join through (from an invite, say): they are
// tried by Bootstrap and put in the routing table. Contacts that are this
// node or unusable are ignored.
func (d *DHT) AddContacts(cs ...Contact) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range cs {
		if c.ID == d.self.ID || c.validate() != nil {
			continue
		}
		if !slices.ContainsFunc(d.boot, func(b Contact) bool { return b.ID == c.ID }) {
			d.boot = append(d.boot, c)
		}
		d.table.seen(c)
	}
}

// Contacts returns a snapshot of the routing table's live contacts: not
// those kept stale after a failure with no replacement (routing.go),
// which the DHT still tries itself but gives to no one, so that callers
// (invite hints, saved contacts, peer lists) never hand a dead node on.
func (d *DHT) Contacts() []Contact { return d.table.live() }

// Bootstrap joins the network: it sends FIND_NODE(self) to every bootstrap
// contact (with none, to the nearest contacts of the routing table), then
// runs a lookup of its own ID so that the nodes nearest to it learn of it
// and it learns of them. It then asks those nearest nodes to hand over the
// records this node is now among the R nearest to (HANDOFF; not in client
// mode, where this node holds no records for others), and sends the
// offline-write queue. It fails with ErrNoPeers if no bootstrap contact
// answered (or there is none).
func (d *DHT) Bootstrap(ctx context.Context) error {
	d.mu.Lock()
	boot := slices.Clone(d.boot)
	d.mu.Unlock()
	if len(boot) == 0 {
		// Stale contacts too: after an outage of this node's network
		// they are the ones to try.
		boot = d.table.all()
		sortByDistance(d.self.ID, boot)
		boot = boot[:min(len(boot), d.opts.K)]
	}
	if len(boot) == 0 {
		return fmt.Errorf("%w: no bootstrap contacts", ErrNoPeers)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ok      int
		lastErr error
	)
	for _, c := range boot {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.findNode(ctx, c, d.self.ID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				lastErr = err
				return
			}
			ok++
		}()
	}
	wg.Wait()
	if ok == 0 {
		return fmt.Errorf("%w: bootstrap: none of %d contacts answered: %v", ErrNoPeers, len(boot), lastErr)
	}
	near, err := d.closest(ctx, "bootstrap", d.self.ID, d.opts.K)
	if err != nil {
		return fmt.Errorf("dht: bootstrap lookup: %w", err)
	}
	d.refreshFar(ctx)
	if !d.client.Load() {
		d.askHandoff(ctx, near)
	}
	d.kickQueue()
	return nil
}

// refreshFar runs a lookup of a random ID in each bucket farther from this
// node than its nearest contact's that holds no live contact (Kademlia
// §2.3: a joining node "refreshes all k-buckets further away than its
// closest neighbor"; only the empty ones here). A self-lookup fills only
// the buckets near this node: without this, nodes that joined in a
// 300-node simulation (dhtsim) were left with no contact in the half of
// the key space across from them, their Sets' lookups ended on the nodes
// nearest to the key within their own half, and readers, whose lookups
// found the true nearest, did not find the record. The lookups run one
// after another, farthest bucket first, and stop at one that brought no
// new contact into the table: the nodes it could ask know no one else
// (a small network), and more would only spend their request budget.
func (d *DHT) refreshFar(ctx context.Context) {
	for _, i := range d.table.emptyFar() {
		if ctx.Err() != nil {
			return
		}
		if !slices.Contains(d.table.emptyFar(), i) {
			continue // an earlier lookup filled it
		}
		before := d.table.size()
		if _, err := d.closest(ctx, "refresh", randomInBucket(d.self.ID, i), d.opts.K); err != nil {
			d.log.Debug("refresh bucket", "bucket", i, "err", err)
		}
		if d.table.size() <= before {
			return
		}
	}
}

// Close stops serving DHT requests and waits for the ones in flight; it
// cancels this DHT's outgoing requests. It does not close the endpoint or
// the store, which the caller owns. Close is idempotent.
func (d *DHT) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.ep.HandleStreams(transport.ProtoDHT, nil)
	d.cancel()
	d.inflight.Wait()
	d.bg.Wait()
	return nil
}

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

// findNode sends FIND_NODE(target) to c.
func (d *DHT) findNode(ctx context.Context, c Contact, target [32]byte) ([]Contact, error) {
	resp, err := d.call(ctx, c, &request{Op: opFindNode, Target: target[:]})
	if err != nil {
		return nil, err
	}
	if resp.Client {
		return nil, fmt.Errorf("dht: %s: %w", c.ID, errClientPeer)
	}
	if resp.Code != codeOK {
		return nil, &RemoteError{Peer: c.ID, Code: resp.Code, Msg: resp.Msg}
	}
	return fromWire(resp.Closer), nil
}

// Ping checks that c answers.
func (d *DHT) Ping(ctx context.Context, c Contact) error {
	resp, err := d.call(ctx, c, &request{Op: opPing})
	if err == nil && resp.Code != codeOK {
		err = &RemoteError{Peer: c.ID, Code: resp.Code, Msg: resp.Msg}
	}
	return err
}

// call sends one request to c on a new stream and reads the response,
// within RPCTimeout. A transport failure counts against c (unless c's
// resource manager refused the stream: transport.Refused, or the
// caller's own context ended first, by cancellation or by a deadline no
// later than RPCTimeout's): a request that ran out its time, by ctx or
// by the stream deadline set from it, is a timeout, whichever of the two
// fired first. A failure that is sure (fail) evicts
// c from the routing table (table.failed: replaced from the bucket's
// replacement cache, or marked stale), one that is not only marks it
// stale; either leaves it out of reads' lookups for deadTTL, and a sure
// one out of every lookup. An answer marks it seen, unless it carries the
// client flag (then c is removed from the table and remembered as a
// client), and its round trip is a sample of c's RTT estimate (rtt.go).
func (d *DHT) call(ctx context.Context, c Contact, req *request) (*response, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, d.opts.RPCTimeout)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()
	dl, _ := ctx.Deadline()
	dialed := !d.pooled(c.ID)
	t0 := time.Now()
	resp, err := d.roundTrip(ctx, c, req)
	if err != nil {
		if d.ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %v", ErrClosed, err)
		}
		// The request ran out its time either way: ctx's timer, or the
		// stream's deadline (roundTrip sets it to ctx's), whichever fired
		// first; the stream's often does, and ctx.Err is then still nil.
		timedOut := ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)
		// The caller's own end is not c's failure: its cancellation, or
		// its deadline when that came no later than RPCTimeout's.
		callerEnded := parent.Err() != nil
		if pdl, ok := parent.Deadline(); ok && timedOut && !pdl.After(dl) {
			callerEnded = true
		}
		// A node that refused us at one of its limits is alive: it stays.
		if !callerEnded && (ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded)) && !transport.Refused(err) {
			sure := d.fail(c.ID, timedOut)
			switch {
			case d.opts.FixedTimeouts:
				d.table.remove(c.ID)
			case sure:
				d.table.failed(c.ID)
			default:
				d.table.suspect(c.ID)
			}
			d.rtt.forget(c.ID)
			if timedOut && !sure {
				return nil, fmt.Errorf("dht: %s: %w: %w", c, errTimedOut, err)
			}
		}
		return nil, fmt.Errorf("dht: %s: %w", c, err)
	}
	d.rtt.sample(c.ID, time.Since(t0), dialed)
	d.noteClient(c.ID, resp.Client)
	if !resp.Client {
		d.table.seen(c)
	}
	d.markSeen(c.ID)
	return resp, nil
}

// errTimedOut marks a request that ran out RPCTimeout to a node not yet
// sure to be dead (deadMark): the request may be worth once more
// (callAgain).
var errTimedOut = errors.New("no answer within the RPC timeout")

// callAgain is call, sent once more when it ran out RPCTimeout on a node
// not yet sure to be dead. The paths that place a record on nodes a
// lookup has just found alive use it: there a timeout is far more likely
// a moment's overload than a node gone, and leaving the node out puts
// the record where readers do not look.
func (d *DHT) callAgain(ctx context.Context, c Contact, req *request) (*response, error) {
	resp, err := d.call(ctx, c, req)
	if err != nil && errors.Is(err, errTimedOut) && ctx.Err() == nil {
		return d.call(ctx, c, req)
	}
	return resp, err
}

// deadTTL is how long a node whose RPC failed is left out of lookups
// (peers may still list it until they notice too).
const deadTTL = time.Minute

// maxSeenAt bounds the nodes LastSeen remembers; past it, the ones not
// heard from for longest are forgotten first.
const maxSeenAt = 4096

// deadMark is the failure of a node's last request, or its clean
// shutdown. A request that ran out its whole RPCTimeout once is weak
// evidence: on a machine or path overloaded for a moment a live node
// answers that late (measured: TestScale under the race detector with
// two CPU burners marked some of a record's nearest nodes so, and writes
// skipped them), so such a node is only suspected. It is sure to be dead
// after a clean shutdown (PeerShutdown), a request that failed before its
// timeout (the connection closed, the handshake refused), or a second
// failure in a row within deadTTL.
type deadMark struct {
	at   time.Time
	sure bool
}

// fail records that a request to id failed, by running out RPCTimeout
// (timedOut) or otherwise, and reports whether id is now sure to be dead
// (deadMark).
func (d *DHT) fail(id key.NodeID, timedOut bool) (sure bool) {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	now := time.Now()
	sure = !timedOut
	if m, ok := d.dead[id]; ok && now.Sub(m.at) < deadTTL {
		sure = true
	}
	d.setDeadLocked(id, deadMark{at: now, sure: sure})
	return sure
}

func (d *DHT) setDeadLocked(id key.NodeID, m deadMark) {
	if len(d.dead) > 4096 {
		for x, o := range d.dead {
			if m.at.Sub(o.at) > deadTTL {
				delete(d.dead, x)
			}
		}
	}
	d.dead[id] = m
}

// markSeen records that id answered or called: it is not dead, and its
// last-seen time becomes now.
func (d *DHT) markSeen(id key.NodeID) {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	now := time.Now()
	delete(d.dead, id)
	if _, ok := d.seenAt[id]; !ok && len(d.seenAt) >= maxSeenAt {
		var oldest key.NodeID
		var at time.Time
		for x, t := range d.seenAt {
			if at.IsZero() || t.Before(at) {
				oldest, at = x, t
			}
		}
		delete(d.seenAt, oldest)
	}
	d.seenAt[id] = now
	if d.seenWait != nil {
		close(d.seenWait)
		d.seenWait = nil
	}
	d.queueNodeSeen()
}

// PeerShutdown records that node id shut down cleanly (its connection
// closed as its endpoint closed: transport.Endpoint.SetPeerShutdown):
// lookups leave it out, as a node sure to be dead (deadMark), until it
// is heard from again, rather than each waiting out RPCTimeout on it.
func (d *DHT) PeerShutdown(id key.NodeID) {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	d.setDeadLocked(id, deadMark{at: time.Now(), sure: true})
}

// LastSeen returns when node id last answered a request of this node or
// sent it one, during this run; the zero time if it has not. Contacts
// added from outside (Options.Bootstrap, AddContacts) are not seen until
// they answer.
func (d *DHT) LastSeen(id key.NodeID) time.Time {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	return d.seenAt[id]
}

// nextSeen returns a channel closed when a node next answers a request of
// this node or calls it.
func (d *DHT) nextSeen() <-chan struct{} {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	if d.seenWait == nil {
		d.seenWait = make(chan struct{})
	}
	return d.seenWait
}

// isDead reports whether id failed within deadTTL; with sure, only if it
// is sure to be dead (deadMark).
func (d *DHT) isDead(id key.NodeID, sure bool) bool {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	m, ok := d.dead[id]
	return ok && time.Since(m.at) < deadTTL && (m.sure || !sure)
}

// unixTime is t in Unix seconds, 0 for the zero time.
func unixTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// roundTrip sends req (with this node's client flag set on a copy: req
// may be shared by concurrent calls) and reads the response.
func (d *DHT) roundTrip(ctx context.Context, c Contact, req *request) (*response, error) {
	msg := *req
	msg.Client = d.client.Load()
	s, err := d.ep.OpenStream(ctx, c.ID, c.Addr, transport.ProtoDHT)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() {
		s.CancelRead(codeCanceled)
		s.CancelWrite(codeCanceled)
	})
	defer stop()
	defer s.CancelRead(transport.CodeNoError)
	if err := transport.WriteMsg(s, &msg); err != nil {
		// A peer may answer before reading the whole request (a refusal:
		// rate limit) and stop reading; its answer is still there to read.
		var se *quic.StreamError
		if !errors.As(err, &se) || !se.Remote {
			s.CancelWrite(codeCanceled)
			return nil, fmt.Errorf("send request: %w", err)
		}
		var resp response
		if rerr := transport.ReadMsg(s, MaxMessageSize, &resp); rerr != nil {
			return nil, fmt.Errorf("send request: %w (and no answer: %v)", err, rerr)
		}
		return &resp, nil
	}
	s.Close()
	var resp response
	if err := transport.ReadMsg(s, MaxMessageSize, &resp); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return &resp, nil
}

// codeCanceled resets a stream whose request was given up.
const codeCanceled quic.StreamErrorCode = 0x100

// serve handles one inbound DHT stream.
func (d *DHT) serve(ctx context.Context, peer transport.Peer, s Stream) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.inflight.Add(1)
	d.mu.Unlock()
	defer d.inflight.Done()

	deadline := time.Now().Add(d.opts.RPCTimeout)
	s.SetDeadline(transport.Within(ctx, deadline))
	if err := d.rate.Allow(peer.ID, peer.Addr.Addr(), time.Now()); err != nil {
		d.m.refused(ReasonRateLimited)
		transport.WriteMsg(s, &response{Code: codeRateLimited, Msg: fmt.Sprintf("%v: %v", ErrRateLimited, err), Client: d.client.Load()})
		return
	}
	var req request
	if err := transport.ReadMsg(s, MaxMessageSize, &req); err != nil {
		d.log.Debug("bad request", "peer", peer.ID.String(), "err", err)
		if !errors.Is(err, io.EOF) {
			reason := refusalReason(err)
			if reason == "" {
				reason = ReasonMalformed
			}
			d.m.refused(reason)
			code := errCode(err)
			if code == codeInternal {
				code = codeBadRequest
			}
			transport.WriteMsg(s, &response{Code: code, Msg: "bad request: " + err.Error(), Client: d.client.Load()})
		}
		return
	}
	transport.Opened(ctx)
	s.SetDeadline(deadline)
	// The caller's packets come from its one UDP socket, so the address
	// seen is the address it listens on; a client is not dialable there
	// and stays out of the table.
	d.noteClient(peer.ID, req.Client)
	if !req.Client {
		d.table.seen(Contact{ID: peer.ID, Addr: peer.Addr})
	}
	d.markSeen(peer.ID)
	resp := d.handlePeer(req, peer)
	resp.Client = d.client.Load()
	if dl := time.Duration(d.answerDelay.Load()); dl > 0 {
		select {
		case <-time.After(dl):
		case <-ctx.Done():
		}
	}
	if err := transport.WriteMsg(s, resp); err != nil {
		d.log.Debug("write response", "peer", peer.ID.String(), "err", err)
	}
}

// handle computes the response to req from the node from (address
// unknown: watches it asks for cannot be served).
func (d *DHT) handle(req request, from key.NodeID) *response {
	return d.handlePeer(req, transport.Peer{ID: from})
}

// handlePeer computes the response to req from peer, counting the request
// and any refusal in the metrics.
func (d *DHT) handlePeer(req request, peer transport.Peer) *response {
	from := peer.ID
	fail := func(err error) *response {
		if reason := refusalReason(err); reason != "" {
			d.m.refused(reason)
		}
		return &response{Code: errCode(err), Msg: err.Error()}
	}
	if name, ok := opNames[req.Op]; ok {
		d.m.Requests.WithLabelValues(name).Inc()
	}
	switch req.Op {
	case opPing:
		return &response{}
	case opFindNode:
		t, err := target32(req.Target)
		if err != nil {
			return fail(err)
		}
		return &response{Closer: toWire(d.table.closest(t, d.opts.K, from))}
	case opGet:
		t, err := target32(req.Target)
		if err != nil {
			return fail(err)
		}
		k := key.RecordKey(t)
		resp := &response{Closer: toWire(d.table.closest(t, d.opts.K, from))}
		desc, err := d.localDesc(k)
		if err != nil {
			d.log.Error("read record", "record", k.String(), "err", err)
			return fail(err)
		}
		if desc == nil {
			return resp
		}
		if req.WantDesc {
			if resp.Desc, err = record.EncodeDescriptor(desc); err != nil {
				return fail(err)
			}
		}
		v, err := d.localValue(k, req.Subkey)
		if err != nil {
			d.log.Error("read record", "record", k.String(), "err", err)
			return fail(err)
		}
		if v != nil {
			if resp.Value, err = record.EncodeValue(v); err != nil {
				return fail(err)
			}
		}
		return resp
	case opStore:
		t, err := target32(req.Target)
		if err != nil {
			return fail(err)
		}
		k := key.RecordKey(t)
		desc, err := record.DecodeDescriptor(req.Desc)
		if err != nil {
			return fail(err)
		}
		var v *record.Value
		if req.Value != nil {
			if v, err = record.DecodeValue(req.Value); err != nil {
				return fail(err)
			}
		}
		var refreshed time.Time
		if req.Refreshed > 0 {
			refreshed = time.Unix(req.Refreshed, 0)
			if time.Since(refreshed) > d.opts.Expiry {
				// A copy of a record its owner stopped refreshing: it has
				// expired here too (or will), so it is not taken back.
				return &response{Code: codeNotFound, Msg: "record expired"}
			}
		}
		_, err = d.acceptFrom(k, desc, req.Subkey, v, refreshed, &peer)
		var se *StaleError
		if errors.As(err, &se) {
			resp := fail(err)
			if resp.Value, err = record.EncodeValue(se.Current); err != nil {
				return fail(err)
			}
			return resp
		}
		if err != nil {
			d.log.Debug("store refused", "peer", from.String(), "record", k.String(), "subkey", req.Subkey, "err", err)
			return fail(err)
		}
		return &response{}
	case opInspect:
		t, err := target32(req.Target)
		if err != nil {
			return fail(err)
		}
		k := key.RecordKey(t)
		has, err := d.db.Has(descKey(k))
		if err != nil || !has {
			return &response{}
		}
		seqs, err := d.localSeqs(k, nil)
		if err != nil {
			d.log.Error("read record", "record", k.String(), "err", err)
			return fail(err)
		}
		if req.Refreshed > 0 {
			if err := d.bumpRefreshed(k, time.Unix(req.Refreshed, 0)); err != nil {
				d.log.Warn("refresh record", "record", k.String(), "err", err)
			}
		}
		return &response{Has: true, Seqs: seqs}
	case opWatch:
		return d.serveWatch(req, peer, fail)
	case opValueChanged:
		return d.serveValueChanged(req, peer, fail)
	case opHandoff:
		return d.serveHandoff(peer, req.Client)
	}
	return fail(fmt.Errorf("%w: unknown op %d", ErrBadRequest, req.Op))
}
