package blobsync

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound: the store does not hold the blob, or a peer answered that
	// it does not hold it (or may not share it; the two are not told apart on
	// the wire).
	ErrNotFound = errors.New("blobsync: blob not found")

	// ErrCorrupt: bytes failed verification against the blob's hash: a chunk
	// group or a parent node received from a peer, or a local file whose
	// size or outboard does not match its entry.
	ErrCorrupt = errors.New("blobsync: blob failed verification")

	// ErrProtocol: a peer broke the blob protocol (bad frame, bad status,
	// size out of range, a request the server does not support).
	ErrProtocol = errors.New("blobsync: protocol error")
)

// LimitError reports a size above a limit: a blob larger than ReadAll's max,
// a frame or a field larger than the protocol allows.
type LimitError struct {
	What  string // what was too large, e.g. "blob", "request frame"
	Limit int64  // the limit, in bytes (or entries)
	Got   int64  // the size seen
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("blobsync: %s is %d, over the limit of %d", e.What, e.Got, e.Limit)
}
