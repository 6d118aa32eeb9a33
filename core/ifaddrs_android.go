//go:build android

package core

import (
	"net"
	"sync"

	"github.com/wlynxg/anet"
)

// anetLevel runs once, on the first listing: see interfaceAddrs.
var anetLevel sync.Once

// interfaceAddrs lists the unicast addresses of the phone's network
// interfaces, as *net.IPNet values (loopback and link-local included; the
// caller filters), or the error of the refused listing.
//
// From Android 11 (API level 30) an app may not bind a netlink route socket,
// so net.InterfaceAddrs fails with "netlinkrib: permission denied"
// (golang/go#40569) and a node listening on 0.0.0.0 would advertise no
// address. anet sends the same RTM_GETADDR dump without the bind and names
// the interfaces with ioctls. It chooses that path from the device's API
// level, which it can read only in a cgo build (the app's libdweb.so); built
// without cgo it cannot tell and takes net's path. So the first call lets anet
// choose and, if that fails, tells it the device runs Android 11+, so that it
// and every later call take the bind-free dump (the kernel binds the socket
// itself on send, so older versions answer it too). The sync.Once keeps that
// setting from changing while another goroutine lists.
//
// Linking anet needs -ldflags=-checklinkname=0 (docs/ffi.md): it names
// net.zoneCache with //go:linkname, which Go 1.23+ refuses by default;
// InterfaceAddrs never touches it.
func interfaceAddrs() ([]net.Addr, error) {
	anetLevel.Do(func() {
		if _, err := anet.InterfaceAddrs(); err != nil {
			anet.SetAndroidVersion(11)
		}
	})
	return anet.InterfaceAddrs()
}
