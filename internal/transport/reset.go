package transport

import (
	"github.com/dwebkit/dweb/internal/key"
	"github.com/quic-go/quic-go"
	"github.com/zeebo/blake3"
)

// resetKeyContext is the BLAKE3 derive-key context of the QUIC stateless
// reset key.
const resetKeyContext = "dweb 2026 quic stateless reset"

// statelessResetKey derives the QUIC stateless reset key (RFC 9000 §10.3)
// from the node's identity. A node restarted with the same identity on the
// same address answers packets of its previous run's connections with a
// stateless reset, so a peer drops such a connection at once instead of
// sending into it until the idle timeout. The key is one-way from the seed:
// it reveals nothing about the identity.
func statelessResetKey(id key.Keypair) *quic.StatelessResetKey {
	var k quic.StatelessResetKey
	blake3.DeriveKey(resetKeyContext, id.Seed(), k[:])
	return &k
}
