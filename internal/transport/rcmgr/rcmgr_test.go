package rcmgr

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/prometheus/client_golang/prometheus"
)

// refusedCount scrapes dweb_rcmgr_refused_total{scope,kind} from m
// through a registry, as Prometheus would.
func refusedCount(t *testing.T, m *Manager, s Scope, k Kind) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dweb_rcmgr_refused_total" {
			continue
		}
		for _, mt := range mf.Metric {
			labels := map[string]string{}
			for _, l := range mt.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["scope"] == string(s) && labels["kind"] == string(k) {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func wantLimit(t *testing.T, err error, s Scope, k Kind) {
	t.Helper()
	var le *LimitError
	if !errors.As(err, &le) || le.Scope != s || le.Kind != k || !errors.Is(err, ErrLimit) {
		t.Fatalf("err = %v, want a %s limit of %s", err, k, s)
	}
}

func TestPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"8.8.8.8":             "8.8.8.0/24",
		"::ffff:8.8.8.8":      "8.8.8.0/24",
		"2001:db8:1:2::5":     "2001:db8:1::/48",
		"127.0.5.9":           "127.0.5.0/24",
		"2001:db8:ffff:1::17": "2001:db8:ffff::/48",
	} {
		if got := Prefix(addr(in)); got.String() != want {
			t.Errorf("Prefix(%s) = %s, want %s", in, got, want)
		}
	}
	if Prefix(netip.Addr{}).IsValid() {
		t.Error("Prefix of the zero address is valid")
	}
}

// TestQuotaScopes: each scope refuses at its limit, the narrowest full
// one is named, a refusal counts nothing, and releases give room back.
func TestQuotaScopes(t *testing.T) {
	m := New(Limits{})
	q := m.Quota("test", Limit{Peer: 2, IP: 3, Prefix: 4, System: 5})
	p1, p2, p3 := key.NewKeypair().ID(), key.NewKeypair().ID(), key.NewKeypair().ID()
	var charges []Charge
	take := func(p key.NodeID, a string) error {
		c, err := q.Take(p, addr(a))
		if err == nil {
			charges = append(charges, c)
		}
		return err
	}
	for range 2 {
		if err := take(p1, "8.8.8.1"); err != nil {
			t.Fatal(err)
		}
	}
	wantLimit(t, take(p1, "8.8.8.1"), ScopePeer, "test")
	if err := take(p2, "8.8.8.1"); err != nil {
		t.Fatal(err)
	}
	wantLimit(t, take(p2, "8.8.8.1"), ScopeIP, "test") // 3 from 8.8.8.1
	if err := take(p2, "8.8.8.2"); err != nil {
		t.Fatal(err)
	}
	wantLimit(t, take(p3, "8.8.8.3"), ScopePrefix, "test") // 4 from 8.8.8.0/24
	if err := take(p3, "9.9.9.9"); err != nil {
		t.Fatal(err)
	}
	wantLimit(t, take(key.NewKeypair().ID(), "10.9.9.9"), ScopeSystem, "test")
	if total, perPeer, perIP, perPrefix := q.Used(p1, addr("8.8.8.1")); total != 5 || perPeer != 2 || perIP != 3 || perPrefix != 4 {
		t.Fatalf("Used = %d %d %d %d", total, perPeer, perIP, perPrefix)
	}
	for _, s := range []Scope{ScopePeer, ScopeIP, ScopePrefix, ScopeSystem} {
		if got := refusedCount(t, m, s, "test"); got != 1 {
			t.Errorf("refused{%s} = %v, want 1", s, got)
		}
	}
	for _, c := range charges {
		q.Release(c)
	}
	if total, _, _, _ := q.Used(p1, addr("8.8.8.1")); total != 0 || len(q.peer)+len(q.ip)+len(q.pfx) != 0 {
		t.Fatalf("after release: total %d, maps %d %d %d", total, len(q.peer), len(q.ip), len(q.pfx))
	}
	q.Release(Charge{}) // no-op
}

// TestLocalAddrs: loopback counts in no address scope, private addresses
// in no prefix scope, unless Limits.LocalAddrs.
func TestLocalAddrs(t *testing.T) {
	lim := Limit{IP: 1, Prefix: 1}
	q := New(Limits{}).Quota("test", lim)
	for range 3 {
		if _, err := q.Take(key.NewKeypair().ID(), addr("127.0.0.1")); err != nil {
			t.Fatalf("loopback limited: %v", err)
		}
	}
	if _, err := q.Take(key.NewKeypair().ID(), addr("192.168.1.1")); err != nil {
		t.Fatal(err)
	}
	wantLimit(t, firstErr(q.Take(key.NewKeypair().ID(), addr("192.168.1.1"))), ScopeIP, "test")
	if _, err := q.Take(key.NewKeypair().ID(), addr("192.168.1.2")); err != nil {
		t.Fatalf("private /24 limited: %v", err)
	}
	ql := New(Limits{LocalAddrs: true}).Quota("test", lim)
	if _, err := ql.Take(key.NewKeypair().ID(), addr("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	wantLimit(t, firstErr(ql.Take(key.NewKeypair().ID(), addr("127.0.0.2"))), ScopePrefix, "test")
	// A nil manager's quota limits too, with no metrics.
	var nm *Manager
	qn := nm.Quota("test", Limit{Peer: 1})
	p := key.NewKeypair().ID()
	qn.Take(p, netip.Addr{})
	wantLimit(t, firstErr(qn.Take(p, netip.Addr{})), ScopePeer, "test")
}

func firstErr(_ Charge, err error) error { return err }

func TestRate(t *testing.T) {
	m := New(Limits{LocalAddrs: true})
	r := m.Rate("req", RateLimit{PeerRate: 10, PeerBurst: 3, PrefixRate: 10, PrefixBurst: 5})
	now := time.Now()
	p1 := key.NewKeypair().ID()
	for i := range 3 {
		if err := r.Allow(p1, addr("127.0.1.1"), now); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	wantLimit(t, r.Allow(p1, addr("127.0.1.1"), now), ScopePeer, "req")
	// Fresh IDs in the same /24 share its bucket: 2 tokens left.
	for i := range 2 {
		if err := r.Allow(key.NewKeypair().ID(), addr("127.0.1.9"), now); err != nil {
			t.Fatalf("fresh ID %d: %v", i, err)
		}
	}
	fresh := key.NewKeypair().ID()
	wantLimit(t, r.Allow(fresh, addr("127.0.1.9"), now), ScopePrefix, "req")
	// A refused request took no token of its peer: after the prefix
	// refills by one, fresh gets in.
	if err := r.Allow(fresh, addr("127.0.1.9"), now.Add(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := r.Allow(key.NewKeypair().ID(), addr("127.0.2.1"), now); err != nil {
		t.Fatalf("another /24: %v", err)
	}
	if got := refusedCount(t, m, ScopePrefix, "req"); got != 1 {
		t.Fatalf("refused{prefix,req} = %v", got)
	}
}

// TestConnAndStream: the transport's accounting of one connection and its
// streams, and the in-use gauge.
func TestConnAndStream(t *testing.T) {
	m := New(Limits{
		Conns:      Limit{Peer: 1, IP: 2, Prefix: 2, System: 10},
		Streams:    Limit{Peer: 2, IP: 10, Prefix: 10, System: 10},
		Handshakes: Limit{Peer: 1, IP: 2, Prefix: 10, System: 10},
		LocalAddrs: true,
	})
	a := addr("127.0.3.1")
	from := netip.AddrPortFrom(a, 4000)
	c1, err := m.AdmitConn(from)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := m.AdmitConn(from)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.AdmitConn(from)
	wantLimit(t, err, ScopeIP, KindConn)
	_, err = m.AdmitConn(from) // the same attempt's next packet: refused, not counted
	wantLimit(t, err, ScopeIP, KindConn)
	if got := refusedCount(t, m, ScopeIP, KindConn); got != 1 {
		t.Fatalf("refused{ip,conn} = %v, want 1", got)
	}
	if u := m.Usage(); u.Conns != 2 || u.Handshakes != 2 {
		t.Fatalf("usage %+v", u)
	}
	p := key.NewKeypair().ID()
	if err := c1.Handshaken(p); err != nil {
		t.Fatal(err)
	}
	wantLimit(t, c2.Handshaken(p), ScopePeer, KindConn) // one connection per peer
	c2.Close()
	if u := m.Usage(); u.Conns != 1 || u.Handshakes != 0 {
		t.Fatalf("usage %+v", u)
	}
	s1, err := m.AdmitStream(p, a)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.AdmitStream(p, a)
	wantLimit(t, err, ScopePeer, KindHandshake) // s1 still in its opening
	s1.Opened()
	s2, err := m.AdmitStream(p, a)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.AdmitStream(p, a)
	wantLimit(t, err, ScopePeer, KindStream)
	s1.Close()
	s2.Close()
	s2.Close()
	c1.Close()
	c1.Close()
	if u := m.Usage(); u != (Usage{}) {
		t.Fatalf("usage after closing everything %+v", u)
	}
	if got := refusedCount(t, m, ScopePeer, KindStream); got != 1 {
		t.Fatalf("refused{peer,stream} = %v", got)
	}
}

func TestRetryNeeded(t *testing.T) {
	m := New(Limits{Handshakes: Limit{System: 4, IP: -1, Prefix: -1}})
	var cs []*Conn
	for i := range 2 {
		if m.RetryNeeded() {
			t.Fatalf("retry needed after %d handshakes", i)
		}
		c, err := m.AdmitConn(netip.AddrPortFrom(addr("8.8.8.8"), uint16(1000+i)))
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	if !m.RetryNeeded() {
		t.Fatal("no retry at half the handshake budget")
	}
	cs[0].Handshaken(key.NewKeypair().ID())
	if m.RetryNeeded() {
		t.Fatal("retry still needed after a handshake ended")
	}
}

func TestPresets(t *testing.T) {
	for name, l := range map[string]Limits{"phone": PhoneLimits(), "server": ServerLimits()} {
		for _, lim := range []Limit{l.Conns, l.Streams, l.Handshakes} {
			if lim.Peer <= 0 || lim.Peer > lim.IP || lim.IP > lim.Prefix || lim.Prefix > lim.System {
				t.Errorf("%s: %+v is not peer <= ip <= prefix <= system", name, lim)
			}
		}
	}
	if New(Limits{}).Limits() != PhoneLimits() {
		t.Error("the zero Limits are not PhoneLimits")
	}
	got := New(Limits{Streams: Limit{Peer: 7}}).Limits().Streams
	if want := PhoneLimits().Streams; got.Peer != 7 || got.IP != want.IP || got.System != want.System {
		t.Errorf("WithDefaults: %+v", got)
	}
}
