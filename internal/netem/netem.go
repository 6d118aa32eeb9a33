// Package netem emulates a wide-area path between UDP endpoints on
// loopback: a relay in the middle that delays, drops and rate-limits the
// datagrams it forwards, in each direction, as Linux's netem qdisc behind a
// token-bucket bottleneck would (tc-netem(8): delay, jitter, random loss,
// rate). It exists because the kernels dweb is tested on may lack netem,
// and because it works across processes: a benchmark's receiver in a child
// process dials the link's address instead of the sender's.
//
// A Link listens on one loopback UDP socket. Every client address that
// sends to it gets its own socket towards the target, so the target sees
// one peer per client, and answers travel back the same way. Each
// direction of each client's flow is a FIFO: a datagram is dropped with
// probability Loss, else it leaves the bottleneck after those queued
// before it (size / Rate each), and arrives Delay plus up to Jitter later,
// never before the datagram ahead of it (no reordering). A datagram that
// would wait longer than QueueDelay at the bottleneck is dropped
// (drop-tail), as a router's full queue does.
//
// The relay costs a read, a copy and a write per datagram: it suits
// links of up to a few hundred Mbit/s on loopback, not a measure of
// line rate.
package netem

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits.
const (
	MaxFlows     = 64       // clients a Link relays for; datagrams from more are dropped
	maxDatagram  = 64 << 10 // largest UDP payload
	queuePackets = 1 << 14  // datagrams in flight per direction before drop
	socketBuffer = 4 << 20
)

// Options shape a Link. The zero value forwards at once, loses nothing
// and has no bottleneck.
type Options struct {
	// Delay is added to every datagram in each direction: the round trip
	// grows by twice Delay.
	Delay time.Duration
	// Jitter adds a uniform random extra delay in [0, Jitter) per datagram,
	// without reordering.
	Jitter time.Duration
	// Loss is the probability, in [0, 1), that a datagram is dropped; each
	// direction draws independently (netem's "loss random").
	Loss float64
	// Rate is the bottleneck in bytes per second, in each direction; 0
	// means none.
	Rate int64
	// QueueDelay bounds the queue at the bottleneck, as time to drain it:
	// a datagram that would wait longer is dropped. Default 100 ms; used
	// only with Rate.
	QueueDelay time.Duration
	// Seed makes losses and jitter repeatable; 0 picks a random seed.
	Seed uint64
}

// Validate reports an option out of range.
func (o Options) Validate() error {
	switch {
	case o.Delay < 0 || o.Delay > time.Minute:
		return fmt.Errorf("netem: delay %v: want 0 to 1m", o.Delay)
	case o.Jitter < 0 || o.Jitter > time.Minute:
		return fmt.Errorf("netem: jitter %v: want 0 to 1m", o.Jitter)
	case !(o.Loss >= 0 && o.Loss < 1):
		return fmt.Errorf("netem: loss %v: want a probability in [0, 1)", o.Loss)
	case o.Rate < 0:
		return fmt.Errorf("netem: rate %d: want 0 (none) or more bytes per second", o.Rate)
	case o.QueueDelay < 0:
		return fmt.Errorf("netem: queue delay %v: want 0 (default) or more", o.QueueDelay)
	}
	return nil
}

// Stats counts one direction of a Link, summed over its flows.
type Stats struct {
	Datagrams  uint64 // delivered
	Bytes      uint64 // delivered
	Lost       uint64 // dropped by Loss
	QueueDrops uint64 // dropped because the bottleneck's queue was full
}

type counters struct{ datagrams, bytes, lost, queueDrops atomic.Uint64 }

func (c *counters) stats() Stats {
	return Stats{c.datagrams.Load(), c.bytes.Load(), c.lost.Load(), c.queueDrops.Load()}
}

// Link relays datagrams between clients and one target. Close it to stop
// its goroutines.
type Link struct {
	opts   Options
	target netip.AddrPort
	front  *net.UDPConn
	seed   uint64

	mu    sync.Mutex
	flows map[netip.AddrPort]*flow

	up, down counters // up: clients to target; down: target to clients
	wg       sync.WaitGroup
	closed   chan struct{}
	once     sync.Once
}

// New starts a Link that clients reach at Addr and that forwards to
// target, a loopback UDP address.
func New(target netip.AddrPort, opts Options) (*Link, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if !target.Addr().IsLoopback() {
		return nil, fmt.Errorf("netem: target %s is not a loopback address", target)
	}
	if opts.QueueDelay == 0 {
		opts.QueueDelay = 100 * time.Millisecond
	}
	front, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(target.Addr(), 0)))
	if err != nil {
		return nil, fmt.Errorf("netem: %w", err)
	}
	bigBuffers(front)
	l := &Link{opts: opts, target: target, front: front, seed: opts.Seed, flows: make(map[netip.AddrPort]*flow), closed: make(chan struct{})}
	if l.seed == 0 {
		l.seed = rand.Uint64()
	}
	l.wg.Add(1)
	go l.readFront()
	return l, nil
}

// Addr is where clients send to reach the target through the link.
func (l *Link) Addr() netip.AddrPort { return l.front.LocalAddr().(*net.UDPAddr).AddrPort() }

// Up counts datagrams from clients to the target; Down, the answers.
func (l *Link) Up() Stats   { return l.up.stats() }
func (l *Link) Down() Stats { return l.down.stats() }

// Close stops the link: datagrams in flight are dropped.
func (l *Link) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.front.Close()
		l.mu.Lock()
		for _, f := range l.flows {
			f.back.Close()
		}
		l.mu.Unlock()
	})
	l.wg.Wait()
	return nil
}

// bigBuffers asks for socket buffers that hold a burst of a fast sender
// (the kernel caps them at net.core.rmem_max and wmem_max), as quic-go
// asks for its own sockets.
func bigBuffers(c *net.UDPConn) {
	c.SetReadBuffer(socketBuffer)
	c.SetWriteBuffer(socketBuffer)
}

// flow is one client's path: a socket towards the target and a delay line
// each way.
type flow struct {
	client   netip.AddrPort
	back     *net.UDPConn
	up, down *line
}

func (l *Link) readFront() {
	defer l.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := l.front.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		f := l.flow(from)
		if f == nil {
			continue
		}
		f.up.push(buf[:n], netip.AddrPort{})
	}
}

// flow returns from's flow, starting it on its first datagram; nil when
// the link is closed or has MaxFlows already.
func (l *Link) flow(from netip.AddrPort) *flow {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.flows[from]; f != nil {
		return f
	}
	select {
	case <-l.closed:
		return nil
	default:
	}
	if len(l.flows) >= MaxFlows {
		return nil
	}
	back, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(l.target))
	if err != nil {
		return nil
	}
	bigBuffers(back)
	i := uint64(len(l.flows))
	f := &flow{client: from, back: back}
	f.up = newLine(&l.opts, l.closed, &l.wg, &l.up, l.seed+2*i, func(b []byte, _ netip.AddrPort) { back.Write(b) })
	f.down = newLine(&l.opts, l.closed, &l.wg, &l.down, l.seed+2*i+1, func(b []byte, _ netip.AddrPort) { l.front.WriteToUDPAddrPort(b, from) })
	l.flows[from] = f
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		buf := make([]byte, maxDatagram)
		for {
			n, err := back.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP unreachable from a target not yet listening
			}
			f.down.push(buf[:n], netip.AddrPort{})
		}
	}()
	return f
}

// line is one direction of a flow: the loss draw and the bottleneck in
// push, the delay in its delivery goroutine.
type line struct {
	opts    *Options
	closed  <-chan struct{}
	wg      *sync.WaitGroup
	c       *counters
	rng     *rand.Rand
	send    func(b []byte, to netip.AddrPort)
	q       chan datagram
	busy    time.Time // when the bottleneck has sent everything queued
	arrival time.Time // delivery time of the last datagram queued (FIFO)
	pool    sync.Pool
}

type datagram struct {
	b  *[]byte
	to netip.AddrPort // the address send is given; unused by a Link's lines
	at time.Time
}

// newLine starts a line's delivery goroutine, counted in wg, until closed.
func newLine(opts *Options, closed <-chan struct{}, wg *sync.WaitGroup, c *counters, seed uint64, send func(b []byte, to netip.AddrPort)) *line {
	ln := &line{opts: opts, closed: closed, wg: wg, c: c, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), send: send, q: make(chan datagram, queuePackets)}
	ln.pool.New = func() any { b := make([]byte, 0, 2048); return &b }
	wg.Add(1)
	go ln.deliver()
	return ln
}

// push queues a copy of b, or drops it. It is called by one goroutine at a
// time.
func (ln *line) push(b []byte, to netip.AddrPort) {
	o := ln.opts
	if o.Loss > 0 && ln.rng.Float64() < o.Loss {
		ln.c.lost.Add(1)
		return
	}
	now := time.Now()
	at := now
	if o.Rate > 0 {
		start := ln.busy
		if start.Before(now) {
			start = now
		}
		if start.Sub(now) > o.QueueDelay {
			ln.c.queueDrops.Add(1)
			return
		}
		ln.busy = start.Add(time.Duration(float64(len(b)) / float64(o.Rate) * float64(time.Second)))
		at = ln.busy
	}
	at = at.Add(o.Delay)
	if o.Jitter > 0 {
		at = at.Add(time.Duration(ln.rng.Int64N(int64(o.Jitter))))
	}
	if at.Before(ln.arrival) {
		at = ln.arrival
	}
	ln.arrival = at
	p := ln.pool.Get().(*[]byte)
	*p = append((*p)[:0], b...)
	select {
	case ln.q <- datagram{p, to, at}:
	default:
		ln.pool.Put(p)
		ln.c.queueDrops.Add(1)
	}
}

// deliver sends each datagram at its time. Datagrams due within 50 µs go
// at once: a timer per datagram would cost more than the precision gained.
func (ln *line) deliver() {
	defer ln.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var d datagram
		select {
		case d = <-ln.q:
		case <-ln.closed:
			return
		}
		if wait := time.Until(d.at); wait > 50*time.Microsecond {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-ln.closed:
				return
			}
		}
		ln.c.datagrams.Add(1)
		ln.c.bytes.Add(uint64(len(*d.b)))
		ln.send(*d.b, d.to)
		ln.pool.Put(d.b)
	}
}

// ParseOptions reads options written as comma-separated key=value pairs,
// as `dweb serve --emulate-link` takes them: delay, jitter and queue
// (durations, "20ms"), loss (a probability, "0.02", or a percentage,
// "2%"), rate (bytes per second, an integer) and seed. "" is the zero
// Options. Unknown keys and values out of range are errors.
func ParseOptions(s string) (Options, error) {
	var o Options
	if s == "" {
		return o, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return o, fmt.Errorf("netem: %q: want key=value", kv)
		}
		var err error
		switch k {
		case "delay":
			o.Delay, err = time.ParseDuration(v)
		case "jitter":
			o.Jitter, err = time.ParseDuration(v)
		case "queue":
			o.QueueDelay, err = time.ParseDuration(v)
		case "loss":
			if p, ok := strings.CutSuffix(v, "%"); ok {
				o.Loss, err = strconv.ParseFloat(p, 64)
				o.Loss /= 100
			} else {
				o.Loss, err = strconv.ParseFloat(v, 64)
			}
		case "rate":
			o.Rate, err = strconv.ParseInt(v, 10, 64)
		case "seed":
			o.Seed, err = strconv.ParseUint(v, 10, 64)
		default:
			return o, fmt.Errorf("netem: unknown key %q: want delay, jitter, loss, rate, queue or seed", k)
		}
		if err != nil {
			return o, fmt.Errorf("netem: %s=%q: %w", k, v, err)
		}
	}
	return o, o.Validate()
}
