// Package dht is dweb's Kademlia DHT (Maymounkov & Mazières 2002) of signed
// records (internal/record), over QUIC streams of internal/transport.
//
// Nodes and records share one 256-bit key space with the XOR metric. A
// record lives on the R nodes closest to its key; every holder verifies the
// descriptor and the value signature on every store and keeps the better
// value by record.Better, so holders converge whatever order writes arrive
// in. Lookups are iterative, Alpha requests in flight per round.
//
// This first version keeps records only where writers and readers put them;
// hand-off to new closer nodes, re-replication, republishing, expiry and
// watches are to come (see DESIGN.md).
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
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
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

// Defaults for zero Options fields.
const (
	DefaultK          = 20
	DefaultAlpha      = 3
	DefaultR          = 8
	DefaultRPCTimeout = 5 * time.Second
)

// maxRounds bounds the rounds of one iterative lookup.
const maxRounds = 32

// Options configure a DHT. Endpoint and Store are required; other zero
// fields take the documented defaults.
type Options struct {
	Endpoint  Endpoint  // the node's transport endpoint; the DHT registers transport.ProtoDHT on it
	Store     *store.DB // the node's store; records go under store.PrefixRecord
	Bootstrap []Contact // nodes to join through (Bootstrap)
	K         int       // bucket size and lookup width; default DefaultK (20)
	Alpha     int       // lookup concurrency; default DefaultAlpha (3)
	R         int       // replicas per record; default DefaultR (8)
	// RPCTimeout bounds one request, from opening the stream to reading the
	// response; default DefaultRPCTimeout.
	RPCTimeout time.Duration
	Logger     *slog.Logger // nil: discard
}

// DHT is one node's view of the DHT. Its methods are safe for concurrent
// use.
type DHT struct {
	ep    Endpoint
	db    *store.DB
	opts  Options
	log   *slog.Logger
	self  Contact
	table *table

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	boot     []Contact // Options.Bootstrap plus AddContacts hints
	inflight sync.WaitGroup

	recMu sync.Mutex // serialises read-compare-write of local records
}

// New returns a DHT serving transport.ProtoDHT on opts.Endpoint. It sends
// nothing; call Bootstrap to join.
func New(opts Options) (*DHT, error) {
	if opts.Endpoint == nil || opts.Store == nil {
		return nil, errors.New("dht: Options.Endpoint and Options.Store are required")
	}
	if opts.K <= 0 {
		opts.K = DefaultK
	}
	if opts.Alpha <= 0 {
		opts.Alpha = DefaultAlpha
	}
	if opts.R <= 0 {
		opts.R = DefaultR
	}
	if opts.RPCTimeout <= 0 {
		opts.RPCTimeout = DefaultRPCTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	self := Contact{ID: opts.Endpoint.ID(), Addr: opts.Endpoint.LocalAddr()}
	d := &DHT{
		ep:     opts.Endpoint,
		db:     opts.Store,
		opts:   opts,
		log:    opts.Logger.With("dht", self.ID.String()[:8]),
		self:   self,
		table:  newTable(self.ID, opts.K),
		ctx:    ctx,
		cancel: cancel,
	}
	d.AddContacts(opts.Bootstrap...)
	d.ep.Handle(transport.ProtoDHT, d.serve)
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

// Contacts returns a snapshot of the routing table.
func (d *DHT) Contacts() []Contact { return d.table.all() }

// Bootstrap joins the network: it sends FIND_NODE(self) to every bootstrap
// contact, then runs a lookup of its own ID so that the nodes nearest to it
// learn of it and it learns of them. It fails with ErrNoPeers if no
// bootstrap contact answered (or there is none).
func (d *DHT) Bootstrap(ctx context.Context) error {
	d.mu.Lock()
	boot := slices.Clone(d.boot)
	d.mu.Unlock()
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
	if _, err := d.Closest(ctx, d.self.ID, d.opts.K); err != nil {
		return fmt.Errorf("dht: bootstrap lookup: %w", err)
	}
	return nil
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
	d.ep.Handle(transport.ProtoDHT, nil)
	d.cancel()
	d.inflight.Wait()
	return nil
}

// holders returns the up-to-n nodes, this one included, nearest to target
// among this node and others (which must not hold this node).
func (d *DHT) holders(target [32]byte, others []Contact, n int) []Contact {
	all := append(slices.Clone(others), d.self)
	sortByDistance(target, all)
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// Set writes v as the value of subkey of desc's record: it checks and stores
// it locally, then sends STORE to the other nodes among the R nearest to the
// record key (this node counts as one of them if it is that near). It
// succeeds when at least one remote holder accepted, or when no other node
// is known. If this node or a holder already has a better value, Set
// returns a *StaleError (errors.Is ErrStale) carrying it, and keeps that
// value locally. Invalid input fails with record's errors
// (record.ErrBadSignature, ErrNotWriter, ...) or ErrKeyMismatch.
func (d *DHT) Set(ctx context.Context, desc *record.Descriptor, subkey uint32, v *record.Value) error {
	if desc == nil || v == nil {
		return fmt.Errorf("%w: Set needs a descriptor and a value", ErrBadRequest)
	}
	k := desc.Key()
	if err := d.accept(k, desc, subkey, v); err != nil {
		return fmt.Errorf("dht: set %s/%d: %w", k, subkey, err)
	}
	others, err := d.Closest(ctx, k, d.opts.R)
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
		return nil // a network of one: the local copy is the record
	}
	descEnc, err := record.EncodeDescriptor(desc)
	if err != nil {
		return err
	}
	valEnc, err := record.EncodeValue(v)
	if err != nil {
		return err
	}
	req := &request{Op: opStore, Target: k[:], Subkey: subkey, Desc: descEnc, Value: valEnc}
	errs := make([]error, len(targets))
	stale := make([]*record.Value, len(targets))
	var wg sync.WaitGroup
	for i, c := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := d.call(ctx, c, req)
			if err != nil {
				errs[i] = err
				return
			}
			if resp.Code == codeStale {
				cur, derr := record.DecodeValue(resp.Value)
				if derr == nil && desc.VerifyValue(subkey, cur) == nil {
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
	d.log.Debug("set", "record", k.String(), "subkey", subkey, "seq", v.Seq, "accepted", accepted, "of", len(targets))
	return nil
}

// Get returns the descriptor of record k and the best value (record.Better)
// of subkey among this node and the nodes nearest to k. The value is nil,
// with no error, when the record exists but no one has written subkey. It
// fails with ErrNotFound when no node answered with the descriptor. The
// descriptor and best value are kept locally, and holders near k that
// answered with a worse value or none are sent the best one (read repair).
func (d *DHT) Get(ctx context.Context, k key.RecordKey, subkey uint32) (*record.Descriptor, *record.Value, error) {
	desc, err := d.localDesc(k)
	if err != nil {
		return nil, nil, err
	}
	var best *record.Value
	if desc != nil {
		if best, err = d.localValue(k, subkey); err != nil {
			return nil, nil, err
		}
	}
	var (
		mu      sync.Mutex
		answers = map[key.NodeID]*record.Value{}
	)
	query := func(ctx context.Context, c Contact) ([]Contact, error) {
		mu.Lock()
		want := desc == nil
		mu.Unlock()
		resp, err := d.call(ctx, c, &request{Op: opGet, Target: k[:], Subkey: subkey, WantDesc: want})
		if err != nil {
			return nil, err
		}
		if resp.Code != codeOK {
			return nil, &RemoteError{Peer: c.ID, Code: resp.Code, Msg: resp.Msg}
		}
		mu.Lock()
		defer mu.Unlock()
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
	others, err := d.lookup(ctx, k, d.opts.R, query)
	if err != nil {
		return nil, nil, fmt.Errorf("dht: get %s/%d: %w", k, subkey, err)
	}
	if desc == nil {
		return nil, nil, fmt.Errorf("dht: get %s: %w", k, ErrNotFound)
	}
	// Values are checked against the descriptor only now: it may have
	// arrived after them.
	for id, v := range answers {
		if v != nil && desc.VerifyValue(subkey, v) != nil {
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
	return desc, best, nil
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
	req := &request{Op: opStore, Target: k[:], Subkey: subkey, Desc: descEnc, Value: valEnc}
	var wg sync.WaitGroup
	for _, c := range stale {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.call(ctx, c, req); err != nil {
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
// within RPCTimeout. A transport failure removes c from the routing table;
// an answer marks it seen.
func (d *DHT) call(ctx context.Context, c Contact, req *request) (*response, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.RPCTimeout)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()
	resp, err := d.roundTrip(ctx, c, req)
	if err != nil {
		if d.ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %v", ErrClosed, err)
		}
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			d.table.remove(c.ID)
		}
		return nil, fmt.Errorf("dht: %s: %w", c, err)
	}
	d.table.seen(c)
	return resp, nil
}

func (d *DHT) roundTrip(ctx context.Context, c Contact, req *request) (*response, error) {
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
	if err := transport.WriteMsg(s, req); err != nil {
		s.CancelWrite(codeCanceled)
		return nil, fmt.Errorf("send request: %w", err)
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
func (d *DHT) serve(ctx context.Context, peer transport.Peer, s *quic.Stream) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.inflight.Add(1)
	d.mu.Unlock()
	defer d.inflight.Done()

	s.SetDeadline(time.Now().Add(d.opts.RPCTimeout))
	var req request
	if err := transport.ReadMsg(s, MaxMessageSize, &req); err != nil {
		d.log.Debug("bad request", "peer", peer.ID.String(), "err", err)
		if !errors.Is(err, io.EOF) {
			transport.WriteMsg(s, &response{Code: codeBadRequest, Msg: "bad request: " + err.Error()})
		}
		return
	}
	// The caller's packets come from its one UDP socket, so the address
	// seen is the address it listens on.
	d.table.seen(Contact{ID: peer.ID, Addr: peer.Addr})
	resp := d.handle(req, peer.ID)
	if err := transport.WriteMsg(s, resp); err != nil {
		d.log.Debug("write response", "peer", peer.ID.String(), "err", err)
	}
}

// handle computes the response to req from peer.
func (d *DHT) handle(req request, from key.NodeID) *response {
	fail := func(err error) *response {
		return &response{Code: errCode(err), Msg: err.Error()}
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
		v, err := record.DecodeValue(req.Value)
		if err != nil {
			return fail(err)
		}
		err = d.accept(k, desc, req.Subkey, v)
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
	}
	return fail(fmt.Errorf("%w: unknown op %d", ErrBadRequest, req.Op))
}
