package transport

import (
	"net/netip"

	"github.com/dwebkit/dweb/internal/key"
)

// PooledAddr returns the remote UDP address of the live connection pooled
// for node id (the one OpenStream would use), and false if there is none.
// Callers use it to report which address a stream really went to: a pooled
// connection is reused whatever address OpenStream was given.
func (e *Endpoint) PooledAddr(id key.NodeID) (netip.AddrPort, bool) {
	e.pool.mu.Lock()
	defer e.pool.mu.Unlock()
	c := e.pool.liveLocked(id)
	if c == nil {
		return netip.AddrPort{}, false
	}
	return addrPort(c.RemoteAddr()), true
}
