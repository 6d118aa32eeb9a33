package record

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Encoding limits. An encoded value holds at most MaxValueSize data bytes plus
// a writer key, a signature and a few bytes of CBOR framing; an encoded
// descriptor holds at most MaxSubkeys member ranges.
const (
	// MaxEncodedValue is the largest encoded Value DecodeValue accepts.
	MaxEncodedValue = MaxValueSize + 256
	// MaxEncodedDescriptor is the largest encoded Descriptor
	// DecodeDescriptor accepts (MaxSubkeys member ranges of ~40 bytes).
	MaxEncodedDescriptor = 64 << 10
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic("record: cbor EncMode: " + err.Error())
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  8,
		MaxArrayElements: MaxSubkeys,
		MaxMapPairs:      16,
	}.DecMode()
	if err != nil {
		panic("record: cbor DecMode: " + err.Error())
	}
}

// EncodeDescriptor returns the deterministic CBOR encoding of d
// (map keys 1 owner, 2 schema, 3 sig).
func EncodeDescriptor(d *Descriptor) ([]byte, error) {
	b, err := encMode.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("record: encode descriptor: %w", err)
	}
	return b, nil
}

// DecodeDescriptor parses an encoded descriptor of at most
// MaxEncodedDescriptor bytes and checks its shape: a 32-byte owner key, a
// 64-byte signature and a schema within the limits. It does not check the
// signature; call Verify. Errors wrap ErrTooLarge, ErrMalformed or
// ErrBadSchema.
func DecodeDescriptor(b []byte) (*Descriptor, error) {
	if len(b) > MaxEncodedDescriptor {
		return nil, &LimitError{What: "encoded descriptor", Size: len(b), Max: MaxEncodedDescriptor}
	}
	var d Descriptor
	if err := decMode.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%w: descriptor: %v", ErrMalformed, err)
	}
	if err := d.checkShape(); err != nil {
		return nil, err
	}
	return &d, nil
}

// EncodeValue returns the deterministic CBOR encoding of v
// (map keys 1 seq, 2 data, 3 writer, 4 sig).
func EncodeValue(v *Value) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("record: encode value: %w", err)
	}
	return b, nil
}

// DecodeValue parses an encoded value of at most MaxEncodedValue bytes and
// checks its shape: data of at most MaxValueSize bytes, a 32-byte writer and
// a 64-byte signature. It does not check the signature; call
// Descriptor.VerifyValue. Errors wrap ErrTooLarge or ErrMalformed.
func DecodeValue(b []byte) (*Value, error) {
	if len(b) > MaxEncodedValue {
		return nil, &LimitError{What: "encoded value", Size: len(b), Max: MaxEncodedValue}
	}
	var v Value
	if err := decMode.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%w: value: %v", ErrMalformed, err)
	}
	if err := v.checkShape(); err != nil {
		return nil, err
	}
	return &v, nil
}
