package rcmgr

import "net/netip"

// Prefix returns a's network for the prefix scope: its /24 for IPv4, its
// /48 for IPv6 (an IPv4-mapped IPv6 address counts as IPv4). A /24 is the
// smallest IPv4 block routed on the Internet and a /48 the usual IPv6 site
// allocation, so one network's operator holds one prefix however many
// addresses it uses; libp2p's kbucket diversity filter groups the same
// way. The zero Prefix for an invalid address.
func Prefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// addrScopes reports whether a counts in the IP and prefix scopes (see the
// package doc, "Local addresses").
func addrScopes(a netip.Addr, local bool) (ip, prefix bool) {
	a = a.Unmap()
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return false, false
	case local:
		return true, true
	case a.IsLoopback():
		return false, false
	case a.IsPrivate() || a.IsLinkLocalUnicast():
		return true, false
	}
	return true, true
}
