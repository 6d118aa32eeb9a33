// Package wireio reads what a peer announced it would send without
// trusting the announcement: a length prefix says how many bytes follow,
// but memory is spent only as they arrive.
package wireio

import (
	"errors"
	"io"
	"slices"
)

// FirstChunk is the buffer ReadN starts with, in bytes: all a peer that
// announces a long frame and then sends nothing makes the reader hold.
const FirstChunk = 4 << 10

// ReadN reads exactly n bytes from r. Its buffer starts at
// min(n, FirstChunk) bytes and at most doubles as bytes arrive, so a peer
// that announces n bytes and sends fewer costs about twice what it sent,
// not n; check n against its limit before calling. Errors are
// io.ReadFull's: io.EOF if r ends before the first byte,
// io.ErrUnexpectedEOF if it ends later, or r's own error.
func ReadN(r io.Reader, n int) ([]byte, error) {
	if n < 0 {
		return nil, errors.New("wireio: negative length")
	}
	b := make([]byte, 0, min(n, FirstChunk))
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), len(b)))
		}
		m, err := io.ReadFull(r, b[len(b):min(cap(b), n)])
		b = b[:len(b)+m]
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return b, nil
}
