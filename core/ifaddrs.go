//go:build !android

package core

import "net"

// interfaceAddrs lists the unicast addresses of the machine's network
// interfaces, as *net.IPNet values (loopback and link-local included; the
// caller filters). It is a seam for Android, where net.InterfaceAddrs is
// refused (golang/go#40569, see ifaddrs_android.go); everywhere else it is
// net.InterfaceAddrs.
func interfaceAddrs() ([]net.Addr, error) {
	return net.InterfaceAddrs()
}
