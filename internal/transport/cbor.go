package transport

import (
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
)

// Decoder bounds for every CBOR message dweb reads (see [Unmarshal]).
const (
	MaxCBORNestedLevels  = 32      // arrays, maps and tags nested in one another
	MaxCBORArrayElements = 1 << 17 // elements in one array
	MaxCBORMapPairs      = 1 << 17 // key/value pairs in one map
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	// RFC 8949 §4.2.1 Core Deterministic Encoding: shortest forms, sorted
	// map keys, no indefinite lengths.
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic("transport: cbor encoder options: " + err.Error())
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		MaxNestedLevels:  MaxCBORNestedLevels,
		MaxArrayElements: MaxCBORArrayElements,
		MaxMapPairs:      MaxCBORMapPairs,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic("transport: cbor decoder options: " + err.Error())
	}
}

// Marshal encodes v as deterministic CBOR (RFC 8949 §4.2.1 Core
// Deterministic Encoding): the same value always gives the same bytes, so
// other packages may hash or sign the result.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cbor encode %T: %w", v, err)
	}
	return b, nil
}

// Unmarshal decodes one CBOR data item from b into v (a non-nil pointer).
// It rejects trailing bytes, duplicate map keys, indefinite-length items,
// invalid UTF-8 text and data beyond MaxCBORNestedLevels,
// MaxCBORArrayElements and MaxCBORMapPairs. It does not require the input
// to be deterministically encoded; code that verifies signatures must sign
// and check the bytes it received, or re-encode with Marshal.
func Unmarshal(b []byte, v any) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("cbor decode %T: %w", v, err)
	}
	return nil
}

// WriteMsg encodes v with Marshal and writes it as one frame.
func WriteMsg(w io.Writer, v any) error {
	b, err := Marshal(v)
	if err != nil {
		return err
	}
	return WriteFrame(w, b)
}

// ReadMsg reads one frame of at most max bytes (see ReadFrame: *LimitError,
// io.EOF, io.ErrUnexpectedEOF) and decodes it into v with Unmarshal.
func ReadMsg(r io.Reader, max int, v any) error {
	b, err := ReadFrame(r, max)
	if err != nil {
		return err
	}
	return Unmarshal(b, v)
}
