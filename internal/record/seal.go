package record

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/dwebkit/dweb/internal/key"
	"golang.org/x/crypto/chacha20poly1305"
)

// SealOverhead is the number of bytes Seal adds: a 24-byte nonce and a
// 16-byte tag.
const SealOverhead = chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

func sealAD(k key.RecordKey, subkey uint32) []byte {
	return binary.BigEndian.AppendUint32(append(make([]byte, 0, key.Size+4), k[:]...), subkey)
}

// Seal encrypts plaintext for subkey of record k under secret with
// XChaCha20-Poly1305: the result is a random 24-byte nonce || ciphertext ||
// 16-byte tag, with associated data k || be32 subkey so that it opens only at
// that place. Plaintext over MaxPlaintextSize gives a *LimitError.
func Seal(secret key.Secret, k key.RecordKey, subkey uint32, plaintext []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintextSize {
		return nil, &LimitError{What: "plaintext", Size: len(plaintext), Max: MaxPlaintextSize}
	}
	aead, err := chacha20poly1305.NewX(secret[:])
	if err != nil {
		return nil, fmt.Errorf("record: seal: %w", err)
	}
	out := make([]byte, chacha20poly1305.NonceSizeX, len(plaintext)+SealOverhead)
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("record: seal nonce: %w", err)
	}
	return aead.Seal(out, out, plaintext, sealAD(k, subkey)), nil
}

// Open decrypts bytes made by Seal for the same secret, record key and
// subkey. Anything else gives ErrDecrypt.
func Open(secret key.Secret, k key.RecordKey, subkey uint32, sealed []byte) ([]byte, error) {
	if len(sealed) < SealOverhead || len(sealed) > MaxValueSize {
		return nil, fmt.Errorf("%w: %d sealed bytes, want %d..%d", ErrDecrypt, len(sealed), SealOverhead, MaxValueSize)
	}
	aead, err := chacha20poly1305.NewX(secret[:])
	if err != nil {
		return nil, fmt.Errorf("record: open: %w", err)
	}
	ns := chacha20poly1305.NonceSizeX
	pt, err := aead.Open(nil, sealed[:ns], sealed[ns:], sealAD(k, subkey))
	if err != nil {
		return nil, fmt.Errorf("%w: subkey %d of record %s", ErrDecrypt, subkey, k)
	}
	return pt, nil
}

// Sealer seals and opens the values of a group's records. A group of the
// first invite's format has one secret (Secret); a membership-checked
// group has one key per epoch (group.Keyring, docs/trust.md "Epochs and
// removal"). Seal's output is at most MaxValueSize bytes; Open gives an
// error wrapping ErrDecrypt for anything it cannot open.
type Sealer interface {
	Seal(k key.RecordKey, subkey uint32, plaintext []byte) ([]byte, error)
	Open(k key.RecordKey, subkey uint32, sealed []byte) ([]byte, error)
}

// Secret is a Sealer of one group secret: Seal and Open above.
type Secret key.Secret

// Seal implements Sealer with Seal.
func (s Secret) Seal(k key.RecordKey, subkey uint32, plaintext []byte) ([]byte, error) {
	return Seal(key.Secret(s), k, subkey, plaintext)
}

// Open implements Sealer with Open.
func (s Secret) Open(k key.RecordKey, subkey uint32, sealed []byte) ([]byte, error) {
	return Open(key.Secret(s), k, subkey, sealed)
}
