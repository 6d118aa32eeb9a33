package blobsync

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// TokenBucket limits a byte rate: it holds up to Burst tokens (bytes),
// refilled at Rate per second. Wait blocks until n tokens are there and
// takes them. Safe for concurrent use; waiters are served in no fixed order.
type TokenBucket struct {
	rate  float64 // bytes per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewTokenBucket returns a bucket for rate bytes/s (> 0) with burst bytes
// (<= 0: rate/20, at least 64 KiB), initially full.
func NewTokenBucket(rate, burst int64) *TokenBucket {
	if burst <= 0 {
		burst = max(rate/20, 64<<10)
	}
	return &TokenBucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

// Wait takes n tokens (n may exceed the burst: the debt is waited out),
// sleeping as needed. It returns ctx.Err() if ctx ends first (the tokens
// stay taken).
func (b *TokenBucket) Wait(ctx context.Context, n int) error {
	b.mu.Lock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= float64(n)
	var d time.Duration
	if b.tokens < 0 {
		d = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ServeLimits are the limits Serve applies to one peer, over all the
// streams it has open with us. The zero value limits nothing.
type ServeLimits struct {
	// UploadRate is the most bytes per second sent to the peer; 0: no limit.
	UploadRate int64
	// MaxRequests is the most requests of the peer served at once; a
	// request beyond it waits for a slot. 0: no limit.
	MaxRequests int
}

// PeerLimiter holds the running limits of each peer: one token bucket and
// one request semaphore per peer ID, shared by every Serve of that peer,
// dropped when the peer's last Serve ends. Safe for concurrent use.
type PeerLimiter struct {
	lim   ServeLimits
	mu    sync.Mutex
	peers map[string]*PeerLimit
}

// PeerLimit is one peer's share of a PeerLimiter; pass it in ServeOptions.
type PeerLimit struct {
	bucket *TokenBucket  // nil: no rate limit
	sem    chan struct{} // nil: no request limit
	refs   int           // Serves using it (PeerLimiter.mu)
	owner  *PeerLimiter  // nil for a standalone limit
	id     string
}

// NewPeerLimiter returns a limiter that gives each peer lim.
func NewPeerLimiter(lim ServeLimits) *PeerLimiter {
	return &PeerLimiter{lim: lim, peers: make(map[string]*PeerLimit)}
}

// Acquire returns peer id's limit; call release when its Serve ends.
func (l *PeerLimiter) Acquire(id string) (pl *PeerLimit, release func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pl = l.peers[id]
	if pl == nil {
		pl = NewPeerLimit(l.lim)
		pl.owner, pl.id = l, id
		l.peers[id] = pl
	}
	pl.refs++
	var once sync.Once
	return pl, func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if pl.refs--; pl.refs == 0 {
				delete(l.peers, id)
			}
		})
	}
}

// NewPeerLimit returns a standalone limit (for a single Serve, or when the
// caller keeps its own per-peer map).
func NewPeerLimit(lim ServeLimits) *PeerLimit {
	pl := &PeerLimit{}
	if lim.UploadRate > 0 {
		pl.bucket = NewTokenBucket(lim.UploadRate, 0)
	}
	if lim.MaxRequests > 0 {
		pl.sem = make(chan struct{}, lim.MaxRequests)
	}
	return pl
}

// enter takes a request slot (waiting for one); leave gives it back.
func (pl *PeerLimit) enter(ctx context.Context) (leave func(), err error) {
	if pl == nil || pl.sem == nil {
		return func() {}, nil
	}
	select {
	case pl.sem <- struct{}{}:
		return func() { <-pl.sem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("blobsync: wait for a request slot: %w", ctx.Err())
	}
}

// writer wraps w so that writes wait for the peer's tokens, in pieces of at
// most 64 KiB so a slow rate does not hold a large burst.
func (pl *PeerLimit) writer(ctx context.Context, w io.Writer) io.Writer {
	if pl == nil || pl.bucket == nil {
		return w
	}
	return &rateWriter{ctx: ctx, w: w, b: pl.bucket}
}

type rateWriter struct {
	ctx context.Context
	w   io.Writer
	b   *TokenBucket
}

func (r *rateWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 64<<10)
		if err := r.b.Wait(r.ctx, k); err != nil {
			return n, err
		}
		m, err := r.w.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}
