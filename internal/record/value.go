package record

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/zeebo/blake3"
)

// Value is one subkey's content, signed by its writer.
type Value struct {
	Seq    uint64 `cbor:"1,keyasint"` // sequence number; the higher wins
	Data   []byte `cbor:"2,keyasint"` // at most MaxValueSize bytes (sealed bytes if encrypted)
	Writer []byte `cbor:"3,keyasint"` // ed25519 public key, 32 bytes
	Sig    []byte `cbor:"4,keyasint"` // ed25519, 64 bytes, over valueSigned
}

func valueSigned(k key.RecordKey, subkey uint32, seq uint64, data []byte) []byte {
	msg := make([]byte, 0, len(valueContext)+key.Size+4+8+len(data))
	msg = append(msg, valueContext...)
	msg = append(msg, k[:]...)
	msg = binary.BigEndian.AppendUint32(msg, subkey)
	msg = binary.BigEndian.AppendUint64(msg, seq)
	return append(msg, data...)
}

// NewValue returns data as the value of subkey in record k at seq, signed by
// writer. It does not check that writer may write subkey: that is
// Descriptor.VerifyValue's job. Data over MaxValueSize gives a *LimitError
// (ErrTooLarge); seq above MaxSeq gives ErrSeqRange.
func NewValue(k key.RecordKey, subkey uint32, seq uint64, data []byte, writer key.Keypair) (*Value, error) {
	if seq > MaxSeq {
		return nil, fmt.Errorf("%w: seq %d of subkey %d of record %s, limit %d", ErrSeqRange, seq, subkey, k, MaxSeq)
	}
	if len(data) > MaxValueSize {
		return nil, &LimitError{What: "value data", Size: len(data), Max: MaxValueSize}
	}
	return &Value{
		Seq:    seq,
		Data:   bytes.Clone(data),
		Writer: bytes.Clone(writer.Public()),
		Sig:    writer.Sign(valueSigned(k, subkey, seq, data)),
	}, nil
}

// NextSeq returns seq+1, the seq of a write that replaces a value at seq.
// It fails with ErrSeqRange when that would be above MaxSeq.
func NextSeq(seq uint64) (uint64, error) {
	if seq >= MaxSeq {
		return 0, fmt.Errorf("%w: the current value has seq %d, limit %d", ErrSeqRange, seq, MaxSeq)
	}
	return seq + 1, nil
}

func (v *Value) checkShape() error {
	if len(v.Data) > MaxValueSize {
		return &LimitError{What: "value data", Size: len(v.Data), Max: MaxValueSize}
	}
	if len(v.Writer) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: value writer key is %d bytes, want %d", ErrMalformed, len(v.Writer), ed25519.PublicKeySize)
	}
	if len(v.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: value signature is %d bytes, want %d", ErrBadSignature, len(v.Sig), ed25519.SignatureSize)
	}
	return nil
}

// VerifyValue checks v as the value of subkey in d's record: subkey in range
// (ErrSubkeyRange), v's writer is the one the schema names (ErrNotWriter),
// data within MaxValueSize (ErrTooLarge), seq at most MaxSeq (ErrSeqRange),
// shapes and the writer's signature (ErrMalformed, ErrBadSignature). It
// does not verify d itself; call Verify.
//
// For a membership-checked record (Schema.Membership) it checks all of
// that but whether v's writer may write subkey: the membership list a
// holder has decides that, and the caller must ask it (internal/dht does,
// through its MembershipChecker).
func (d *Descriptor) VerifyValue(subkey uint32, v *Value) error {
	if v == nil {
		return fmt.Errorf("%w: nil value", ErrMalformed)
	}
	var w ed25519.PublicKey // nil for a membership-checked record
	if d.Schema.MembershipChecked() {
		if n, err := d.Schema.count(); err != nil {
			return err
		} else if subkey >= n {
			return fmt.Errorf("%w: subkey %d, record has %d", ErrSubkeyRange, subkey, n)
		}
	} else {
		var err error
		if w, err = d.Writer(subkey); err != nil {
			return err
		}
	}
	if err := v.checkShape(); err != nil {
		return fmt.Errorf("subkey %d: %w", subkey, err)
	}
	if w != nil && !bytes.Equal(w, v.Writer) {
		return fmt.Errorf("%w: subkey %d of record %s", ErrNotWriter, subkey, d.Key())
	}
	k := d.Key()
	if v.Seq > MaxSeq {
		return fmt.Errorf("%w: seq %d of subkey %d of record %s, limit %d", ErrSeqRange, v.Seq, subkey, k, MaxSeq)
	}
	if !ed25519.Verify(ed25519.PublicKey(v.Writer), valueSigned(k, subkey, v.Seq, v.Data), v.Sig) {
		return fmt.Errorf("%w: value seq %d of subkey %d of record %s", ErrBadSignature, v.Seq, subkey, k)
	}
	return nil
}

// Better reports whether a wins over b under the conflict rule every node
// applies, so that all holders of a subkey converge on one value:
//
//  1. the higher Seq wins;
//  2. at equal Seq, the smaller BLAKE3-256(Data), compared as big-endian
//     bytes, wins (the hash of the stored, possibly sealed, data only, so the
//     winner does not depend on signatures);
//  3. at equal Data, the smaller Writer and then the smaller Sig wins. For
//     verified values these are equal (one writer per subkey, deterministic
//     ed25519), so this only makes the order total over any input.
//
// Better(a, nil) is true for a non-nil a; Better(nil, b) is false. For values
// that differ in any field, exactly one of Better(a, b) and Better(b, a) holds;
// for equal values neither does.
func Better(a, b *Value) bool {
	switch {
	case a == nil:
		return false
	case b == nil:
		return true
	case a.Seq != b.Seq:
		return a.Seq > b.Seq
	}
	if !bytes.Equal(a.Data, b.Data) {
		ha, hb := blake3.Sum256(a.Data), blake3.Sum256(b.Data)
		if c := bytes.Compare(ha[:], hb[:]); c != 0 {
			return c < 0
		}
		// A BLAKE3 collision: order by the bytes themselves.
		return bytes.Compare(a.Data, b.Data) < 0
	}
	if c := bytes.Compare(a.Writer, b.Writer); c != 0 {
		return c < 0
	}
	return bytes.Compare(a.Sig, b.Sig) < 0
}
