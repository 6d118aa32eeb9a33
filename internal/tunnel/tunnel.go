// Package tunnel runs end-to-end Noise sessions between two members of a
// group, over any byte stream (a QUIC stream, a relayed stream, a TCP
// connection).
//
// The handshake is Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s (Noise Protocol
// Framework, revision 34, via github.com/flynn/noise): the initiator knows
// the responder's X25519 static key from its tunnel descriptor, and both ends
// mix in a pre-shared key derived from the group secret (PSK), so a node
// outside the group cannot finish a handshake. The wire format and the
// security argument are in docs/tunnel.md, section "Tunnels".
package tunnel

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/flynn/noise"
	"github.com/zeebo/blake3"
	"golang.org/x/crypto/curve25519"
)

// Version is the tunnel protocol version sent in the clear hello.
const Version = 1

// PSKContext is the BLAKE3 derive-key context string for the tunnel PSK.
const PSKContext = "dweb 2026 tunnel psk"

// prologueLabel starts the Noise prologue; see prologue.
const prologueLabel = "dweb tunnel v1"

const (
	// MaxFrame is the largest frame body on the wire: a Noise message, at
	// most 65535 bytes, behind a 2-byte big-endian length.
	MaxFrame = noise.MaxMsgLen
	// TagSize is the ChaCha20-Poly1305 tag that every transport frame carries.
	TagSize = 16
	// MaxPlaintext is the most application bytes one transport frame carries
	// (65519); Session.Write splits larger writes.
	MaxPlaintext = MaxFrame - TagSize

	// MinTLSBinding is the shortest Binding that allows TLS transport mode
	// (DialConfig.TLSTransport): a 32-byte TLS exporter value.
	MinTLSBinding = 32

	// flagTLSTransport, in the message-1 flags payload: skip Noise
	// transport encryption after the handshake (docs/tunnel.md).
	flagTLSTransport = 0x01

	helloLen = 1 + key.Size                // version, group record key
	msg1Len  = 32 + 32 + TagSize + TagSize // e, encrypted s, empty encrypted payload
	msg2Len  = 32 + TagSize                // e, empty encrypted payload
)

var (
	// ErrHandshake means the handshake failed: the initiator lacks the group
	// secret (wrong PSK), it used the wrong responder static key, the group
	// is unknown to the responder, the peer closed the stream, or a handshake
	// message was malformed. The responder deliberately does not say which.
	// Errors caused by the context ending wrap ctx.Err() instead.
	ErrHandshake = errors.New("tunnel: handshake failed")
	// ErrFrame means a transport frame was malformed or failed authentication
	// (tampered, truncated, reordered or replayed). The session is unusable
	// after it: every later Read returns the same error.
	ErrFrame = errors.New("tunnel: bad transport frame")
	// ErrConfig means a DialConfig or AcceptConfig is unusable.
	ErrConfig = errors.New("tunnel: bad config")
)

// suite is the one cipher suite of protocol version 1.
var suite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)

// StaticKey is a node's X25519 Noise static keypair (separate from its
// ed25519 identity). Public is published in the node's tunnel descriptors;
// Private never leaves the node.
type StaticKey struct {
	Private, Public [32]byte
}

// NewStaticKey returns a fresh keypair from crypto/rand.
func NewStaticKey() (StaticKey, error) {
	var priv [32]byte
	if _, err := rand.Read(priv[:]); err != nil {
		return StaticKey{}, fmt.Errorf("tunnel: new static key: %w", err)
	}
	return StaticKeyFromPrivate(priv[:])
}

// StaticKeyFromPrivate rebuilds a keypair from its 32-byte X25519 private
// scalar (as stored; clamping happens inside X25519). Other lengths return
// ErrConfig.
func StaticKeyFromPrivate(priv []byte) (StaticKey, error) {
	if len(priv) != 32 {
		return StaticKey{}, fmt.Errorf("%w: static private key is %d bytes, want 32", ErrConfig, len(priv))
	}
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		return StaticKey{}, fmt.Errorf("tunnel: static key: %w", err)
	}
	var k StaticKey
	copy(k.Private[:], priv)
	copy(k.Public[:], pub)
	return k, nil
}

// String shows only the public half (URL-safe base64, no padding), so a
// logged StaticKey never leaks the private scalar.
func (k StaticKey) String() string {
	return "StaticKey(" + base64.RawURLEncoding.EncodeToString(k.Public[:]) + ")"
}

// GoString is String, for %#v.
func (k StaticKey) GoString() string { return k.String() }

// IsZero reports whether k is the zero value (no key).
func (k StaticKey) IsZero() bool { return k == StaticKey{} }

func (k StaticKey) dhKey() noise.DHKey {
	return noise.DHKey{Private: k.Private[:], Public: k.Public[:]}
}

// PSK derives a group's 32-byte tunnel pre-shared key from its group secret:
// BLAKE3 derive_key(context "dweb 2026 tunnel psk", key material = the 32
// secret bytes). Every member computes the same PSK; nobody without the
// secret can.
func PSK(groupSecret key.Secret) [32]byte {
	var out [32]byte
	blake3.DeriveKey(PSKContext, groupSecret[:], out[:])
	return out
}

// prologue binds the clear hello (and optional channel binding) into the
// handshake hash: "dweb tunnel v1" || group (32 bytes) || binding. The
// label and group have fixed lengths, so the concatenation is unambiguous.
func prologue(group key.RecordKey, binding []byte) []byte {
	p := make([]byte, 0, len(prologueLabel)+key.Size+len(binding))
	p = append(p, prologueLabel...)
	p = append(p, group[:]...)
	return append(p, binding...)
}
