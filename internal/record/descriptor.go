// Package record implements dweb's DHT records: a descriptor signed by the
// record's owner that fixes a schema of numbered subkeys, and subkey values
// signed by their writers, plus the encryption of value data under a group
// secret.
//
// The model follows Veilid's DHT records (schemas DFLT and SMPL): the owner
// writes subkeys 0..OwnerSubkeys-1 and each member range gives one other key
// the next Count subkeys. A record's key is BLAKE3-256(owner public key ||
// schema bytes), so the key commits to both.
//
// A second schema kind, membership-checked (Schema.Membership), is for
// group records whose writers change (docs/trust.md): subkey 0 holds a
// membership list signed by an admin, subkeys 1..Slots are repo slots, and
// who may write each is decided by the list a holder has, not by the
// schema; the schema commits only to the first admin's key, who signs the
// first list. This package checks such values' shapes, seqs and
// signatures; the list rules are the caller's (internal/dht's
// MembershipChecker, implemented in group).
//
// Signed messages (ed25519, RFC 8032):
//
//	descriptor: "dweb record descriptor v1\x00" || schema bytes
//	value:      "dweb record value v1\x00" || record key (32) || be32 subkey || be64 seq || data
//
// Encodings are deterministic CBOR (RFC 8949 §4.2.1, Core Deterministic)
// with small integer map keys.
package record

import (
	"bytes"
	"crypto/ed25519"
	"fmt"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/zeebo/blake3"
)

// Limits.
const (
	// MaxValueSize is the largest subkey data, in bytes, as stored: when the
	// data is sealed, this counts the nonce and tag too.
	MaxValueSize = 32 << 10
	// MaxPlaintextSize is the largest plaintext Seal accepts: MaxValueSize
	// less the 24-byte nonce and the 16-byte Poly1305 tag.
	MaxPlaintextSize = MaxValueSize - 24 - 16
	// MaxSubkeys is the largest number of subkeys a schema may define.
	MaxSubkeys = 1024
)

// MaxSeq is the highest sequence number a value may carry: 2^62. NewValue
// will not sign a value above it and Descriptor.VerifyValue refuses one
// (ErrSeqRange), so every holder refuses it at store time; NextSeq will
// not step past it.
//
// Why a bound: without one, a writer of a subkey who sets seq = 2^64-1
// makes that value unbeatable (no higher seq exists) and every writer's
// seq+1 wraps to 0, so the subkey can never be repaired. 2^62 leaves the
// arithmetic of seq+1 far from wrapping and the top of the space free for
// a later rule; no honest writer gets near it (one write a microsecond
// takes 146,000 years). It does not stop a writer allowed on a subkey from
// setting exactly MaxSeq: a value there is still replaced only by one of
// equal seq and smaller BLAKE3(data).
const MaxSeq uint64 = 1 << 62

const (
	descriptorContext = "dweb record descriptor v1\x00"
	valueContext      = "dweb record value v1\x00"
)

// MemberRange gives a non-owner key its own subkeys (Veilid SMPL member).
type MemberRange struct {
	Key   []byte `cbor:"1,keyasint"` // ed25519 public key, 32 bytes
	Count uint32 `cbor:"2,keyasint"` // number of subkeys, >= 1
}

// MembershipSchema makes a record membership-checked: subkey 0 is the
// membership list, subkeys 1..Slots the repo slots, each written by whom
// the list a holder has allows (docs/trust.md, "Member keys and the
// membership list"; docs/dht.md, "Membership-checked records").
type MembershipSchema struct {
	FirstAdmin []byte `cbor:"1,keyasint"` // ed25519 member key of the first admin, 32 bytes: it signs list version 0
	Slots      uint32 `cbor:"2,keyasint"` // repo slots, 1..MaxSubkeys-1
}

// Schema lays out a record's subkeys. Of the default kind (Membership
// nil, Veilid's DFLT and SMPL): 0..OwnerSubkeys-1 belong to the owner,
// then each member range in order; the total is 1..MaxSubkeys. Of the
// membership-checked kind (Membership set, OwnerSubkeys 0, no member
// ranges): subkey 0 and the Membership.Slots repo slots, whose writers the
// membership list names; the owner writes nothing.
type Schema struct {
	OwnerSubkeys uint32            `cbor:"1,keyasint"`
	Members      []MemberRange     `cbor:"2,keyasint,omitempty"`
	Membership   *MembershipSchema `cbor:"3,keyasint,omitempty"`
}

// MembershipChecked reports whether the schema is of the
// membership-checked kind.
func (s Schema) MembershipChecked() bool { return s.Membership != nil }

// Bytes returns the schema's deterministic CBOR encoding, the bytes the
// record key and the descriptor signature cover.
func (s Schema) Bytes() []byte {
	b, err := encMode.Marshal(s)
	if err != nil {
		// A struct of integers and byte strings always encodes.
		panic("record: encode schema: " + err.Error())
	}
	return b
}

// count returns the number of subkeys, checking the limits.
func (s Schema) count() (uint32, error) {
	if m := s.Membership; m != nil {
		switch {
		case s.OwnerSubkeys != 0 || len(s.Members) != 0:
			return 0, fmt.Errorf("%w: a membership-checked schema with %d owner subkeys and %d member ranges, want none", ErrBadSchema, s.OwnerSubkeys, len(s.Members))
		case len(m.FirstAdmin) != ed25519.PublicKeySize:
			return 0, fmt.Errorf("%w: first admin key is %d bytes, want %d", ErrBadSchema, len(m.FirstAdmin), ed25519.PublicKeySize)
		case m.Slots == 0 || m.Slots >= MaxSubkeys:
			return 0, fmt.Errorf("%w: %d repo slots, want 1..%d", ErrBadSchema, m.Slots, MaxSubkeys-1)
		}
		return 1 + m.Slots, nil
	}
	if len(s.Members) > MaxSubkeys {
		return 0, fmt.Errorf("%w: %d member ranges, limit %d", ErrBadSchema, len(s.Members), MaxSubkeys)
	}
	n := uint64(s.OwnerSubkeys)
	for i, m := range s.Members {
		if len(m.Key) != ed25519.PublicKeySize {
			return 0, fmt.Errorf("%w: member %d key is %d bytes, want %d", ErrBadSchema, i, len(m.Key), ed25519.PublicKeySize)
		}
		if m.Count == 0 {
			return 0, fmt.Errorf("%w: member %d has no subkeys", ErrBadSchema, i)
		}
		n += uint64(m.Count)
	}
	if n == 0 || n > MaxSubkeys {
		return 0, fmt.Errorf("%w: %d subkeys, want 1..%d", ErrBadSchema, n, MaxSubkeys)
	}
	return uint32(n), nil
}

// Validate checks the schema limits; errors wrap ErrBadSchema.
func (s Schema) Validate() error {
	_, err := s.count()
	return err
}

// Descriptor is a record's signed header: who owns it and its schema.
type Descriptor struct {
	Owner  []byte `cbor:"1,keyasint"` // ed25519 public key, 32 bytes
	Schema Schema `cbor:"2,keyasint"`
	Sig    []byte `cbor:"3,keyasint"` // ed25519 over descriptorContext || schema bytes
}

// NewDescriptor validates s and returns a descriptor signed by owner.
// Errors wrap ErrBadSchema.
func NewDescriptor(owner key.Keypair, s Schema) (*Descriptor, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	msg := append([]byte(descriptorContext), s.Bytes()...)
	return &Descriptor{Owner: bytes.Clone(owner.Public()), Schema: s, Sig: owner.Sign(msg)}, nil
}

// Key returns the record key: BLAKE3-256(owner || schema bytes).
func (d *Descriptor) Key() key.RecordKey {
	h := blake3.New()
	h.Write(d.Owner)
	h.Write(d.Schema.Bytes())
	var k key.RecordKey
	h.Sum(k[:0])
	return k
}

func (d *Descriptor) checkShape() error {
	if len(d.Owner) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: descriptor owner key is %d bytes, want %d", ErrMalformed, len(d.Owner), ed25519.PublicKeySize)
	}
	if len(d.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: descriptor signature is %d bytes, want %d", ErrBadSignature, len(d.Sig), ed25519.SignatureSize)
	}
	return d.Schema.Validate()
}

// Verify checks the owner key and signature shapes, the schema limits and
// the owner's signature. Errors wrap ErrMalformed, ErrBadSchema or
// ErrBadSignature.
func (d *Descriptor) Verify() error {
	if err := d.checkShape(); err != nil {
		return err
	}
	msg := append([]byte(descriptorContext), d.Schema.Bytes()...)
	if !ed25519.Verify(ed25519.PublicKey(d.Owner), msg, d.Sig) {
		return fmt.Errorf("%w: descriptor of record %s", ErrBadSignature, d.Key())
	}
	return nil
}

// SubkeyCount returns the number of subkeys the schema defines, or 0 if the
// schema is invalid.
func (d *Descriptor) SubkeyCount() uint32 {
	n, _ := d.Schema.count()
	return n
}

// Writer returns the key allowed to write subkey: the owner for
// 0..OwnerSubkeys-1, then the member whose range holds it. Errors wrap
// ErrSubkeyRange (or ErrBadSchema for an invalid schema); for a
// membership-checked record, whose writers the membership list names, an
// in-range subkey gives ErrNotWriter.
func (d *Descriptor) Writer(subkey uint32) (ed25519.PublicKey, error) {
	n, err := d.Schema.count()
	if err != nil {
		return nil, err
	}
	if subkey >= n {
		return nil, fmt.Errorf("%w: subkey %d, record has %d", ErrSubkeyRange, subkey, n)
	}
	if d.Schema.MembershipChecked() {
		return nil, fmt.Errorf("%w: subkey %d of membership-checked record %s: the membership list names its writer", ErrNotWriter, subkey, d.Key())
	}
	if subkey < d.Schema.OwnerSubkeys {
		return ed25519.PublicKey(d.Owner), nil
	}
	i := subkey - d.Schema.OwnerSubkeys
	for _, m := range d.Schema.Members {
		if i < m.Count {
			return ed25519.PublicKey(m.Key), nil
		}
		i -= m.Count
	}
	// Unreachable: count() summed the same ranges.
	return nil, fmt.Errorf("%w: subkey %d", ErrSubkeyRange, subkey)
}
