package core

import (
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
)

// TestInterfaceAddrsListsLoopback lists this machine's interface addresses
// for real: every address is a *net.IPNet and the loopback interface's
// 127.0.0.1 or ::1 is among them.
func TestInterfaceAddrsListsLoopback(t *testing.T) {
	addrs, err := interfaceAddrs()
	if err != nil {
		t.Fatalf("interfaceAddrs: %v", err)
	}
	loopback := false
	for _, a := range addrs {
		pn, ok := a.(*net.IPNet)
		if !ok {
			t.Fatalf("interfaceAddrs returned %T (%v), want *net.IPNet", a, a)
		}
		if pn.IP.IsLoopback() {
			loopback = true
		}
	}
	if !loopback {
		t.Fatalf("interfaceAddrs = %v, want a loopback address among them", addrs)
	}
}

// TestAdvertiseDualStack: a node listening on 0.0.0.0, which Go binds
// dual-stack and reports as [::], advertises its IPv4 addresses too (the
// loopback's 127.0.0.1 here), loopback ones last, and dials to one reach
// it.
func TestAdvertiseDualStack(t *testing.T) {
	tmp := t.TempDir()
	any := startWith(t, filepath.Join(tmp, "any"), Options{ListenAddr: "0.0.0.0:0"}, false)
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), any.Addr().Port()).String()
	addrs := any.advertiseAddrs()
	if !slices.Contains(addrs, want) {
		t.Fatalf("a node listening on 0.0.0.0 (local address %v) advertises %v, want %s among them", any.Addr(), addrs, want)
	}
	// Loopback last: a peer elsewhere tries them in order.
	for i := 1; i < len(addrs); i++ {
		if netip.MustParseAddrPort(addrs[i-1]).Addr().IsLoopback() && !netip.MustParseAddrPort(addrs[i]).Addr().IsLoopback() {
			t.Fatalf("advertised %v: a loopback address before another", addrs)
		}
	}
	other := startNode(t, filepath.Join(tmp, "other"), any.NodeID().String()+"@"+want)
	waitBootedT(t, other)
	if len(other.Peers()) == 0 {
		t.Fatalf("a node bootstrapping through %s knows no peer", want)
	}
}
