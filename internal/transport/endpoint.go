package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/netem"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/quic-go/quic-go"
)

// ALPN is the single TLS ALPN of dweb; each stream starts with one Protocol
// byte that picks the protocol.
const ALPN = "dweb/1"

// Protocol is the first byte of every stream: which protocol the stream
// speaks.
type Protocol byte

// The protocols carried over a dweb connection.
const (
	ProtoDHT    Protocol = 1
	ProtoBlobs  Protocol = 2
	ProtoTunnel Protocol = 3
	ProtoRelay  Protocol = 4
)

func (p Protocol) String() string {
	switch p {
	case ProtoDHT:
		return "dht"
	case ProtoBlobs:
		return "blobs"
	case ProtoTunnel:
		return "tunnel"
	case ProtoRelay:
		return "relay"
	case ProtoAdmin:
		return "admin"
	}
	return fmt.Sprintf("protocol(%d)", byte(p))
}

// Stream error codes the endpoint uses when it resets a stream (RESET_STREAM
// and STOP_SENDING). The opener sees them as *quic.StreamError with
// Remote set. Protocols may define their own codes from 0x100 up.
const (
	CodeNoError         quic.StreamErrorCode = 0 // handler done; any unread input is discarded
	CodeUnknownProtocol quic.StreamErrorCode = 1 // no handler for the protocol byte
	CodeProtocolTimeout quic.StreamErrorCode = 2 // protocol byte not received within Options.ProtocolTimeout, or the opening not done within Options.FirstFrameTimeout
	CodeInternal        quic.StreamErrorCode = 3 // the handler panicked
	CodeRefused         quic.StreamErrorCode = 4 // refused by the resource manager: a limit of the peer, its address, its prefix or the node (Options.Resources)
)

// shutdownReason is the CONNECTION_CLOSE reason of an endpoint closing
// (code connCodeClosed): the peer that receives it knows this node shut
// down cleanly, not that one connection went stale ("disconnected").
const shutdownReason = "endpoint closed"

// SetPeerShutdown sets fn (nil: none), called with a peer's node ID when
// the peer closes a connection because its endpoint is closing: it shut
// down cleanly, and dialling it again now would only wait out
// DialTimeout. fn runs on the connection's goroutine: it must not block.
func (e *Endpoint) SetPeerShutdown(fn func(key.NodeID)) {
	if fn == nil {
		e.peerShutdown.Store(nil)
		return
	}
	e.peerShutdown.Store(&fn)
}

// isShutdown reports whether err ends a connection because the peer's
// endpoint closed.
func isShutdown(err error) bool {
	var ae *quic.ApplicationError
	return errors.As(err, &ae) && ae.Remote && ae.ErrorCode == connCodeClosed && ae.ErrorMessage == shutdownReason
}

// Connection close codes (CONNECTION_CLOSE with an application error).
const (
	connCodeClosed  quic.ApplicationErrorCode = 0 // endpoint closing
	connCodeBadPeer quic.ApplicationErrorCode = 1 // peer identity unacceptable
	connCodeRefused quic.ApplicationErrorCode = 2 // over the peer's connection limit (Options.Resources)
)

// ErrClosed is returned (wrapped) by OpenStream once the endpoint is closed.
var ErrClosed = errors.New("transport: endpoint closed")

// ErrPeerShutdown is returned (wrapped) by OpenStream and Connect to a
// peer that shut down cleanly within ShutdownHold, without dialling it.
var ErrPeerShutdown = errors.New("transport: peer shut down")

// Default values for zero Options fields.
const (
	DefaultHandshakeTimeout   = 5 * time.Second
	DefaultIdleTimeout        = 30 * time.Second
	DefaultKeepAlive          = 10 * time.Second
	DefaultDialTimeout        = 10 * time.Second
	DefaultProtocolTimeout    = 10 * time.Second
	DefaultMaxIncomingStreams = 256
)

// DefaultFirstFrameTimeout is Options.FirstFrameTimeout when unset: the
// time an inbound stream has, from its accept, to get through its opening
// (the protocol byte and the protocol's first message or handshake; see
// Opened). Every opening dweb speaks is a few hundred bytes and at most
// two round trips, so 10 s is generous on the slowest mobile link and
// still bounds what a peer that opens streams and stalls can hold.
const DefaultFirstFrameTimeout = 10 * time.Second

// QUIC flow-control windows, in bytes: the first and the largest a stream
// and a connection grant. A peer can make this node buffer at most
// MaxConnReceiveWindow per connection.
const (
	StreamReceiveWindow    = 4 << 20
	MaxStreamReceiveWindow = 16 << 20
	ConnReceiveWindow      = 8 << 20
	MaxConnReceiveWindow   = 32 << 20
)

// Options configure an Endpoint. The zero value of every field but Identity
// means the documented default.
type Options struct {
	Identity   key.Keypair  // required: the node's ed25519 key; its public key is the node ID
	ListenAddr string       // UDP host:port to bind; "" means "127.0.0.1:0"
	Logger     *slog.Logger // nil: discard

	// HandshakeTimeout is QUIC's handshake idle timeout: a handshake with no
	// packet from the peer for this long fails, and any handshake fails after
	// twice this. Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that received nothing for this long
	// (the smaller of both sides' values applies). Default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// KeepAlive is the period of keepalive pings on idle connections (quic-go
	// caps it at half the idle timeout). Default DefaultKeepAlive; negative
	// disables keepalives.
	KeepAlive time.Duration
	// DialTimeout bounds one dial, from first packet to verified handshake.
	// Default DefaultDialTimeout.
	DialTimeout time.Duration
	// ProtocolTimeout bounds how long an accepted stream may take to send
	// its protocol byte. Default DefaultProtocolTimeout.
	ProtocolTimeout time.Duration
	// FirstFrameTimeout bounds an accepted stream's opening: from its
	// accept until its handler calls Opened (after the protocol's first
	// request, or its handshake). Until then the stream carries a deadline
	// (both directions) at accept + FirstFrameTimeout, so a peer that says
	// nothing, or stops halfway, is cut off then. Default
	// DefaultFirstFrameTimeout.
	FirstFrameTimeout time.Duration
	// MaxIncomingStreams is how many bidirectional streams a peer may have
	// open on one connection at once (QUIC stream credit), which bounds the
	// handler goroutines per connection. Default DefaultMaxIncomingStreams,
	// and never more than the resource manager's streams per peer.
	MaxIncomingStreams int64
	// Resources is the node's resource manager: it admits every inbound
	// connection (by address at its first packet, before any crypto; by
	// node ID after the handshake), stream and stream opening, and the
	// layers above share it (Endpoint.Resources). Nil: a manager of the
	// endpoint's own with rcmgr.PhoneLimits.
	Resources *rcmgr.Manager
	// Link, when set, shapes the endpoint's UDP socket as an emulated
	// access link (netem.Conn: delay, loss and a bottleneck on everything
	// it sends and receives), for tests and `dweb bench soak`; quic-go then
	// reads one datagram at a time. Nil: the socket as the kernel gives it.
	Link *netem.Options
}

func (o *Options) setDefaults() {
	if o.ListenAddr == "" {
		o.ListenAddr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = DefaultKeepAlive
	} else if o.KeepAlive < 0 {
		o.KeepAlive = 0 // quic-go: 0 disables
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.ProtocolTimeout <= 0 {
		o.ProtocolTimeout = DefaultProtocolTimeout
	}
	if o.FirstFrameTimeout <= 0 {
		o.FirstFrameTimeout = DefaultFirstFrameTimeout
	}
	if o.MaxIncomingStreams <= 0 {
		o.MaxIncomingStreams = DefaultMaxIncomingStreams
	}
	if o.Resources == nil {
		o.Resources = rcmgr.New(rcmgr.Limits{})
	}
	if p := int64(o.Resources.Limits().Streams.Peer); p > 0 && p < o.MaxIncomingStreams {
		o.MaxIncomingStreams = p
	}
}

// Peer is the node on the other side of a stream, as its TLS certificate
// proved it, and the UDP address its packets come from.
type Peer struct {
	ID   key.NodeID
	Addr netip.AddrPort
}

// Handler serves one inbound stream of its protocol, in its own goroutine,
// after the protocol byte has been read. ctx is cancelled when the
// connection or the endpoint closes. When the handler returns the endpoint
// closes the stream's send side (FIN) and discards unread input; a handler
// that panics has its stream reset with CodeInternal. Handlers must return
// soon after ctx is cancelled: Endpoint.Close waits for them.
//
// The stream arrives in its opening, with a deadline at its accept plus
// Options.FirstFrameTimeout: the handler reads its protocol's first
// request (or runs its handshake) under that deadline, then calls
// Opened(ctx), which lifts it. A handler that never calls Opened has its
// I/O fail at the deadline, and if it returns after the deadline the
// stream is reset with CodeProtocolTimeout.
type Handler func(ctx context.Context, peer Peer, s *quic.Stream)

// Stats counts an endpoint's connections.
type Stats struct {
	Dials    uint64 // outbound connections established (verified handshakes)
	Accepted uint64 // inbound connections established
	Pooled   int    // peers with a pooled live connection now
	Conns    int    // connections open now, pooled or not
}

// Endpoint is a node's QUIC endpoint: one UDP socket and one quic.Transport
// that both accepts and dials, a connection pool keyed by node ID, and the
// protocol handlers. Its methods are safe for concurrent use.
type Endpoint struct {
	id    key.NodeID
	opts  Options
	log   *slog.Logger
	cert  tls.Certificate
	udp   net.PacketConn // the socket, or the netem.Conn shaping it
	tr    *quic.Transport
	ln    *quic.Listener
	qconf *quic.Config
	rm    *rcmgr.Manager

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loop, connection loops, dials, handlers

	hmu      sync.RWMutex
	handlers map[Protocol]Handler

	pool     *pool
	dials    atomic.Uint64
	accepted atomic.Uint64

	closeOnce sync.Once
	closeErr  error

	peerShutdown atomic.Pointer[func(key.NodeID)] // SetPeerShutdown
}

// Listen binds a UDP socket at opts.ListenAddr, makes the TLS certificate
// from opts.Identity and starts accepting connections in the background.
// Register handlers with Handle before peers connect; streams for a protocol
// without a handler are reset with CodeUnknownProtocol.
func Listen(opts Options) (*Endpoint, error) {
	if len(opts.Identity.Private) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("transport listen: identity key is %d bytes, want %d", len(opts.Identity.Private), ed25519.PrivateKeySize)
	}
	opts.setDefaults()
	ua, err := net.ResolveUDPAddr("udp", opts.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("transport listen: address %q: %w", opts.ListenAddr, err)
	}
	cert, err := selfSignedCert(opts.Identity)
	if err != nil {
		return nil, fmt.Errorf("transport listen: %w", err)
	}
	sock, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("transport listen: %w", err)
	}
	var udp net.PacketConn = sock
	if opts.Link != nil {
		if udp, err = netem.NewConn(sock, *opts.Link); err != nil {
			sock.Close()
			return nil, fmt.Errorf("transport listen: %w", err)
		}
	}
	e := &Endpoint{
		id:   opts.Identity.ID(),
		opts: opts,
		log:  opts.Logger,
		cert: cert,
		udp:  udp,
		rm:   opts.Resources,
		tr:   &quic.Transport{Conn: udp, StatelessResetKey: statelessResetKey(opts.Identity)},
		qconf: &quic.Config{
			HandshakeIdleTimeout:  opts.HandshakeTimeout,
			MaxIdleTimeout:        opts.IdleTimeout,
			KeepAlivePeriod:       opts.KeepAlive,
			MaxIncomingStreams:    opts.MaxIncomingStreams,
			MaxIncomingUniStreams: -1,
			// Larger first windows than quic-go's (512 KiB / 768 KiB):
			// a blob transfer keeps several MiB in flight, and with
			// the defaults it waits on window updates while auto-tuning
			// grows them (measured: dweb bench transfer, docs/BENCHMARKS.md).
			InitialStreamReceiveWindow:     StreamReceiveWindow,
			MaxStreamReceiveWindow:         MaxStreamReceiveWindow,
			InitialConnectionReceiveWindow: ConnReceiveWindow,
			MaxConnectionReceiveWindow:     MaxConnReceiveWindow,
		},
		handlers: make(map[Protocol]Handler),
		pool:     newPool(),
	}
	e.tr.ConnContext = e.admitConn
	e.tr.VerifySourceAddress = func(net.Addr) bool { return e.rm.RetryNeeded() }
	e.ln, err = e.tr.Listen(serverTLS(cert), e.qconf)
	if err != nil {
		e.tr.Close()
		udp.Close()
		return nil, fmt.Errorf("transport listen: %w", err)
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.log = e.log.With("node", e.id.String())
	e.log.Debug("transport listening", "addr", e.LocalAddr())
	e.wg.Add(1)
	go e.acceptLoop()
	return e, nil
}

// Handle registers h for streams that start with protocol byte p, replacing
// any earlier handler for p.
func (e *Endpoint) Handle(p Protocol, h Handler) {
	e.hmu.Lock()
	defer e.hmu.Unlock()
	e.handlers[p] = h
}

// Resources returns the endpoint's resource manager (Options.Resources),
// for the layers above to count their own kinds in.
func (e *Endpoint) Resources() *rcmgr.Manager { return e.rm }

// ID returns the endpoint's node ID.
func (e *Endpoint) ID() key.NodeID { return e.id }

// LocalAddr returns the bound UDP address (with the real port when
// ListenAddr asked for port 0).
func (e *Endpoint) LocalAddr() netip.AddrPort {
	return addrPort(e.udp.LocalAddr())
}

// Stats returns the endpoint's connection counters.
func (e *Endpoint) Stats() Stats {
	e.pool.mu.Lock()
	defer e.pool.mu.Unlock()
	pooled := 0
	for _, c := range e.pool.byID {
		if alive(c) {
			pooled++
		}
	}
	return Stats{
		Dials:    e.dials.Load(),
		Accepted: e.accepted.Load(),
		Pooled:   pooled,
		Conns:    len(e.pool.all),
	}
}

// OpenStream returns a new bidirectional stream to node id with protocol
// byte p already written (buffered; it leaves with the first flush).
//
// It uses the pooled connection to id, inbound or outbound, if one is alive;
// otherwise it dials addr, verifying inside the TLS handshake that the node
// there holds id's key: a mismatch fails with an error wrapping
// ErrWrongPeer. Concurrent calls for one id share one dial (the first
// caller's addr is used). addr may be the zero AddrPort when a connection
// is known to be pooled. If the pooled connection turns out dead, it is
// dropped and dialed once more. ctx bounds the wait for the connection and
// for stream credit; the dial itself is bounded by Options.DialTimeout and
// is not abandoned when one waiting caller gives up. After Close it fails
// with ErrClosed.
func (e *Endpoint) OpenStream(ctx context.Context, id key.NodeID, addr netip.AddrPort, p Protocol) (*quic.Stream, error) {
	s, _, err := e.openStream(ctx, id, addr, p)
	return s, err
}

// Connect makes sure a connection to id is pooled, dialing addr if there is
// none (as OpenStream does, with the same peer check and errors), without
// opening a stream: a caller about to talk to a peer can pay the QUIC
// handshake ahead of time.
func (e *Endpoint) Connect(ctx context.Context, id key.NodeID, addr netip.AddrPort) error {
	if id == e.id {
		return fmt.Errorf("connect: %s is this node", id)
	}
	_, err := e.connTo(ctx, id, addr)
	return err
}

// openStream is OpenStream that also returns the stream's connection.
func (e *Endpoint) openStream(ctx context.Context, id key.NodeID, addr netip.AddrPort, p Protocol) (*quic.Stream, *quic.Conn, error) {
	if id == e.id {
		return nil, nil, fmt.Errorf("open %s stream: %s is this node", p, id)
	}
	return e.openStreamOn(ctx, id, p,
		func(ctx context.Context) (*quic.Conn, error) { return e.connTo(ctx, id, addr) },
		func(c *quic.Conn, err error) { e.pool.drop(id, c, err) })
}

// openStreamOn opens a stream of protocol p on the connection conn gives
// (the pooled one, or a lane's), writing the protocol byte. A connection
// that fails to open a stream is unpooled with drop and, once, replaced.
func (e *Endpoint) openStreamOn(ctx context.Context, id key.NodeID, p Protocol, conn func(context.Context) (*quic.Conn, error), drop func(*quic.Conn, error)) (*quic.Stream, *quic.Conn, error) {
	for attempt := 0; ; attempt++ {
		c, err := conn(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("open %s stream: %w", p, err)
		}
		s, err := c.OpenStreamSync(ctx)
		if err != nil {
			if isShutdown(err) {
				drop(c, err)
				return nil, nil, fmt.Errorf("open %s stream to %s: %w: %w", p, id, ErrPeerShutdown, err)
			}
			if ctx.Err() == nil && attempt == 0 {
				drop(c, err)
				continue
			}
			return nil, nil, fmt.Errorf("open %s stream to %s: %w", p, id, err)
		}
		if _, err := s.Write([]byte{byte(p)}); err != nil {
			s.CancelRead(CodeNoError)
			s.CancelWrite(CodeNoError)
			return nil, nil, fmt.Errorf("open %s stream to %s: write protocol byte: %w", p, id, err)
		}
		return s, c, nil
	}
}

// connTo returns a live connection to id: the pooled one or a shared dial.
func (e *Endpoint) connTo(ctx context.Context, id key.NodeID, addr netip.AddrPort) (*quic.Conn, error) {
	p := e.pool
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if c := p.liveLocked(id); c != nil {
		p.mu.Unlock()
		return c, nil
	}
	if p.goneLocked(id) {
		p.mu.Unlock()
		return nil, fmt.Errorf("connect to %s: %w", id, ErrPeerShutdown)
	}
	call := p.dials[id]
	if call == nil {
		if !addr.IsValid() {
			p.mu.Unlock()
			return nil, fmt.Errorf("connect to %s: no connection and no address", id)
		}
		call = &dialCall{done: make(chan struct{})}
		p.dials[id] = call
		e.wg.Add(1) // under p.mu with p.closed false: Close has not started waiting
		go e.dial(id, addr, call)
	}
	p.mu.Unlock()
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("connect to %s: %w", id, ctx.Err())
	case <-call.done:
		return call.conn, call.err
	}
}

// dial runs one shared dial and publishes its result in call.
func (e *Endpoint) dial(id key.NodeID, addr netip.AddrPort, call *dialCall) {
	e.dialThen(id, addr, call, func() { delete(e.pool.dials, id) }, func(c *quic.Conn) *quic.Conn { return e.adoptLocked(id, c) })
}

// dialThen dials id at addr for call: under e.pool.mu it runs done (the
// dial is no longer in flight) and, on success with the pool open, adopt
// (records the connection and returns the one call gets); then it
// publishes the result in call.
func (e *Endpoint) dialThen(id key.NodeID, addr netip.AddrPort, call *dialCall, done func(), adopt func(*quic.Conn) *quic.Conn) {
	defer e.wg.Done()
	c, err := e.dialConn(id, addr)
	p := e.pool
	p.mu.Lock()
	done()
	if err == nil {
		if p.closed {
			err = ErrClosed
		} else {
			call.conn = adopt(c)
			e.dials.Add(1)
		}
	}
	call.err = err
	p.mu.Unlock()
	close(call.done)
	if errors.Is(err, ErrClosed) && c != nil {
		c.CloseWithError(connCodeClosed, shutdownReason)
	}
}

// dialConn dials addr and returns a connection whose peer proved id.
func (e *Endpoint) dialConn(id key.NodeID, addr netip.AddrPort) (*quic.Conn, error) {
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.DialTimeout)
	defer cancel()
	var wrong atomic.Bool
	c, err := e.tr.Dial(ctx, net.UDPAddrFromAddrPort(addr), clientTLS(e.cert, id, &wrong), e.qconf)
	if err != nil {
		switch {
		case wrong.Load() && !errors.Is(err, ErrWrongPeer):
			return nil, fmt.Errorf("dial %s at %s: %w: %w", id, addr, ErrWrongPeer, err)
		case e.ctx.Err() != nil:
			return nil, fmt.Errorf("dial %s at %s: %w", id, addr, ErrClosed)
		}
		return nil, fmt.Errorf("dial %s at %s: %w", id, addr, err)
	}
	// Belt and braces: VerifyPeerCertificate has checked this already.
	got, err := connPeerID(c)
	if err == nil && got != id {
		err = fmt.Errorf("%w: want %s, got %s", ErrWrongPeer, id, got)
	}
	if err != nil {
		c.CloseWithError(connCodeBadPeer, "wrong peer")
		return nil, fmt.Errorf("dial %s at %s: %w", id, addr, err)
	}
	e.log.Debug("dialed", "peer", id.String(), "addr", addr)
	return c, nil
}

// adoptLocked records c in the pool and starts serving its inbound streams.
// It returns the pooled connection to id (c, or an older live one). The
// caller holds e.pool.mu and has checked that the pool is not closed.
func (e *Endpoint) adoptLocked(id key.NodeID, c *quic.Conn) *quic.Conn {
	pooled := e.pool.addLocked(id, c)
	e.wg.Add(1)
	go e.serveConn(id, c)
	return pooled
}

func (e *Endpoint) acceptLoop() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept(e.ctx)
		if err != nil {
			if e.ctx.Err() == nil {
				e.log.Warn("accept stopped", "err", err)
			}
			return
		}
		id, err := connPeerID(c)
		if err != nil {
			e.log.Debug("rejected connection", "addr", c.RemoteAddr(), "err", err)
			c.CloseWithError(connCodeBadPeer, "bad certificate")
			continue
		}
		if rc, _ := c.Context().Value(connKey{}).(*rcmgr.Conn); rc != nil {
			if err := rc.Handshaken(id); err != nil {
				e.log.Debug("refused connection", "peer", id.String(), "addr", c.RemoteAddr(), "err", err)
				c.CloseWithError(connCodeRefused, "connection limit")
				continue
			}
		}
		p := e.pool
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.CloseWithError(connCodeClosed, shutdownReason)
			return
		}
		e.adoptLocked(id, c)
		e.accepted.Add(1)
		p.mu.Unlock()
		e.log.Debug("accepted", "peer", id.String(), "addr", c.RemoteAddr())
	}
}

// serveConn accepts the peer's streams on c until c ends, then forgets c.
func (e *Endpoint) serveConn(id key.NodeID, c *quic.Conn) {
	defer e.wg.Done()
	var ended error
	defer func() { e.pool.remove(id, c, ended) }()
	for {
		s, err := c.AcceptStream(e.ctx)
		if err != nil {
			ended = err
			e.log.Debug("connection ended", "peer", id.String(), "err", err)
			if fn := e.peerShutdown.Load(); fn != nil && isShutdown(err) {
				(*fn)(id)
			}
			return
		}
		// The peer's address is the connection's as it is now (QUIC
		// connections may migrate).
		addr := addrPort(c.RemoteAddr())
		rs, err := e.rm.AdmitStream(id, addr.Addr())
		if err != nil {
			e.log.Debug("refused stream", "peer", id.String(), "addr", addr, "err", err)
			s.CancelRead(CodeRefused)
			s.CancelWrite(CodeRefused)
			continue
		}
		e.wg.Add(1)
		go e.serveStream(c, Peer{ID: id, Addr: addr}, s, rs)
	}
}

type connKey struct{}

// admitConn is the transport's ConnContext: it runs at a connection
// attempt's first packet, before any crypto, and refuses the attempt
// (CONNECTION_REFUSED) when its address or the node is at a limit.
func (e *Endpoint) admitConn(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	addr := addrPort(info.RemoteAddr)
	rc, err := e.rm.AdmitConn(addr)
	if err != nil {
		e.log.Debug("refused connection attempt", "addr", addr, "err", err)
		return ctx, err
	}
	ctx = context.WithValue(ctx, connKey{}, rc)
	// quic-go cancels ctx when the handshake fails or the connection
	// ends, however it ends.
	context.AfterFunc(ctx, rc.Close)
	return ctx, nil
}

// serveStream reads the protocol byte and runs its handler, the stream's
// opening bounded by Options.FirstFrameTimeout.
func (e *Endpoint) serveStream(c *quic.Conn, peer Peer, s *quic.Stream, rs *rcmgr.Stream) {
	defer e.wg.Done()
	defer rs.Close()
	reset := func(code quic.StreamErrorCode) {
		s.CancelRead(code)
		s.CancelWrite(code)
	}
	start := time.Now()
	op := &opening{s: s, rs: rs, deadline: start.Add(e.opts.FirstFrameTimeout)}
	s.SetDeadline(op.deadline)
	var b [1]byte
	s.SetReadDeadline(minTime(start.Add(e.opts.ProtocolTimeout), op.deadline))
	if _, err := io.ReadFull(s, b[:]); err != nil {
		e.log.Debug("no protocol byte", "peer", peer.ID.String(), "err", err)
		reset(CodeProtocolTimeout)
		return
	}
	s.SetReadDeadline(op.deadline)
	p := Protocol(b[0])
	e.hmu.RLock()
	h := e.handlers[p]
	e.hmu.RUnlock()
	if h == nil {
		e.log.Debug("unknown protocol", "peer", peer.ID.String(), "protocol", p)
		reset(CodeUnknownProtocol)
		return
	}
	ctx, cancel := context.WithCancel(e.ctx)
	if b, err := ConnBinding(c); err == nil {
		ctx = context.WithValue(ctx, bindingKey{}, b)
	}
	ctx = context.WithValue(ctx, openingKey{}, op)
	stop := context.AfterFunc(c.Context(), cancel)
	defer func() {
		stop()
		cancel()
	}()
	ok := e.runHandler(ctx, h, p, peer, s)
	opened := op.end()
	switch {
	case !ok:
		reset(CodeInternal)
	case !opened && !time.Now().Before(op.deadline):
		e.log.Debug("stream opening timed out", "peer", peer.ID.String(), "protocol", p)
		reset(CodeProtocolTimeout)
	default:
		s.Close()
		s.CancelRead(CodeNoError)
	}
}

// runHandler calls h and reports whether it returned without panicking.
func (e *Endpoint) runHandler(ctx context.Context, h Handler, p Protocol, peer Peer, s *quic.Stream) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("handler panicked", "protocol", p, "peer", peer.ID.String(), "panic", r)
			ok = false
		}
	}()
	h(ctx, peer, s)
	return true
}

// Close closes every connection (CONNECTION_CLOSE to each peer) and the
// socket. In-flight handlers see their ctx cancelled and their streams
// fail; Close waits for them and for every goroutine the endpoint started.
// Later OpenStream calls fail with ErrClosed. Close is idempotent.
func (e *Endpoint) Close() error {
	e.closeOnce.Do(func() {
		conns, _ := e.pool.closeAll()
		e.cancel()
		e.ln.Close()
		for _, c := range conns {
			c.CloseWithError(connCodeClosed, shutdownReason)
		}
		e.wg.Wait()
		err := e.tr.Close()
		if uerr := e.udp.Close(); err == nil {
			err = uerr
		}
		if err != nil {
			e.closeErr = fmt.Errorf("transport close: %w", err)
		}
		e.log.Debug("transport closed")
	})
	return e.closeErr
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// addrPort converts a UDP net.Addr to netip.AddrPort, unmapping IPv4-in-IPv6.
func addrPort(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
