package group

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	"github.com/dwebkit/dweb/uri"
)

// MemberKeySize is the length of a member key's private encoding: the
// ed25519 seed (32 bytes, RFC 8032) then the X25519 private key (32
// bytes, RFC 7748).
const MemberKeySize = 64

// MemberKey is a device's key as a group member (docs/trust.md, "Member
// keys"): an ed25519 key that will sign its membership and repo values,
// and an X25519 key that group keys will be sealed to. It is made on the
// device and never leaves it; its public half is the device's contact
// code (uri.Contact). It is distinct from the node ID, so DHT holders,
// who see member keys in membership lists, cannot tie them to the node's
// network identity.
type MemberKey struct {
	sign ed25519.PrivateKey
	box  *ecdh.PrivateKey
}

// NewMemberKey makes a fresh member key from crypto/rand.
func NewMemberKey() (MemberKey, error) {
	_, sign, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return MemberKey{}, fmt.Errorf("member key: %w", err)
	}
	box, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return MemberKey{}, fmt.Errorf("member key: %w", err)
	}
	return MemberKey{sign: sign, box: box}, nil
}

// ParseMemberKey reads the MemberKeySize-byte encoding Bytes returns.
func ParseMemberKey(b []byte) (MemberKey, error) {
	if len(b) != MemberKeySize {
		return MemberKey{}, fmt.Errorf("member key: %d bytes, want %d", len(b), MemberKeySize)
	}
	box, err := ecdh.X25519().NewPrivateKey(b[32:])
	if err != nil {
		return MemberKey{}, fmt.Errorf("member key: %w", err)
	}
	return MemberKey{sign: ed25519.NewKeyFromSeed(b[:32]), box: box}, nil
}

// Bytes is the private encoding: keep it where the node keeps its secrets.
func (m MemberKey) Bytes() []byte {
	return append(append(make([]byte, 0, MemberKeySize), m.sign.Seed()...), m.box.Bytes()...)
}

// Public is the public signing key: how lists name the member.
func (m MemberKey) Public() ed25519.PublicKey { return m.sign.Public().(ed25519.PublicKey) }

// Contact is the key's public half, signed: what the member shows an
// admin to be invited.
func (m MemberKey) Contact() uri.Contact {
	return uri.NewContact(m.sign, [32]byte(m.box.PublicKey().Bytes()))
}

// String names the key by its public signing key, never the private one.
func (m MemberKey) String() string {
	return "MemberKey(" + m.Contact().String() + ")"
}

// GoString is String: %#v shows no secret either.
func (m MemberKey) GoString() string { return m.String() }
