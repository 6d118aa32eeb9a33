// Package key holds dweb's small shared identifier types: node IDs, record
// keys and group secrets. Each has a canonical text form used in logs, URIs,
// JSON and the HTTP API.
//
// Node IDs and record keys are written as URL-safe base64 without padding
// (43 characters for 32 bytes), the form the Save app uses for its group and
// repo IDs. Secrets never print their value.
package key

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// Size is the length in bytes of every key type in this package.
const Size = 32

var b64 = base64.RawURLEncoding

// ErrBadKey is returned (wrapped) by the Parse functions when text is not a
// valid 32-byte key in URL-safe base64 without padding.
var ErrBadKey = errors.New("bad key")

func parse32(kind, s string) ([Size]byte, error) {
	var out [Size]byte
	if len(s) != b64.EncodedLen(Size) {
		return out, fmt.Errorf("%w: %s %q: want %d base64url characters, got %d", ErrBadKey, kind, clip(s), b64.EncodedLen(Size), len(s))
	}
	n, err := b64.Decode(out[:], []byte(s))
	if err != nil || n != Size {
		return out, fmt.Errorf("%w: %s %q: not base64url", ErrBadKey, kind, clip(s))
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// NodeID identifies a node: its ed25519 public key.
type NodeID [Size]byte

// ParseNodeID parses the text form of a node ID.
func ParseNodeID(s string) (NodeID, error) {
	b, err := parse32("node ID", s)
	return NodeID(b), err
}

// NodeIDFromPublicKey returns the node ID of an ed25519 public key.
// It panics if pub is not 32 bytes, which only a programming error causes.
func NodeIDFromPublicKey(pub ed25519.PublicKey) NodeID {
	if len(pub) != ed25519.PublicKeySize {
		panic("key: public key is not 32 bytes")
	}
	return NodeID(pub)
}

// PublicKey returns the node ID as an ed25519 public key.
func (id NodeID) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(id[:]) }

func (id NodeID) String() string               { return b64.EncodeToString(id[:]) }
func (id NodeID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }
func (id *NodeID) UnmarshalText(b []byte) error {
	v, err := ParseNodeID(string(b))
	*id = v
	return err
}

// IsZero reports whether id is all zeros (unset).
func (id NodeID) IsZero() bool { return id == NodeID{} }

// RecordKey identifies a DHT record: BLAKE3(owner public key || schema bytes)
// as computed by internal/record.
type RecordKey [Size]byte

// ParseRecordKey parses the text form of a record key.
func ParseRecordKey(s string) (RecordKey, error) {
	b, err := parse32("record key", s)
	return RecordKey(b), err
}

func (k RecordKey) String() string               { return b64.EncodeToString(k[:]) }
func (k RecordKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
func (k *RecordKey) UnmarshalText(b []byte) error {
	v, err := ParseRecordKey(string(b))
	*k = v
	return err
}

// IsZero reports whether k is all zeros (unset).
func (k RecordKey) IsZero() bool { return k == RecordKey{} }

// Secret is a 32-byte symmetric secret, such as a group secret. Its String
// method hides the value so that it never reaches a log; use Text to encode it
// on purpose (in an invite URI).
type Secret [Size]byte

// NewSecret returns 32 bytes from crypto/rand.
func NewSecret() Secret {
	var s Secret
	if _, err := rand.Read(s[:]); err != nil {
		panic("key: crypto/rand failed: " + err.Error())
	}
	return s
}

// ParseSecret parses the text form written by Text.
func ParseSecret(s string) (Secret, error) {
	b, err := parse32("secret", s)
	return Secret(b), err
}

// Text returns the secret in URL-safe base64 without padding.
func (s Secret) Text() string { return b64.EncodeToString(s[:]) }

// String hides the secret.
func (s Secret) String() string { return "Secret(redacted)" }

// GoString hides the secret from %#v.
func (s Secret) GoString() string { return s.String() }

// IsZero reports whether s is all zeros (unset).
func (s Secret) IsZero() bool { return s == Secret{} }

// Keypair is an ed25519 signing keypair: a node identity, a record owner or a
// repo writer.
type Keypair struct {
	Private ed25519.PrivateKey // 64 bytes: seed || public
}

// NewKeypair generates an ed25519 keypair from crypto/rand.
func NewKeypair() Keypair {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic("key: crypto/rand failed: " + err.Error())
	}
	return Keypair{Private: priv}
}

// KeypairFromSeed returns the keypair for a 32-byte ed25519 seed.
func KeypairFromSeed(seed []byte) (Keypair, error) {
	if len(seed) != ed25519.SeedSize {
		return Keypair{}, fmt.Errorf("%w: ed25519 seed is %d bytes, want %d", ErrBadKey, len(seed), ed25519.SeedSize)
	}
	return Keypair{Private: ed25519.NewKeyFromSeed(seed)}, nil
}

// Public returns the public key.
func (k Keypair) Public() ed25519.PublicKey { return k.Private.Public().(ed25519.PublicKey) }

// ID returns the public key as a NodeID-shaped value (for node identities).
func (k Keypair) ID() NodeID { return NodeIDFromPublicKey(k.Public()) }

// Seed returns the 32-byte seed the keypair derives from.
func (k Keypair) Seed() []byte { return k.Private.Seed() }

// Sign signs msg with ed25519.
func (k Keypair) Sign(msg []byte) []byte { return ed25519.Sign(k.Private, msg) }

// String hides the private key.
func (k Keypair) String() string { return "Keypair(" + b64.EncodeToString(k.Public()) + ")" }
