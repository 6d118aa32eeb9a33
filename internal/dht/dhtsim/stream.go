package dhtsim

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/transport"
	"github.com/quic-go/quic-go"
)

// stream is one end of a simulated bidirectional stream (a dht.Stream):
// it reads in and writes out. Writes never block (no flow control); a
// read waits until the next write of the other end has arrived (its
// delivery time has come), the other end's FIN or reset arrives, the
// deadline passes, or either node goes down.
type stream struct {
	local, remote *Endpoint
	rtt           time.Duration
	in, out       *half
}

// half is one direction of a stream, shared by its writer and its reader.
type half struct {
	mu     sync.Mutex
	wake   chan struct{} // closed and replaced on every change
	chunks []chunk       // written, not yet read, in order of arrival
	last   time.Time     // arrival of the latest write or FIN: nothing overtakes it

	fin   bool // the writer closed (FIN), arriving at finAt
	finAt time.Time

	reset     bool // the writer reset (CancelWrite), arriving at resetAt
	resetCode quic.StreamErrorCode
	resetAt   time.Time

	stop     bool // the reader stopped (CancelRead), arriving at stopAt
	stopCode quic.StreamErrorCode
	stopAt   time.Time

	readCanceled  bool // the reader's own CancelRead
	readCode      quic.StreamErrorCode
	writeCanceled bool // the writer's own CancelWrite
	writeCode     quic.StreamErrorCode

	readDeadline, writeDeadline time.Time
}

type chunk struct {
	b  []byte
	at time.Time // arrival
}

func newHalf() *half { return &half{wake: make(chan struct{})} }

func (h *half) signalLocked() {
	close(h.wake)
	h.wake = make(chan struct{})
}

// newStreamPair returns the two ends of a stream between a and b.
func newStreamPair(a, b *Endpoint, rtt time.Duration) (*stream, *stream) {
	ab, ba := newHalf(), newHalf()
	return &stream{local: a, remote: b, rtt: rtt, in: ba, out: ab},
		&stream{local: b, remote: a, rtt: rtt, in: ab, out: ba}
}

var errWriteClosed = errors.New("dhtsim: write on a closed stream")

// Read reads bytes that have arrived; see stream.
func (s *stream) Read(p []byte) (int, error) {
	remoteDone := s.remote.done
	for {
		h := s.in
		h.mu.Lock()
		now := time.Now()
		var next time.Time
		soonest := func(t time.Time) {
			if next.IsZero() || t.Before(next) {
				next = t
			}
		}
		switch {
		case h.readCanceled:
			h.mu.Unlock()
			return 0, &quic.StreamError{ErrorCode: h.readCode, Remote: false}
		case s.local.down():
			h.mu.Unlock()
			return 0, transport.ErrClosed
		}
		if t, ok := s.local.shutdownSeen(s.remote); ok {
			if !now.Before(t) {
				h.mu.Unlock()
				return 0, transport.ErrPeerShutdown
			}
			soonest(t)
		}
		if h.reset {
			if !now.Before(h.resetAt) {
				h.mu.Unlock()
				return 0, &quic.StreamError{ErrorCode: h.resetCode, Remote: true}
			}
			soonest(h.resetAt)
		}
		if len(h.chunks) > 0 {
			c := &h.chunks[0]
			if !now.Before(c.at) {
				n := copy(p, c.b)
				c.b = c.b[n:]
				if len(c.b) == 0 {
					h.chunks[0] = chunk{}
					h.chunks = h.chunks[1:]
				}
				h.mu.Unlock()
				return n, nil
			}
			soonest(c.at)
		} else if h.fin {
			if !now.Before(h.finAt) {
				h.mu.Unlock()
				return 0, io.EOF
			}
			soonest(h.finAt)
		}
		if dl := h.readDeadline; !dl.IsZero() {
			if !now.Before(dl) {
				h.mu.Unlock()
				return 0, os.ErrDeadlineExceeded
			}
			soonest(dl)
		}
		wake := h.wake
		h.mu.Unlock()

		var (
			t     *time.Timer
			timer <-chan time.Time
		)
		if !next.IsZero() {
			t = time.NewTimer(next.Sub(now))
			timer = t.C
		}
		select {
		case <-wake:
		case <-timer:
		case <-s.local.done:
		case <-remoteDone:
			remoteDone = nil // went down: if cleanly, shutdownSeen now says when we hear
		}
		if t != nil {
			t.Stop()
		}
	}
}

// Write sends p, to arrive RTT/2 later (more if lost: Network.delay).
func (s *stream) Write(p []byte) (int, error) {
	h := s.out
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	switch {
	case h.writeCanceled:
		return 0, &quic.StreamError{ErrorCode: h.writeCode, Remote: false}
	case s.local.down():
		return 0, transport.ErrClosed
	case h.stop && !now.Before(h.stopAt):
		return 0, &quic.StreamError{ErrorCode: h.stopCode, Remote: true}
	case h.fin:
		return 0, errWriteClosed
	case !h.writeDeadline.IsZero() && !now.Before(h.writeDeadline):
		return 0, os.ErrDeadlineExceeded
	}
	if t, ok := s.local.shutdownSeen(s.remote); ok && !now.Before(t) {
		return 0, transport.ErrPeerShutdown
	}
	if h.stop || len(p) == 0 {
		return len(p), nil // the reader stopped: nobody will read it
	}
	at := now.Add(s.local.n.delay(s.rtt))
	if at.Before(h.last) {
		at = h.last
	}
	h.last = at
	h.chunks = append(h.chunks, chunk{b: append([]byte(nil), p...), at: at})
	h.signalLocked()
	return len(p), nil
}

// Close ends the writing side (FIN), arriving after the data written.
func (s *stream) Close() error {
	h := s.out
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fin || h.writeCanceled || s.local.down() {
		return nil // a node that is down sends nothing more
	}
	at := time.Now().Add(s.rtt / 2)
	if at.Before(h.last) {
		at = h.last
	}
	h.fin, h.finAt, h.last = true, at, at
	h.signalLocked()
	return nil
}

// CancelWrite resets the writing side: the other end's reads fail with a
// remote *quic.StreamError RTT/2 later, unless a FIN already reached it.
func (s *stream) CancelWrite(code quic.StreamErrorCode) {
	h := s.out
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.writeCanceled {
		return
	}
	now := time.Now()
	h.writeCanceled, h.writeCode = true, code
	if (!h.fin || now.Before(h.finAt)) && !s.local.down() {
		h.reset, h.resetCode, h.resetAt = true, code, now.Add(s.rtt/2)
	}
	h.signalLocked()
}

// CancelRead stops reading: unread bytes are dropped, this end's reads
// fail, and the other end's writes fail with a remote *quic.StreamError
// RTT/2 later.
func (s *stream) CancelRead(code quic.StreamErrorCode) {
	h := s.in
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.readCanceled {
		return
	}
	h.readCanceled, h.readCode = true, code
	if !s.local.down() {
		h.stop, h.stopCode, h.stopAt = true, code, time.Now().Add(s.rtt/2)
	}
	h.chunks = nil
	h.signalLocked()
}

// SetDeadline sets the read and write deadlines; the zero time: none.
func (s *stream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// SetReadDeadline sets the time after which reads fail with
// os.ErrDeadlineExceeded.
func (s *stream) SetReadDeadline(t time.Time) error {
	h := s.in
	h.mu.Lock()
	defer h.mu.Unlock()
	h.readDeadline = t
	h.signalLocked()
	return nil
}

// SetWriteDeadline sets the time after which writes fail with
// os.ErrDeadlineExceeded.
func (s *stream) SetWriteDeadline(t time.Time) error {
	h := s.out
	h.mu.Lock()
	defer h.mu.Unlock()
	h.writeDeadline = t
	return nil
}
