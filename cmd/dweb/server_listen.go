package main

import (
	"fmt"
	"net"
	"net/netip"
)

// listenHTTP opens the optional TCP listener of the HTTP API (`dweb serve
// --http HOST:PORT`). The API has no authentication beyond the unix
// socket's file mode, so HOST must be a loopback address (127.0.0.0/8,
// ::1) or "localhost" unless allowRemote (--http-allow-remote) is set; an
// empty HOST (all interfaces) counts as remote. Errors are *usageError for
// a bad or refused address, or the listen error.
func listenHTTP(addr string, allowRemote bool) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &usageError{fmt.Errorf("--http %q: want HOST:PORT (e.g. 127.0.0.1:8080): %v", addr, err)}
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return nil, &usageError{fmt.Errorf("--http %q: bad port: %v", addr, err)}
	}
	if !allowRemote && !isLoopbackHost(host) {
		return nil, &usageError{fmt.Errorf("--http %q: not a loopback address; the API has no authentication, so anyone who can reach the port controls the node: pass --http-allow-remote to serve it anyway", addr)}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --http %s: %w", addr, err)
	}
	return ln, nil
}

// isLoopbackHost reports whether host is "localhost" or a loopback IP.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
