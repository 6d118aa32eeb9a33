package record

import (
	"errors"
	"fmt"
)

// Sentinel errors. Functions of this package wrap them with context; test
// with errors.Is.
var (
	// ErrBadSchema: a schema breaks a limit (no subkeys, more than
	// MaxSubkeys, a member key that is not 32 bytes, an empty member range).
	ErrBadSchema = errors.New("record: bad schema")
	// ErrBadSignature: a descriptor or value signature does not verify or is
	// not 64 bytes.
	ErrBadSignature = errors.New("record: bad signature")
	// ErrSubkeyRange: the subkey is not below the schema's subkey count.
	ErrSubkeyRange = errors.New("record: subkey out of range")
	// ErrSeqRange: a value's sequence number is above MaxSeq, or the next
	// one would be.
	ErrSeqRange = errors.New("record: sequence number above MaxSeq")
	// ErrNotWriter: the value's writer is not the key the schema gives the
	// subkey to.
	ErrNotWriter = errors.New("record: writer may not write this subkey")
	// ErrTooLarge: data or an encoding is over its limit. The error is a
	// *LimitError.
	ErrTooLarge = errors.New("record: too large")
	// ErrDecrypt: a sealed value does not open (wrong secret, wrong record
	// key or subkey, or altered bytes).
	ErrDecrypt = errors.New("record: value does not decrypt")
	// ErrMalformed: bytes given to a Decode function are not a well-formed
	// encoding of the expected shape.
	ErrMalformed = errors.New("record: malformed encoding")
)

// LimitError reports a size over its limit. errors.Is(err, ErrTooLarge)
// holds for it.
type LimitError struct {
	What string // what was measured, e.g. "value data"
	Size int    // its size in bytes
	Max  int    // the limit in bytes
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("record: %s is %d bytes, limit %d", e.What, e.Size, e.Max)
}

// Unwrap makes errors.Is(err, ErrTooLarge) true.
func (e *LimitError) Unwrap() error { return ErrTooLarge }
