package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/dwebkit/dweb/internal/wireio"
)

// FrameHeaderSize is the size of a frame's length prefix in bytes.
const FrameHeaderSize = 4

// MaxFrameSize is the largest payload a frame header can describe
// (2^32-1 bytes). Readers set far smaller limits.
const MaxFrameSize = math.MaxUint32

// LimitError reports a size read from the wire (or given to a writer) that
// exceeds its limit. Test for it with errors.As.
type LimitError struct {
	What      string // what was too big, such as "frame"
	Size, Max int64  // sizes in bytes
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: %d bytes exceeds limit %d", e.What, e.Size, e.Max)
}

// WriteFrame writes b as one frame: its length as 4 bytes big-endian, then b.
// It fails with *LimitError if b is longer than MaxFrameSize.
func WriteFrame(w io.Writer, b []byte) error {
	if int64(len(b)) > MaxFrameSize {
		return &LimitError{What: "frame", Size: int64(len(b)), Max: MaxFrameSize}
	}
	var hdr [FrameHeaderSize]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	if len(b) <= 1024 {
		// One write for small frames: one STREAM frame, one syscall.
		buf := make([]byte, 0, FrameHeaderSize+len(b))
		buf = append(append(buf, hdr[:]...), b...)
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("write frame: %w", err)
		}
		return nil
	}
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("write frame header: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write frame body: %w", err)
	}
	return nil
}

// ReadFrame reads one frame written by WriteFrame and returns its payload.
//
// The length is checked against max (bytes; a negative max counts as 0)
// before anything is allocated: a longer frame fails with *LimitError and the
// payload is left unread, so the stream should then be abandoned. The
// payload's buffer grows with the bytes that arrive (wireio.ReadN), so a
// peer that announces max and sends little costs little. At a clean
// end of stream before a frame starts ReadFrame returns io.EOF; a stream that
// ends inside a header or payload gives io.ErrUnexpectedEOF. Other read
// errors are returned wrapped.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [FrameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if max < 0 {
		max = 0
	}
	if n > int64(max) {
		return nil, &LimitError{What: "frame", Size: n, Max: int64(max)}
	}
	b, err := wireio.ReadN(r, int(n))
	if err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read frame body: %w", err)
	}
	return b, nil
}
