package blobsync

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// StreamPool keeps the streams that downloads ended cleanly (every request
// answered and read, nothing buffered), so that the next download from the
// same provider reuses one instead of opening another. Over a tunnel an
// open costs a Noise handshake (four X25519 operations on each side) and a
// round trip, which a backup server fetching thousands of photos one blob
// at a time would otherwise pay per blob. The blob protocol allows it: a
// server answers requests on a stream until the stream ends
// (docs/protocol.md).
//
// A stream is kept only after a session that returned no error. A stream
// that failed or stalled is closed, and so are the other idle streams of
// its provider (they likely share its connection's fate); one cut because
// its download's context ended (an end-game duplicate still in flight
// when the blob completed) is closed alone. Idle streams are closed after IdleTimeout and by
// Close. The zero value is not usable; use NewStreamPool. Safe for
// concurrent use.
type StreamPool struct {
	maxIdle int
	timeout time.Duration

	mu     sync.Mutex
	idle   map[string][]*pooledStream
	closed bool

	opened, reused atomic.Int64
}

// StreamPoolStats counts the streams a pool's providers opened and the
// times a kept stream was used again.
type StreamPoolStats struct {
	Opened int64 `json:"opened"`
	Reused int64 `json:"reused"`
}

// NewStreamPool returns a pool that keeps at most maxIdle idle streams per
// provider ID (<= 0: 4, one more than DownloadOptions.Concurrency's
// default, so a collection's parallel downloads all find one) for at most
// idleTimeout (<= 0: 30 s).
func NewStreamPool(maxIdle int, idleTimeout time.Duration) *StreamPool {
	if maxIdle <= 0 {
		maxIdle = 4
	}
	if idleTimeout <= 0 {
		idleTimeout = 30 * time.Second
	}
	return &StreamPool{maxIdle: maxIdle, timeout: idleTimeout, idle: make(map[string][]*pooledStream)}
}

// Provider returns p with its streams pooled: Open hands out an idle
// stream of p.ID() if there is one, else opens one with p.
func (sp *StreamPool) Provider(p Provider) Provider { return &pooledProvider{Provider: p, pool: sp} }

// Stats returns the pool's counters.
func (sp *StreamPool) Stats() StreamPoolStats {
	return StreamPoolStats{Opened: sp.opened.Load(), Reused: sp.reused.Load()}
}

// Close closes every idle stream; streams in use are closed when their
// downloads end. Later Opens still work but nothing more is kept.
func (sp *StreamPool) Close() error {
	sp.mu.Lock()
	sp.closed = true
	sp.mu.Unlock()
	return sp.CloseIdle()
}

// CloseIdle closes every idle stream (and stops its idle timer) but keeps
// the pool open: streams that downloads end later are kept again. For a
// node going off the network, whose connections are closing anyway.
func (sp *StreamPool) CloseIdle() error {
	sp.mu.Lock()
	idle := sp.idle
	sp.idle = make(map[string][]*pooledStream)
	for _, ss := range idle {
		for _, s := range ss {
			if s.timer != nil {
				s.timer.Stop()
			}
		}
	}
	sp.mu.Unlock()
	for _, ss := range idle {
		for _, s := range ss {
			s.closeIdle()
		}
	}
	return nil
}

// take removes and returns an idle stream of provider id, or nil.
func (sp *StreamPool) take(id string) *pooledStream {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for ss := sp.idle[id]; len(ss) > 0; ss = sp.idle[id] {
		s := ss[len(ss)-1]
		sp.idle[id] = ss[:len(ss)-1]
		if s.timer.Stop() {
			return s
		}
		// Its timeout fired: closeIdle is closing it.
	}
	return nil
}

// put keeps s, unless the pool is closed or holds enough of s.id.
func (sp *StreamPool) put(s *pooledStream) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed || len(sp.idle[s.id]) >= sp.maxIdle {
		return false
	}
	sp.idle[s.id] = append(sp.idle[s.id], s)
	s.timer = time.AfterFunc(sp.timeout, func() { sp.expire(s) })
	return true
}

// expire closes idle stream s after its timeout, if it is still idle.
func (sp *StreamPool) expire(s *pooledStream) {
	sp.mu.Lock()
	ss := sp.idle[s.id]
	for i := range ss {
		if ss[i] == s {
			sp.idle[s.id] = append(ss[:i:i], ss[i+1:]...)
			break
		}
	}
	sp.mu.Unlock()
	s.closeIdle()
}

// drop closes the idle streams of provider id.
func (sp *StreamPool) drop(id string) {
	sp.mu.Lock()
	ss := sp.idle[id]
	delete(sp.idle, id)
	sp.mu.Unlock()
	for _, s := range ss {
		if s.timer.Stop() {
			s.closeIdle()
		}
	}
}

type pooledProvider struct {
	Provider
	pool *StreamPool
}

func (p *pooledProvider) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	id := p.ID()
	if s := p.pool.take(id); s != nil {
		p.pool.reused.Add(1)
		s.mu.Lock()
		s.keep, s.idle = false, false
		s.mu.Unlock()
		return s, nil
	}
	rw, err := p.Provider.Open(ctx)
	if err != nil {
		return nil, err
	}
	p.pool.opened.Add(1)
	return &pooledStream{ReadWriteCloser: rw, pool: p.pool, id: id}, nil
}

// pooledStream is a stream of a pooled provider. Close returns it to the
// pool if keepOnClose was called first, else closes it for good.
type pooledStream struct {
	io.ReadWriteCloser
	pool  *StreamPool
	id    string
	timer *time.Timer // while idle: the idle timeout

	mu     sync.Mutex
	keep   bool // the session ended cleanly: Close pools it
	alone  bool // closed because its download ended, not broken: Close leaves the other idle streams
	idle   bool // in the pool
	closed bool
}

// keeper is a stream that can be kept for reuse: keepOnClose says the
// session on it ended cleanly, so Close may keep it; closeAlone closes it
// without taking the provider's other idle streams down (the session was
// cut because its download ended, which says nothing about the provider).
type keeper interface {
	keepOnClose()
	closeAlone()
}

func (s *pooledStream) closeAlone() {
	s.mu.Lock()
	s.alone = true
	s.mu.Unlock()
	s.Close()
}

func (s *pooledStream) keepOnClose() {
	s.mu.Lock()
	if !s.closed {
		s.keep = true
	}
	s.mu.Unlock()
}

func (s *pooledStream) Close() error {
	s.mu.Lock()
	if s.closed || s.idle {
		s.mu.Unlock()
		return nil
	}
	if s.keep {
		s.keep, s.idle = false, true
		s.mu.Unlock()
		if s.pool.put(s) {
			return nil
		}
		s.mu.Lock()
		s.idle = false
	} else if !s.alone {
		defer s.pool.drop(s.id)
	}
	s.closed = true
	s.mu.Unlock()
	return s.ReadWriteCloser.Close()
}

// closeIdle closes an idle stream for good (timeout, drop, pool Close).
func (s *pooledStream) closeIdle() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed, s.idle = true, false
	s.mu.Unlock()
	s.ReadWriteCloser.Close()
}
