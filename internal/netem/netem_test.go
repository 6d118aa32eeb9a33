package netem

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// server is a UDP socket on loopback that echoes (echo) or counts what
// it gets, keeping the sequence numbers in arrival order.
type server struct {
	conn *net.UDPConn
	mu   sync.Mutex
	seqs []uint32
	last time.Time
}

func newServer(t *testing.T, echo bool) *server {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{conn: c}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			if n >= 4 {
				s.seqs = append(s.seqs, binary.BigEndian.Uint32(buf))
			}
			s.last = time.Now()
			s.mu.Unlock()
			if echo {
				c.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
	return s
}

func (s *server) addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (s *server) received() ([]uint32, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.seqs...), s.last
}

func newLink(t *testing.T, target netip.AddrPort, o Options) *Link {
	t.Helper()
	l, err := New(target, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(t *testing.T, l *Link) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(l.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c *net.UDPConn, seq uint32, size int) {
	t.Helper()
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, seq)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// pace pauses after every 20 datagrams, so a burst stays within the
// link's socket buffer (the kernel would drop the rest before the link
// sees them).
func pace(i int) {
	if i%20 == 19 {
		time.Sleep(time.Millisecond)
	}
}

// settle waits until the up direction has accounted for n datagrams.
func settle(t *testing.T, l *Link, n uint64) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := l.Up()
		if s.Datagrams+s.Lost+s.QueueDrops >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s the link accounted for %+v of %d datagrams", s, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDelay(t *testing.T) {
	srv := newServer(t, true)
	l := newLink(t, srv.addr(), Options{Delay: 20 * time.Millisecond})
	c := dial(t, l)
	buf := make([]byte, 64)
	for i := range 5 {
		start := time.Now()
		send(t, c, uint32(i), 32)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		rtt := time.Since(start)
		if rtt < 40*time.Millisecond || rtt > 500*time.Millisecond {
			t.Fatalf("round trip %d: %v, want 40 ms and a little", i, rtt)
		}
	}
	if up, down := l.Up(), l.Down(); up.Datagrams != 5 || down.Datagrams != 5 || up.Bytes != 5*32 {
		t.Fatalf("stats up %+v down %+v, want 5 datagrams of 32 bytes each way", up, down)
	}
}

func TestLossAndOrder(t *testing.T) {
	srv := newServer(t, false)
	const n = 2000
	l := newLink(t, srv.addr(), Options{Loss: 0.3, Delay: time.Millisecond, Jitter: 5 * time.Millisecond, Seed: 7})
	c := dial(t, l)
	for i := range n {
		send(t, c, uint32(i), 100)
		pace(i)
	}
	st := settle(t, l, n)
	// 30 % of 2000: mean 600, standard deviation 20.5; six of them either way.
	if st.Lost < 477 || st.Lost > 723 {
		t.Fatalf("lost %d of %d at 30 %%", st.Lost, n)
	}
	if st.QueueDrops != 0 {
		t.Fatalf("%d queue drops without a bottleneck", st.QueueDrops)
	}
	deadline := time.Now().Add(5 * time.Second)
	var seqs []uint32
	for {
		seqs, _ = srv.received()
		if uint64(len(seqs)) == st.Datagrams || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if uint64(len(seqs)) != st.Datagrams {
		t.Fatalf("server got %d datagrams, link delivered %d", len(seqs), st.Datagrams)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("datagram %d arrived after %d: jitter reordered", seqs[i], seqs[i-1])
		}
	}
}

func TestRate(t *testing.T) {
	srv := newServer(t, false)
	// 200 datagrams of 1000 bytes at 1 MB/s: 200 ms through the bottleneck.
	l := newLink(t, srv.addr(), Options{Rate: 1e6, QueueDelay: time.Second})
	c := dial(t, l)
	start := time.Now()
	for i := range 200 {
		send(t, c, uint32(i), 1000)
		pace(i)
	}
	st := settle(t, l, 200)
	if st.Datagrams != 200 {
		t.Fatalf("delivered %+v, want all 200", st)
	}
	_, last := srv.received()
	if took := last.Sub(start); took < 190*time.Millisecond {
		t.Fatalf("200 KB through a 1 MB/s bottleneck took %v, want at least 200 ms", took)
	}
}

func TestQueueDrops(t *testing.T) {
	srv := newServer(t, false)
	// 100 KB/s with a 50 ms queue holds about 5 datagrams of 1000 bytes.
	l := newLink(t, srv.addr(), Options{Rate: 100e3, QueueDelay: 50 * time.Millisecond})
	c := dial(t, l)
	for i := range 100 {
		send(t, c, uint32(i), 1000)
		pace(i)
	}
	st := settle(t, l, 100)
	if st.QueueDrops < 80 || st.Datagrams+st.QueueDrops != 100 {
		t.Fatalf("stats %+v: want most of 100 datagrams dropped at a full queue", st)
	}
}

func TestFlows(t *testing.T) {
	srv := newServer(t, true)
	l := newLink(t, srv.addr(), Options{})
	a, b := dial(t, l), dial(t, l)
	buf := make([]byte, 64)
	for i, c := range []*net.UDPConn{a, b, a} {
		send(t, c, uint32(i), 8)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil || n != 8 || binary.BigEndian.Uint32(buf) != uint32(i) {
			t.Fatalf("client %d: answer %x, %v", i, buf[:n], err)
		}
	}
	l.mu.Lock()
	flows := len(l.flows)
	l.mu.Unlock()
	if flows != 2 {
		t.Fatalf("%d flows for two clients", flows)
	}
}

func TestOptionsErrors(t *testing.T) {
	lo := netip.MustParseAddrPort("127.0.0.1:9")
	for _, o := range []Options{{Loss: 1}, {Loss: -0.1}, {Delay: -1}, {Jitter: 2 * time.Minute}, {Rate: -5}, {QueueDelay: -1}} {
		if _, err := New(lo, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if _, err := New(netip.MustParseAddrPort("0.0.0.0:9"), Options{}); err == nil {
		t.Error("a target off loopback accepted")
	}
}
