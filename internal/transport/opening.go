package transport

import (
	"context"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/quic-go/quic-go"
)

// opening is an inbound stream's opening: from its accept until its
// handler calls Opened or returns.
type opening struct {
	s        *quic.Stream
	rs       *rcmgr.Stream // gives back its handshake at Opened
	deadline time.Time     // accept + Options.FirstFrameTimeout

	mu     sync.Mutex
	opened bool // Opened was called
	ended  bool // Opened was called or the handler returned
}

type openingKey struct{}

// Opened tells the endpoint that the inbound stream whose Handler got ctx
// is through its opening: the protocol's first request has been read, or
// its handshake has finished. It lifts the opening deadline
// (Options.FirstFrameTimeout) in both directions and gives back the
// stream's handshake in the resource manager (a peer may have only so many
// streams in their opening at once); a handler that wants a deadline for
// the rest of the exchange sets it after calling Opened.
// Opened is idempotent, and does nothing for a ctx that is not an inbound
// stream handler's, or once the handler has returned.
func Opened(ctx context.Context) {
	op, _ := ctx.Value(openingKey{}).(*opening)
	if op == nil {
		return
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.ended {
		return
	}
	op.opened, op.ended = true, true
	op.s.SetDeadline(time.Time{})
	op.rs.Opened()
}

// OpeningDeadline returns the opening deadline of the inbound stream whose
// Handler got ctx (its accept plus Options.FirstFrameTimeout), and false
// once Opened has been called, or for a ctx that is not a handler's. A
// handler that sets its own deadline during the opening must not set it
// later than this, or a stalled peer would hold the stream longer than the
// node's first-frame limit.
func OpeningDeadline(ctx context.Context) (time.Time, bool) {
	op, _ := ctx.Value(openingKey{}).(*opening)
	if op == nil {
		return time.Time{}, false
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.ended {
		return time.Time{}, false
	}
	return op.deadline, true
}

// Within returns t, or the opening deadline of ctx's stream (see
// OpeningDeadline) if that comes first: the deadline a handler sets while
// it reads its first request.
func Within(ctx context.Context, t time.Time) time.Time {
	if od, ok := OpeningDeadline(ctx); ok && od.Before(t) {
		return od
	}
	return t
}

// end closes the opening when the handler returns, and reports whether the
// handler called Opened.
func (op *opening) end() (opened bool) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.ended = true
	return op.opened
}
