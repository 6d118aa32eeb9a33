// Package core is dweb's Backend: it starts a node (identity, Pebble store,
// QUIC endpoint, DHT, blob store), keeps the groups the node belongs to, and
// serves the node's repos to other members through tunnels. The CLI daemon
// and the C ABI are thin layers over it.
package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/netem"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/dwebkit/dweb/internal/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a Backend. Only DataDir is required.
type Options struct {
	// DataDir holds the node's state: pebble/, blobs/, device.key. Created
	// with mode 0700.
	DataDir string
	// ListenAddr is the UDP host:port of the QUIC endpoint. "" reuses the
	// port of the previous run on 127.0.0.1, or picks a free one.
	ListenAddr string
	// Bootstrap lists nodes to enter the DHT through, as "nodeID@host:port".
	Bootstrap []string
	// DeviceName is the name this node's repo gets in a group it creates
	// or joins, unless the create or join asks for another
	// (GroupOptions.RepoName). It is the node's config: a name given here
	// is saved in the store, and "" uses the name saved by an earlier run,
	// else DefaultDeviceName. Never the host name, which would leak to
	// every member. Rules of a repo name (datarepo.CheckName); a bad one
	// is a *BadInputError from New.
	DeviceName string
	// DeviceKey seals the protected store. Nil: read or create
	// DataDir/device.key (0600).
	DeviceKey *key.Secret
	// Logger receives structured logs. Nil: discarded.
	Logger *slog.Logger

	// ServeRelay makes this node a relay for nodes behind NAT: it accepts
	// reservations and splices circuits to them (docs/tunnel.md, "Relays").
	ServeRelay bool
	// RelayLimits bound what this node carries as a relay; zero fields take
	// the tunnel package's defaults.
	RelayLimits tunnel.RelayLimits
	// RelayTap, with ServeRelay, gets a copy of every byte this relay
	// splices (tunnel.RelayOptions.Tap): the check that a relay carries
	// only ciphertext (`dweb serve --relay-dump`). Nil: none.
	RelayTap func(circuit uint64, toTarget bool) io.WriteCloser
	// Relays lists relays, as "nodeID@host:port", that this node keeps
	// reservations on and names in its tunnel descriptors, so peers that
	// cannot dial it directly reach it through them.
	Relays []string

	// UploadRate bounds the bytes per second this node sends to any one
	// peer (phones on metered links). 0: no limit.
	UploadRate int64
	// MaxPeerRequests bounds the blob requests of one peer served at once;
	// more wait for a slot. 0: DefaultMaxPeerRequests.
	MaxPeerRequests int

	// Limits bound what peers may make this node hold: connections,
	// streams and handshakes per peer, per IP, per prefix and in total
	// (docs/limits.md). Zero fields take the preset of the node's role:
	// rcmgr.ServerLimits for a node that serves strangers (ServeRelay or
	// Backup), else rcmgr.PhoneLimits.
	Limits rcmgr.Limits
	// FirstFrameTimeout bounds an inbound stream's opening (the protocol
	// byte and its first request or handshake). 0: the transport's
	// default, 10 s.
	FirstFrameTimeout time.Duration
	// Link, when set, shapes the node's UDP socket as an emulated lossy
	// access link (netem.Conn), for tests and `dweb bench soak`. Nil: none.
	Link *netem.Options
	// Lanes is how many QUIC connections a download of a large blob
	// (LaneMinSize and up) opens to each member that provides it over a
	// path with a round trip of LaneMinRTT or more, each with its own
	// congestion window (transport.OpenStreamLane): 1..4; 0: DefaultLanes;
	// 1: one connection per member, as for small blobs. A nearer member
	// (a LAN, loopback) gets at most NearLanes (LanesFor says why).
	// Environment DWEB_LANES overrides it (for baselines).
	Lanes int
	// Chunking stores this node's files above blobsync.ChunkThreshold
	// (4 MiB) as content-defined chunks (docs/protocol.md), so that an
	// edited file costs what changed. Off by default for now: a fresh
	// chunked transfer runs at about half the speed of a whole blob
	// (docs/BENCHMARKS.md, "dweb bench dedup"), and a node older than
	// collection version 2 cannot read a repo that holds a chunked file.
	// Environment DWEB_CHUNKING=1 turns it on.
	Chunking bool
	// KeepVersions is how many older versions of each file this node's
	// own repos keep (docs/design-notes.md, "History"): 0 (the default)
	// keeps every one, as an archive of evidence should, up to
	// blobsync.MaxVersions (1000) per name; N > 0 keeps the N newest;
	// negative keeps none (a delete then leaves no trace). Each write of
	// a repo prunes to it.
	KeepVersions int
	// KeepVersionsFor, when > 0, also drops an older version replaced more
	// than this long ago. 0: no age bound.
	KeepVersionsFor time.Duration
	// GCGrace: CollectGarbage keeps every blob added less than this long
	// ago, so that a file being added is not collected before its
	// collection names it (blobsync.StoreOptions.GCGrace). 0: 10 minutes;
	// negative: no grace (tests).
	GCGrace time.Duration

	// Backup makes this node a backup server (docs/backup.md): it keeps a
	// full, verified copy of every repo of every group it belongs to and
	// serves it to the members (backup.go).
	Backup bool
	// BackupInterval is the period of the backup's full reconciliation.
	// 0: DefaultBackupInterval.
	BackupInterval time.Duration
	// BackupConcurrency bounds the blobs the backup downloads at once.
	// 0: DefaultBackupConcurrency.
	BackupConcurrency int
	// StorageQuota bounds the bytes of complete blobs the store keeps
	// (quota.go); a backup download that would pass it fails with a
	// *QuotaError (ErrQuota). 0: no quota.
	StorageQuota int64
	// NoStoreCopy makes every GetFile and GetFileVersion behave as
	// GetFileWith with GetOptions.NoStoreCopy: a file got to a path is
	// moved out of the store, which keeps it as a reference to that path
	// (a chunked file's own chunks as references into it).
	NoStoreCopy bool
}

// DefaultMaxPeerRequests is Options.MaxPeerRequests when unset.
const DefaultMaxPeerRequests = 16

// DefaultDeviceName is Options.DeviceName of a node that never had one.
const DefaultDeviceName = "dweb device"

// Timeouts of background work the Backend does on its own.
const (
	publishTimeout  = 20 * time.Second
	shutdownTimeout = 3 * time.Second
)

// Backend is one running dweb node. Its methods are safe for concurrent use.
type Backend struct {
	opts     Options
	log      *slog.Logger
	db       *store.DB
	prot     *store.Protected
	memberMu sync.Mutex // serializes the member key's creation (contact.go)
	ident    key.Keypair
	static   tunnel.StaticKey
	blobs    *blobsync.Store
	limits   *blobsync.PeerLimiter // upload limits per peer

	netp    atomic.Pointer[netRun] // the network half (network.go); nil before Start
	life    sync.Mutex             // serialises Start, Pause, Resume and Close
	health  providerHealth         // how member nodes answered (health.go)
	metrics *dht.Metrics
	rm      *rcmgr.Manager // the node's resource manager, shared by every layer
	traffic traffic
	lanes   int // Options.Lanes, resolved
	// chunking is Options.Chunking or DWEB_CHUNKING=1.
	chunking bool

	mu     sync.Mutex
	groups map[key.RecordKey]*groupState
	offNet bool // paused or closing: no new work on the network (spawn)
	paused bool // Pause, until Resume
	closed bool // Close has run

	ev      eventHub    // events.go
	changes changeState // changes.go

	rs relayState  // relay.go
	bk backupState // backup.go
}

// New opens the node's store and identity. It does not touch the network:
// call Start.
func New(opts Options) (*Backend, error) {
	if opts.DataDir == "" {
		return nil, badInput(errors.New("core: Options.DataDir is required"))
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if opts.DeviceName != "" {
		if err := datarepo.CheckName(opts.DeviceName); err != nil {
			return nil, badInput(fmt.Errorf("device name: %w", err))
		}
	}
	dk := opts.DeviceKey
	if dk == nil {
		k, err := store.LoadOrCreateDeviceKey(filepath.Join(opts.DataDir, "device.key"))
		if err != nil {
			return nil, err
		}
		dk = &k
	}
	lanes, err := lanesOf(opts.Lanes)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(opts.DataDir, store.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	if opts.MaxPeerRequests <= 0 {
		opts.MaxPeerRequests = DefaultMaxPeerRequests
	}
	b := &Backend{
		opts: opts, log: log, db: db, prot: db.Protected(*dk), lanes: lanes,
		chunking: opts.Chunking || os.Getenv("DWEB_CHUNKING") == "1",
		groups:   make(map[key.RecordKey]*groupState),
		limits:   blobsync.NewPeerLimiter(blobsync.ServeLimits{UploadRate: opts.UploadRate, MaxRequests: opts.MaxPeerRequests}),
	}
	b.ev.init(time.Now())
	b.changes.init()
	if err := b.loadIdentity(); err != nil {
		db.Close()
		return nil, err
	}
	if err := b.loadDeviceName(); err != nil {
		db.Close()
		return nil, err
	}
	b.blobs, err = blobsync.OpenStore(db, filepath.Join(opts.DataDir, "blobs"), blobsync.StoreOptions{Logger: log, GCGrace: opts.GCGrace})
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := b.loadGroups(); err != nil {
		db.Close()
		return nil, err
	}
	b.metrics = dht.NewMetrics()
	preset := rcmgr.PhoneLimits()
	if opts.ServeRelay || opts.Backup {
		preset = rcmgr.ServerLimits()
	}
	b.rm = rcmgr.New(opts.Limits.WithDefaults(preset))
	// Uploads a crash interrupted are incomplete: nothing refers to them.
	if err := os.RemoveAll(filepath.Join(opts.DataDir, uploadsDir)); err != nil {
		b.log.Warn("remove interrupted uploads", "err", err)
	}
	return b, nil
}

// Collectors returns the Prometheus collectors of this node's layers (the
// DHT's requests, refusals and lookups; the resource manager's refusals
// and usage), for the daemon to register once.
func (b *Backend) Collectors() []prometheus.Collector {
	return append([]prometheus.Collector{b.metrics, b.rm}, b.nodeCollectors()...)
}

// Resources returns the node's resource manager (Options.Limits).
func (b *Backend) Resources() *rcmgr.Manager { return b.rm }

// Protected-store names of the node's own keys.
const (
	protNodeKey   = "node/ed25519"
	protNoiseKey  = "node/x25519"
	metaListen    = store.PrefixMeta + "listen"
	metaDevice    = store.PrefixMeta + "device-name"
	metaContacts  = store.PrefixMeta + "contacts"
	maxContactsKV = 64
)

func (b *Backend) loadIdentity() error {
	seed, err := b.prot.Get(protNodeKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		b.ident = key.NewKeypair()
		if err := b.prot.Put(protNodeKey, b.ident.Seed()); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("load node key: %w", err)
	default:
		if b.ident, err = key.KeypairFromSeed(seed); err != nil {
			return fmt.Errorf("load node key: %w", err)
		}
	}
	priv, err := b.prot.Get(protNoiseKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if b.static, err = tunnel.NewStaticKey(); err != nil {
			return err
		}
		return b.prot.Put(protNoiseKey, b.static.Private[:])
	case err != nil:
		return fmt.Errorf("load tunnel key: %w", err)
	default:
		b.static, err = tunnel.StaticKeyFromPrivate(priv)
		return err
	}
}

// loadDeviceName saves Options.DeviceName in the store, or when it is
// empty reads the one saved by an earlier run (DefaultDeviceName if none).
func (b *Backend) loadDeviceName() error {
	if b.opts.DeviceName != "" {
		if err := b.db.Set([]byte(metaDevice), []byte(b.opts.DeviceName), true); err != nil {
			return fmt.Errorf("save device name: %w", err)
		}
		return nil
	}
	b.opts.DeviceName = DefaultDeviceName
	saved, err := b.db.Get([]byte(metaDevice))
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("load device name: %w", err)
	case datarepo.CheckName(string(saved)) != nil:
		b.log.Warn("saved device name is not a valid name; using the default", "saved", string(saved))
	default:
		b.opts.DeviceName = string(saved)
	}
	return nil
}

// DeviceName returns the name this node's repos get in the groups it
// creates or joins without asking for another (Options.DeviceName).
func (b *Backend) DeviceName() string { return b.opts.DeviceName }

// Start opens the QUIC endpoint and returns as soon as it listens: it never
// waits for the network. Behind it (connect.go) the node enters the DHT
// through the bootstrap nodes and the contacts saved by earlier runs,
// retrying while none answers (the node may be the first, or offline),
// and publishes its tunnel descriptors and watches its groups. Operations
// that need the network (a join, a DHT read or write) wait for that first
// attempt to end, within their own context; local ones never do. ctx is
// not used after Start returns. Start is called once; Pause and Resume
// take the node off the network and back.
func (b *Backend) Start(ctx context.Context) error {
	b.life.Lock()
	defer b.life.Unlock()
	if b.run() != nil {
		return errors.New("core: Start called twice")
	}
	listen := b.opts.ListenAddr
	if listen == "" {
		listen = "127.0.0.1:0"
		if last, err := b.db.Get([]byte(metaListen)); err == nil {
			listen = string(last)
		}
	}
	return b.startNet(listen)
}

// startNet builds a network run listening on listen (falling back to
// Options.ListenAddr, or a free port on 127.0.0.1, if that address is
// taken) and starts its work. b.life is held.
func (b *Backend) startNet(listen string) error {
	relays, err := parseRelays(b.opts.Relays)
	if err != nil {
		return err
	}
	topts := transport.Options{Identity: b.ident, ListenAddr: listen, Logger: b.log, Resources: b.rm, FirstFrameTimeout: b.opts.FirstFrameTimeout, Link: b.opts.Link}
	ep, err := transport.Listen(topts)
	if fallback := b.opts.ListenAddr; err != nil && listen != fallback {
		if fallback == "" {
			fallback = "127.0.0.1:0"
		}
		b.log.Info("last listen address unavailable, picking a new port", "addr", listen, "err", err)
		topts.ListenAddr = fallback
		ep, err = transport.Listen(topts)
	}
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	b.db.Set([]byte(metaListen), []byte(ep.LocalAddr().String()), false)
	boot, err := b.bootstrapContacts()
	if err != nil {
		ep.Close()
		return err
	}
	// A node configured with relays expects to be behind NAT: it starts as
	// a DHT client (not put in others' routing tables, so nobody wastes a
	// dial on it) until its dial-back check proves it reachable.
	d, err := dht.New(dht.Options{Endpoint: ep, Store: b.db, Bootstrap: boot, Logger: b.log, Metrics: b.metrics, Client: len(relays) > 0, OnWrite: b.onWrite, Membership: group.NewHolders()})
	if err != nil {
		ep.Close()
		return err
	}
	r := &netRun{ep: ep, dht: d, booted: make(chan struct{}), netChanged: make(chan struct{}, 1)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	ep.SetPeerShutdown(b.peerShutdown)
	ep.Handle(transport.ProtoTunnel, b.serveTunnel)
	b.startRelay(r, relays)
	b.netp.Store(r)
	b.mu.Lock()
	b.offNet, b.paused = false, false
	b.rs.closing.Store(false)
	b.spawnLocked(func(ctx context.Context) { b.connect(ctx, r, len(boot) > 0) })
	for _, gs := range b.groups {
		b.spawnLocked(func(ctx context.Context) {
			b.ownRepoChanged(ctx, gs)
			b.publishTunnel(ctx, gs)
		})
		b.startWatchLocked(gs)
	}
	b.spawnLocked(b.republishLoop)
	b.spawnLocked(b.reachLoop)
	b.spawnLocked(func(ctx context.Context) { b.watchNetwork(ctx, r) })
	b.mu.Unlock()
	b.startBackup()
	b.log.Info("node started", "node", b.ident.ID(), "addr", ep.LocalAddr())
	return nil
}

// stopNet ends the current network run: it stops the republisher, removes
// this node's tunnel descriptors from its repos (so peers do not dial a
// node that is gone; at most shutdownTimeout), saves the DHT contacts,
// stops every goroutine of the run and closes the relay, the DHT and the
// endpoint (every connection: peers see a clean shutdown). The DHT object
// stays, closed, for local reads and queued writes. b.life is held.
func (b *Backend) stopNet(paused bool) {
	r := b.run()
	b.mu.Lock()
	down := b.offNet
	b.offNet = b.offNet || r == nil // nothing to stop: no run may start either
	states := make([]*groupState, 0, len(b.groups))
	for _, gs := range b.groups {
		states = append(states, gs)
	}
	b.mu.Unlock()
	if r == nil || down {
		return
	}
	b.stopPublishing()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	// A node that has not entered the network, or knows no one now,
	// has nobody to tell: waiting would only delay the shutdown.
	tell := isClosed(r.booted) && len(r.dht.Contacts()) > 0
	for _, gs := range states {
		if gs.repo != nil && tell {
			if err := gs.repo.ClearTunnel(ctx, 0); err != nil {
				b.log.Debug("clear tunnel descriptor", "group", gs.info.ID, "err", err)
			}
		}
	}
	cancel()
	// Off the network from here: no new work of the run starts, and what
	// needs the network fails with ErrPaused (the clearing above needed
	// it still).
	b.mu.Lock()
	b.offNet, b.paused = true, paused
	b.mu.Unlock()
	b.saveContacts()
	r.cancel()
	r.wg.Wait()
	for _, gs := range states {
		gs.streams.CloseIdle()
	}
	r.relay.Close()
	r.dht.Close()
	r.ep.Close()
}

// Close removes this node's tunnel descriptors from its repos (so peers do
// not dial a node that is gone), saves its DHT contacts, ends every event
// subscription and closes everything. It is safe to call once; a paused
// node closes at once (it told its peers when it paused).
func (b *Backend) Close() error {
	b.life.Lock()
	defer b.life.Unlock()
	b.stopNet(false)
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.closeEvents()
	return b.db.Close()
}

// NodeID returns this node's ID.
func (b *Backend) NodeID() key.NodeID { return b.ident.ID() }

// Addr returns the QUIC listen address (zero before Start; while paused,
// the address the node listened on).
func (b *Backend) Addr() netip.AddrPort {
	ep := b.curEP()
	if ep == nil {
		return netip.AddrPort{}
	}
	return ep.LocalAddr()
}

// Contact returns "nodeID@host:port", what other nodes pass as a bootstrap.
func (b *Backend) Contact() string {
	addrs := b.advertiseAddrs()
	if len(addrs) == 0 {
		return b.NodeID().String()
	}
	return b.NodeID().String() + "@" + addrs[0]
}

// advertiseAddrs lists the addresses other nodes can dial: the listen
// address, or, when it is unspecified (0.0.0.0, ::), every address of the
// machine's interfaces with the listen port: of both families when the
// socket is IPv6 (Go binds a "udp" socket on 0.0.0.0 or :: dual-stack,
// and reports it as [::]), of IPv4 only when it is IPv4; loopback
// addresses last.
func (b *Backend) advertiseAddrs() []string {
	la := b.Addr()
	if !la.IsValid() {
		return nil
	}
	if !la.Addr().IsUnspecified() {
		return []string{la.String()}
	}
	var out, lo []string
	ifaddrs, _ := interfaceAddrs()
	for _, a := range ifaddrs {
		if pn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(pn.IP); ok {
				ip = ip.Unmap()
				if (la.Addr().Is4() && !ip.Is4()) || ip.IsLinkLocalUnicast() {
					continue
				}
				ap := netip.AddrPortFrom(ip, la.Port()).String()
				if ip.IsLoopback() {
					lo = append(lo, ap)
				} else {
					out = append(out, ap)
				}
			}
		}
	}
	// Loopback last: only a peer on this machine can use it, and a peer
	// elsewhere tries the addresses in order, each until it times out.
	return append(out, lo...)
}

func (b *Backend) started() error {
	if b.curDHT() == nil {
		return ErrNotStarted
	}
	return nil
}
