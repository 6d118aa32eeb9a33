package dht

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/dwebkit/dweb/internal/key"
)

// Contact is a node as the DHT knows it: its node ID and a UDP address.
// Its text form is "nodeID@host:port", the node ID in URL-safe base64
// without padding (IPv6 hosts in brackets).
type Contact struct {
	ID   key.NodeID
	Addr netip.AddrPort
}

// ParseContact parses the text form "nodeID@host:port". The host must be an
// IP address (no DNS names).
func ParseContact(s string) (Contact, error) {
	idText, addrText, ok := strings.Cut(s, "@")
	if !ok {
		return Contact{}, fmt.Errorf("dht: contact %q: want nodeID@host:port", clip(s))
	}
	id, err := key.ParseNodeID(idText)
	if err != nil {
		return Contact{}, fmt.Errorf("dht: contact: %w", err)
	}
	ap, err := netip.ParseAddrPort(addrText)
	if err != nil {
		return Contact{}, fmt.Errorf("dht: contact %q: %v", clip(s), err)
	}
	c := Contact{ID: id, Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	if err := c.validate(); err != nil {
		return Contact{}, err
	}
	return c, nil
}

func (c Contact) String() string { return c.ID.String() + "@" + c.Addr.String() }

// MarshalText returns the text form.
func (c Contact) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses the text form.
func (c *Contact) UnmarshalText(b []byte) error {
	v, err := ParseContact(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

func (c Contact) validate() error {
	if c.ID.IsZero() {
		return fmt.Errorf("%w: contact with zero node ID", ErrBadRequest)
	}
	if !c.Addr.IsValid() || c.Addr.Port() == 0 || c.Addr.Addr().IsUnspecified() {
		return fmt.Errorf("%w: contact %s: unusable address", ErrBadRequest, c.ID)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}
