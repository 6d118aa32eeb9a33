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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/internal/key"
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
// answered (or there is none), or if the lookup of its own ID then
// reached no node.
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
	if len(near) == 0 {
		// The contacts that answered the ping failed the lookup (gone,
		// or refusing this node's requests): no node learned of this
		// one, so it has not joined, and its caller should try again.
		return fmt.Errorf("%w: bootstrap: %d of %d contacts answered, but the lookup of this node's ID reached none", ErrNoPeers, ok, len(boot))
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
