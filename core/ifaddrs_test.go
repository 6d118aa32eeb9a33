package core

import (
	"net"
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
