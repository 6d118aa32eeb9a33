package datarepo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/transport"
)

// The values of a repo record as they are written and read. Whoever holds
// the group secret and the repo keypair (any member, for its own repo)
// chooses these bytes, so every reader checks them here before using them.

// ErrBadValue means a value read from a repo record does not decode, or
// breaks the bounds of its subkey: a malformed name or tunnel descriptor.
var ErrBadValue = errors.New("datarepo: bad record value")

// Bounds of a tunnel descriptor, checked when it is written and read: a
// reader dials each address and relay in turn, so a descriptor with
// hundreds of them would have every member that reaches its node dial
// hundreds of hosts.
const (
	MaxTunnelAddrs  = 16 // direct addresses
	MaxTunnelRelays = 8  // relays
)

// encodeName is the value of subkey 0 for a repo named name.
func encodeName(name string) []byte {
	b, _ := json.Marshal(nameValue{Name: name})
	return b
}

// decodeName decodes the value of subkey 0: JSON {"name": ...} (other
// fields are ignored, for later versions) whose name passes the rules
// SetName applies. Errors wrap ErrBadValue, and ErrBadName too for a name
// that breaks the rules.
func decodeName(b []byte) (string, error) {
	var v nameValue
	if err := json.Unmarshal(b, &v); err != nil {
		return "", fmt.Errorf("%w: name value: %v", ErrBadValue, err)
	}
	if err := CheckName(v.Name); err != nil {
		return "", fmt.Errorf("%w: name value: %w", ErrBadValue, err)
	}
	return v.Name, nil
}

// check reports whether td may be published and used: a node ID and a
// Noise static key that are not zero, at most MaxTunnelAddrs addresses,
// each an IP host:port with a port (no IPv6 zone), and at most
// MaxTunnelRelays relays, each a nodeID@host:port contact. Errors wrap
// ErrBadValue.
func (td TunnelDescriptor) check() error {
	switch {
	case td.Node.IsZero():
		return fmt.Errorf("%w: tunnel descriptor: no node ID", ErrBadValue)
	case td.Static == [32]byte{}:
		return fmt.Errorf("%w: tunnel descriptor: no Noise static key", ErrBadValue)
	case len(td.Addrs) > MaxTunnelAddrs:
		return fmt.Errorf("%w: tunnel descriptor: %d addresses, limit %d", ErrBadValue, len(td.Addrs), MaxTunnelAddrs)
	case len(td.Relays) > MaxTunnelRelays:
		return fmt.Errorf("%w: tunnel descriptor: %d relays, limit %d", ErrBadValue, len(td.Relays), MaxTunnelRelays)
	}
	for i, a := range td.Addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			return fmt.Errorf("%w: tunnel descriptor: address %d is not an IP host:port", ErrBadValue, i)
		}
	}
	for i, r := range td.Relays {
		if _, err := dht.ParseContact(r); err != nil {
			return fmt.Errorf("%w: tunnel descriptor: relay %d: %v", ErrBadValue, i, err)
		}
	}
	return nil
}

// decodeTunnel decodes the value of a tunnel slot (CBOR, as
// SetTunnel writes it) and checks it (TunnelDescriptor.check). Errors wrap
// ErrBadValue.
func decodeTunnel(b []byte) (TunnelDescriptor, error) {
	var td TunnelDescriptor
	if err := transport.Unmarshal(b, &td); err != nil {
		return TunnelDescriptor{}, fmt.Errorf("%w: tunnel descriptor: %v", ErrBadValue, err)
	}
	if err := td.check(); err != nil {
		return TunnelDescriptor{}, err
	}
	return td, nil
}
