package group

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/fxamacker/cbor/v2"
	"github.com/zeebo/blake3"
	"golang.org/x/crypto/chacha20poly1305"
)

// Epoch keys (docs/trust.md, "Epochs and removal"). A membership-checked
// group has one random 32-byte key per epoch; a removal starts the next
// epoch with a fresh key. The list of each version carries:
//
//   - per member, the epoch key sealed to the member's X25519 key with
//     HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256),
//     HKDF-SHA256, ChaCha20-Poly1305; info "dweb epoch key v1\x00" ||
//     group key || be64 epoch || member signing key): EpochKeyBoxSize
//     bytes;
//   - the keys of up to MaxEpochChain earlier epochs, sealed under the
//     current one (a member that was offline across several epochs, or
//     joined late, reads values written in them);
//   - the group's metadata and the members' display names, sealed under
//     the current one.
//
// Every purpose uses its own key, derived from the epoch key with BLAKE3
// derive-key and a context string (DESIGN.md, "Identity and
// cryptography"); values are XChaCha20-Poly1305.
const (
	// EpochKeyBoxSize is the size of an epoch key sealed to one member:
	// the 32-byte encapsulated key, the 32-byte key and a 16-byte tag.
	EpochKeyBoxSize = 32 + 32 + 16
	// MaxEpochChain is how many earlier epochs' keys a list carries. A
	// value sealed more than MaxEpochChain epochs ago and never rewritten
	// opens only for members that held its key then.
	MaxEpochChain = 64

	epochKeyInfo   = "dweb epoch key v1\x00"
	ctxValues      = "dweb 2026 group values"
	ctxChain       = "dweb 2026 epoch chain"
	ctxNames       = "dweb 2026 member names"
	maxEpochPrefix = binary.MaxVarintLen64
)

// ErrNoEpochKey means a value or a list was sealed under an epoch key this
// member does not hold: it was removed before that epoch, or the list was
// not sealed to it. It wraps record.ErrDecrypt, so listings skip such
// values as they skip any that do not open.
var ErrNoEpochKey = fmt.Errorf("group: no key for that epoch: %w", record.ErrDecrypt)

var (
	hpkeKDF  = hpke.HKDFSHA256()
	hpkeAEAD = hpke.ChaCha20Poly1305()
)

func derive(context string, k key.Secret) key.Secret {
	var out key.Secret
	blake3.DeriveKey(context, k[:], out[:])
	return out
}

func epochInfo(group []byte, epoch uint64, member []byte) []byte {
	b := append([]byte(epochKeyInfo), group...)
	b = binary.BigEndian.AppendUint64(b, epoch)
	return append(b, member...)
}

// sealEpochKey seals k, the key of epoch, to member m of group.
func sealEpochKey(m MemberEntry, group []byte, epoch uint64, k key.Secret) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(m.Box)
	if err != nil {
		return nil, fmt.Errorf("%w: member %x: %v", ErrBadMembership, m.Sign[:4], err)
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("seal epoch key: %w", err)
	}
	return hpke.Seal(pk, hpkeKDF, hpkeAEAD, epochInfo(group, epoch, m.Sign), k[:])
}

// openEpochKey opens the epoch key sealed in m's entry with m's key.
func openEpochKey(mk MemberKey, m MemberEntry, group []byte, epoch uint64) (key.Secret, error) {
	sk, err := hpke.NewDHKEMPrivateKey(mk.box)
	if err != nil {
		return key.Secret{}, fmt.Errorf("open epoch key: %w", err)
	}
	pt, err := hpke.Open(sk, hpkeKDF, hpkeAEAD, epochInfo(group, epoch, m.Sign), m.Key)
	if err != nil || len(pt) != len(key.Secret{}) {
		return key.Secret{}, fmt.Errorf("%w: epoch %d's key does not open with this member key", ErrNoEpochKey, epoch)
	}
	return key.Secret(pt), nil
}

// sealWith seals pt under the key derived for purpose from k, bound to
// ad: a random 24-byte nonce || ciphertext || tag.
func sealWith(purpose string, k key.Secret, ad, pt []byte) ([]byte, error) {
	dk := derive(purpose, k)
	aead, err := chacha20poly1305.NewX(dk[:])
	if err != nil {
		return nil, err
	}
	out := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+len(pt)+chacha20poly1305.Overhead)
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return aead.Seal(out, out, pt, ad), nil
}

func openWith(purpose string, k key.Secret, ad, sealed []byte) ([]byte, error) {
	dk := derive(purpose, k)
	aead, err := chacha20poly1305.NewX(dk[:])
	if err != nil {
		return nil, err
	}
	ns := chacha20poly1305.NonceSizeX
	if len(sealed) < ns+chacha20poly1305.Overhead {
		return nil, fmt.Errorf("%w: %d sealed bytes", record.ErrDecrypt, len(sealed))
	}
	pt, err := aead.Open(nil, sealed[:ns], sealed[ns:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", record.ErrDecrypt, purpose)
	}
	return pt, nil
}

// Keyring is the epoch keys one member holds for one group: the current
// epoch's, which seals what it writes, and earlier ones, which open what
// was written then. It implements record.Sealer: a value is
// uvarint(epoch) || record.Seal under the epoch's value key, so a reader
// knows which key to use. A Keyring is not changed after it is made; a
// member that learns a new list makes a new one (Membership.OpenKeys).
type Keyring struct {
	group key.RecordKey
	epoch uint64
	keys  map[uint64]key.Secret
}

var _ record.Sealer = (*Keyring)(nil)

// Epoch is the current epoch: the one Seal seals under.
func (r *Keyring) Epoch() uint64 { return r.epoch }

// Key returns the key of epoch e, if held.
func (r *Keyring) Key(e uint64) (key.Secret, bool) {
	k, ok := r.keys[e]
	return k, ok
}

// Epochs lists the epochs whose keys are held, in order.
func (r *Keyring) Epochs() []uint64 { return slices.Sorted(maps.Keys(r.keys)) }

// Current is the current epoch's key.
func (r *Keyring) Current() key.Secret { return r.keys[r.epoch] }

// With returns a keyring that also holds the keys of r2 (a member keeps
// the keys of every epoch it has seen, also those older than a new
// list's chain), current in the later of the two epochs.
func (r *Keyring) With(r2 *Keyring) *Keyring {
	out := &Keyring{group: r.group, epoch: max(r.epoch, r2.epoch), keys: maps.Clone(r.keys)}
	maps.Copy(out.keys, r2.keys)
	return out
}

// Seal implements record.Sealer under the current epoch's key.
func (r *Keyring) Seal(k key.RecordKey, subkey uint32, plaintext []byte) ([]byte, error) {
	if len(plaintext) > record.MaxPlaintextSize-maxEpochPrefix {
		return nil, &record.LimitError{What: "plaintext", Size: len(plaintext), Max: record.MaxPlaintextSize - maxEpochPrefix}
	}
	sealed, err := record.Seal(derive(ctxValues, r.Current()), k, subkey, plaintext)
	if err != nil {
		return nil, err
	}
	return append(binary.AppendUvarint(nil, r.epoch), sealed...), nil
}

// Open implements record.Sealer: it opens a value sealed under any epoch
// key held. A value of an epoch whose key is not held gives an error
// wrapping ErrNoEpochKey (and so record.ErrDecrypt).
func (r *Keyring) Open(k key.RecordKey, subkey uint32, sealed []byte) ([]byte, error) {
	e, n := binary.Uvarint(sealed)
	if n <= 0 {
		return nil, fmt.Errorf("%w: subkey %d of record %s: no epoch", record.ErrDecrypt, subkey, k)
	}
	ek, ok := r.keys[e]
	if !ok {
		return nil, fmt.Errorf("subkey %d of record %s, epoch %d: %w", subkey, k, e, ErrNoEpochKey)
	}
	return record.Open(derive(ctxValues, ek), k, subkey, sealed[n:])
}

// epochOf reads the epoch a Keyring-sealed value was sealed in.
func epochOf(sealed []byte) (uint64, bool) {
	e, n := binary.Uvarint(sealed)
	return e, n > 0
}

// encodeChain lays out the keys of epochs first..first+n-1.
func encodeChain(first uint64, keys []key.Secret) []byte {
	b := binary.BigEndian.AppendUint64(nil, first)
	for _, k := range keys {
		b = append(b, k[:]...)
	}
	return b
}

func decodeChain(b []byte) (first uint64, keys []key.Secret, err error) {
	if len(b) < 8 || (len(b)-8)%32 != 0 || (len(b)-8)/32 > MaxEpochChain {
		return 0, nil, errors.New("malformed epoch chain")
	}
	first = binary.BigEndian.Uint64(b)
	for p := b[8:]; len(p) > 0; p = p[32:] {
		keys = append(keys, key.Secret(p[:32]))
	}
	return first, keys, nil
}

func chainAD(group []byte, epoch uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), group...), epoch)
}

func nameAD(group []byte, epoch uint64, member []byte) []byte {
	return append(chainAD(group, epoch), member...)
}

// keyringWire is a Keyring's encoding: what a member keeps, in its
// protected store, of the keys it has seen.
type keyringWire struct {
	Group []byte            `cbor:"1,keyasint"`
	Epoch uint64            `cbor:"2,keyasint"`
	Keys  map[uint64][]byte `cbor:"3,keyasint"`
}

// MarshalBinary encodes the keyring (deterministic CBOR). It holds
// secrets: keep it where the node keeps its secrets.
func (r *Keyring) MarshalBinary() ([]byte, error) {
	w := keyringWire{Group: r.group[:], Epoch: r.epoch, Keys: map[uint64][]byte{}}
	for e, k := range r.keys {
		w.Keys[e] = bytes.Clone(k[:])
	}
	return memEnc.Marshal(w)
}

// maxKeyringEpochs bounds a decoded keyring: the epochs a member can
// have seen in a group's lifetime here.
const maxKeyringEpochs = 1 << 16

// UnmarshalKeyring decodes MarshalBinary's encoding.
func UnmarshalKeyring(b []byte) (*Keyring, error) {
	var w keyringWire
	dec, err := cbor.DecOptions{MaxMapPairs: maxKeyringEpochs, MaxNestedLevels: 4}.DecMode()
	if err != nil {
		return nil, err
	}
	if err := dec.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("group: keyring: %w", err)
	}
	if len(w.Group) != key.Size {
		return nil, fmt.Errorf("group: keyring: group key of %d bytes", len(w.Group))
	}
	r := &Keyring{group: key.RecordKey(w.Group), epoch: w.Epoch, keys: map[uint64]key.Secret{}}
	for e, k := range w.Keys {
		if len(k) != len(key.Secret{}) {
			return nil, fmt.Errorf("group: keyring: epoch %d key of %d bytes", e, len(k))
		}
		r.keys[e] = key.Secret(k)
	}
	if _, ok := r.keys[r.epoch]; !ok {
		return nil, fmt.Errorf("group: keyring: no key for its current epoch %d", r.epoch)
	}
	return r, nil
}
