package netem

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// inboundQueue bounds the datagrams a Conn has delivered and its reader
// has not read yet; more are dropped (counted as queue drops), as a full
// socket buffer drops them.
const inboundQueue = 4096

// Conn shapes a node's own UDP socket as its access link, the way a phone
// on a poor radio path sees the internet: every datagram it sends goes
// through the up line and every datagram it receives through the down
// line, whoever the peer is, with Options' delay, jitter, loss and
// bottleneck in each direction. Unlike a Link, nothing sits between the
// node and its peers, so addresses learnt from packets or from the DHT
// reach the shaped node all the same.
//
// A Conn is a net.PacketConn for quic.Transport; quic-go reads it one
// datagram at a time (no GSO, GRO or ECN through it), which suits tests
// and soaks, not a measure of line rate. Writes never block: a datagram
// the up line drops is reported as sent, as a lossy path would.
type Conn struct {
	udp  *net.UDPConn
	opts Options

	wmu      sync.Mutex // the up line's push is called by one writer at a time
	up, down counters
	out, in  *line
	inq      chan inbound

	dmu      sync.Mutex
	deadline time.Time
	dchange  chan struct{} // closed and replaced when the read deadline changes

	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

type inbound struct {
	b    []byte
	from netip.AddrPort
}

// NewConn shapes udp with opts. The Conn owns udp: closing it closes udp.
func NewConn(udp *net.UDPConn, opts Options) (*Conn, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.QueueDelay == 0 {
		opts.QueueDelay = 100 * time.Millisecond
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	c := &Conn{udp: udp, opts: opts, inq: make(chan inbound, inboundQueue), dchange: make(chan struct{}), closed: make(chan struct{})}
	c.out = newLine(&c.opts, c.closed, &c.wg, &c.up, seed, func(b []byte, to netip.AddrPort) {
		udp.WriteToUDPAddrPort(b, to)
	})
	c.in = newLine(&c.opts, c.closed, &c.wg, &c.down, seed+1, func(b []byte, from netip.AddrPort) {
		select {
		case c.inq <- inbound{append([]byte(nil), b...), from}:
		default:
			c.down.queueDrops.Add(1)
		}
	})
	c.wg.Add(1)
	go c.readLoop()
	return c, nil
}

// Up counts the datagrams the node sent; Down, those it received.
func (c *Conn) Up() Stats   { return c.up.stats() }
func (c *Conn) Down() Stats { return c.down.stats() }

func (c *Conn) readLoop() {
	defer c.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := c.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		c.in.push(buf[:n], from)
	}
}

// ReadFrom returns the next datagram the down line delivered. It honours
// the read deadline (os.ErrDeadlineExceeded) and returns net.ErrClosed
// once the Conn is closed.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.dmu.Lock()
		dl, changed := c.deadline, c.dchange
		c.dmu.Unlock()
		var expired <-chan time.Time
		if !dl.IsZero() {
			wait := time.Until(dl)
			if wait <= 0 {
				return 0, nil, c.opError("read", os.ErrDeadlineExceeded)
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			expired = t.C
		}
		select {
		case d := <-c.inq:
			return copy(p, d.b), net.UDPAddrFromAddrPort(d.from), nil
		case <-c.closed:
			return 0, nil, c.opError("read", net.ErrClosed)
		case <-expired:
		case <-changed:
		}
	}
}

// WriteTo queues p on the up line towards addr, a *net.UDPAddr.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, c.opError("write", net.ErrClosed)
	default:
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.opError("write", fmt.Errorf("netem: address %v is not UDP", addr))
	}
	if len(p) > maxDatagram {
		return 0, c.opError("write", syscall.EMSGSIZE)
	}
	c.wmu.Lock()
	c.out.push(p, ua.AddrPort())
	c.wmu.Unlock()
	return len(p), nil
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.udp.LocalAddr(), Err: err}
}

// Close drops the datagrams in flight and closes the socket.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closed)
		err = c.udp.Close()
	})
	c.wg.Wait()
	return err
}

// LocalAddr is the socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.udp.LocalAddr() }

// SetDeadline sets the read deadline; writes never block.
func (c *Conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline bounds ReadFrom; the zero time removes the bound.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	c.deadline = t
	close(c.dchange)
	c.dchange = make(chan struct{})
	c.dmu.Unlock()
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

// SetReadBuffer and SetWriteBuffer size the socket's kernel buffers (as
// quic-go asks of the sockets it is given); SyscallConn is the socket's.
func (c *Conn) SetReadBuffer(n int) error             { return c.udp.SetReadBuffer(n) }
func (c *Conn) SetWriteBuffer(n int) error            { return c.udp.SetWriteBuffer(n) }
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.udp.SyscallConn() }
