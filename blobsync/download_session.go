package blobsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// errBanned marks a provider error that must not be retried.
type errBanned struct{ err error }

func (e errBanned) Error() string { return e.err.Error() }
func (e errBanned) Unwrap() error { return e.err }

// work runs one provider until the blob is done, it has nothing more to
// give, it lies, or its retries are spent.
func (d *download) work(ctx context.Context, p Provider, ps *providerState) error {
	return retryProvider(ctx, d.opts, d.rep, p, ps, "blob "+d.h.String(), func() error { return d.session(ctx, p, ps) })
}

// retryProvider runs session, one stream to provider p, until it ends well
// or ctx ends (state idle, nil returned), p lies (a bad group or size:
// banned), lacks what is asked (missing) or breaks the protocol (failed),
// or MaxRetries reopenings after broken streams are spent (failed). It
// keeps ps's state and returns the last error, naming p.
func retryProvider(ctx context.Context, opts *DownloadOptions, rep *reporter, p Provider, ps *providerState, what string, session func() error) error {
	var last error
	for attempt := 0; attempt <= opts.MaxRetries; attempt++ {
		if ctx.Err() != nil {
			rep.setState(ps, "idle", nil)
			return nil
		}
		err := session()
		if err == nil || (ctx.Err() != nil && !errors.Is(err, ErrNotFound)) {
			rep.setState(ps, "idle", nil)
			return nil
		}
		last = fmt.Errorf("provider %s: %w", p.ID(), err)
		opts.Logger.Debug("blobsync: provider failed", "what", what, "provider", p.ID(), "attempt", attempt, "err", err)
		switch {
		case lied(err):
			rep.setState(ps, "banned", err)
			return last
		case errors.Is(err, ErrNotFound):
			rep.setState(ps, "missing", err)
			return last
		case errors.Is(err, ErrProtocol):
			rep.setState(ps, "failed", err)
			return last
		}
		rep.setState(ps, "failed", err)
	}
	return last
}

// lied reports whether err says the provider sent a bad group, parent or
// size: it is used for nothing more.
func lied(err error) bool {
	var ban errBanned
	return errors.As(err, &ban) || errors.Is(err, ErrCorrupt)
}

// errFinished is the cause of a download's worker context ending because
// the download (or batch run) got everything: see openStream.
var errFinished = errors.New("blobsync: download finished")

// openStream opens a stream to p that is closed when ctx ends or, once
// stall is armed, when nothing resets it for timeout. release closes it;
// with clean (the session read every answer and left nothing buffered),
// a stream of a StreamPool is kept for the next session instead, unless
// ctx or the stall timer closed it first (a session that returns cleanly
// has no request outstanding, so ctx ending after it does not matter).
//
// When ctx ends because the download finished (cause errFinished) while
// the session has no request outstanding (waiting set), the stream is left
// open: the session sees the end itself, returns cleanly and its stream
// can be kept. Any other end of ctx closes the stream, cutting reads in
// flight.
func openStream(ctx context.Context, p Provider, timeout time.Duration, waiting *atomic.Bool) (rw io.ReadWriteCloser, stall *time.Timer, release func(clean bool), err error) {
	rw, err = p.Open(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var mu sync.Mutex
	closed := false
	closeOnce := func(alone bool) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		closed = true
		if k, ok := rw.(keeper); ok && alone {
			k.closeAlone()
		} else {
			rw.Close()
		}
	}
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(context.Cause(ctx), errFinished) && waiting.Load() {
			return
		}
		closeOnce(true)
	})
	stall = time.AfterFunc(timeout, func() { closeOnce(false) })
	return rw, stall, func(clean bool) {
		stall.Stop()
		stop()
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		closed = true
		k, ok := rw.(keeper)
		switch {
		case ok && clean:
			k.keepOnClose()
			rw.Close()
		case ok && ctx.Err() != nil:
			k.closeAlone()
		default:
			rw.Close()
		}
	}, nil
}

// session runs one stream to p: have query, size probe if needed, then
// pipelined ranged requests.
func (d *download) session(ctx context.Context, p Provider, ps *providerState) (err error) {
	var waiting atomic.Bool
	rw, stall, release, err := openStream(ctx, p, d.opts.StallTimeout, &waiting)
	if err != nil {
		return err
	}
	conn := newRangeConn(rw)
	defer func() { release(err == nil && conn.br.Buffered() == 0) }()
	d.rep.setState(ps, "active", nil)

	// With a size hint, the probe of the hinted last group goes out with
	// the have query instead of a round trip after it; a lone provider's
	// first chunk too (spec), so its data starts flowing one round trip
	// sooner.
	d.mu.Lock()
	sized := d.sized
	d.mu.Unlock()
	var probe, spec []ChunkRange
	var then [][]ChunkRange
	if !sized && d.hint > 0 {
		groups := numGroups(d.hint)
		probe = []ChunkRange{{groups - 1, groups}}
		then = append(then, probe)
		if d.providers == 1 && groups > 1 {
			spec = []ChunkRange{{0, min(groups, d.maxChunkGroups())}}
			then = append(then, spec)
		}
	}
	size, held, err := conn.have(d.h, then...)
	if err != nil {
		return err
	}
	stall.Reset(d.opts.StallTimeout)
	d.mu.Lock()
	sized, vsize := d.sized, d.size
	d.mu.Unlock()
	if sized && size != vsize {
		return errBanned{fmt.Errorf("%w: announced size %d, the verified size is %d", ErrCorrupt, size, vsize)}
	}
	v := new(verifier)
	if probe != nil {
		// A provider that holds the blob in part may lack the hinted
		// group: then it is as if it had not been asked.
		proved, err := d.probeAnswer(conn, v, size, probe)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		sized = sized || proved
		if spec != nil && !proved {
			// A wrong hint: the first chunk was cut under another size.
			// Its answer is read, verified and dropped.
			if err := conn.readRanges(v, d.h, size, spec, discardSink{}); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			spec = nil
		}
		stall.Reset(d.opts.StallTimeout)
	}
	if !sized && !held.Has(numGroups(size)-1) {
		// This provider cannot prove the size (it lacks the last group):
		// wait until another one does.
		stall.Stop()
		if err := d.waitSize(ctx); err != nil {
			return err
		}
		if d.size != size {
			return errBanned{fmt.Errorf("%w: announced size %d, the verified size is %d", ErrCorrupt, size, d.size)}
		}
		sized = true
	}
	if !sized {
		if err := d.probe(conn, v, size); err != nil {
			return err
		}
		stall.Reset(d.opts.StallTimeout)
	}
	d.mu.Lock()
	small, done := d.small != nil, d.finished
	d.mu.Unlock()
	var queue []*task
	if spec != nil {
		// The size is proved under the hint, so the first chunk asked
		// with the have query is a task of this provider's.
		if small || done {
			if err := conn.readRanges(v, d.h, size, spec, discardSink{}); err != nil {
				return err
			}
		} else {
			queue = append(queue, d.claim(spec[0], ps))
		}
	}
	if small || done {
		return nil
	}

	// Requests go out from their own goroutine, so a stream without
	// buffering (net.Pipe) cannot deadlock a pipelined request against the
	// response we have not read yet.
	reqs := make(chan ChunkRange, d.opts.Pipeline)
	sendErr := make(chan error, 1)
	defer close(reqs)
	go func() {
		for r := range reqs {
			if err := conn.request(d.h, []ChunkRange{r}); err != nil {
				sendErr <- err
				rw.Close()
				for range reqs {
				}
				return
			}
		}
	}()
	out := newGroupSink(d, ps, stall, d.opts.StallTimeout)
	// Nothing asked but the claimed first chunk, if any: the have query
	// and the probe are answered.
	waiting.Store(len(queue) == 0)
	defer func() {
		// The writer first: its writes advance the tasks' cursors.
		out.close()
		for _, t := range queue {
			d.release(t)
		}
	}()
	for {
		// Fill the pipeline without blocking, then block only if empty
		// (with the stall timer off: waiting for work is not a stall).
		if len(queue) == 0 {
			stall.Stop()
		}
		for len(queue) < d.opts.Pipeline {
			t, ok := d.take(ctx, held, ps, len(queue) == 0)
			if !ok {
				if len(queue) == 0 {
					return nil
				}
				break
			}
			if t == nil {
				break
			}
			waiting.Store(false)
			reqs <- t.r
			queue = append(queue, t)
			stall.Reset(d.opts.StallTimeout)
		}
		if len(queue) == 0 {
			return nil
		}
		t := queue[0]
		stall.Reset(d.opts.StallTimeout)
		out.t = t
		err := conn.readRanges(v, d.h, d.size, []ChunkRange{t.r}, out)
		if ferr := out.flush(); err == nil {
			err = ferr
		}
		if err != nil {
			select {
			case serr := <-sendErr:
				err = fmt.Errorf("%w (send: %w)", err, serr)
			default:
			}
			var le localError
			if errors.As(err, &le) {
				d.fail(le.err)
			}
			return err
		}
		queue = queue[1:]
		waiting.Store(len(queue) == 0)
		out.release(t)
	}
}

// waitSize waits until another provider verified the size. It fails with
// ErrNotFound when every remaining provider is waiting too.
func (d *download) waitSize(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sizeWaiters++
	defer func() { d.sizeWaiters-- }()
	d.signalLocked()
	for !d.sized {
		if d.sizeWaiters >= d.workers {
			return fmt.Errorf("%w: no provider holds the last group, which proves the size", ErrNotFound)
		}
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			d.mu.Lock()
			return ctx.Err()
		}
		d.mu.Lock()
	}
	return nil
}

// probe verifies the size a provider announced by fetching the blob's last
// group under it; a blob of one group is then complete.
func (d *download) probe(conn *rangeConn, v *verifier, size uint64) error {
	if size > uint64(MaxBlobSize) {
		return errBanned{fmt.Errorf("%w: announced size %d", ErrProtocol, size)}
	}
	last := numGroups(size) - 1
	r := []ChunkRange{{last, last + 1}}
	if err := conn.request(d.h, r); err != nil {
		return err
	}
	_, err := d.probeAnswer(conn, v, size, r)
	return err
}

// probeAnswer reads the answer to a get of range r (one group) sent as a
// probe, for a provider that announced size. If r is the last group under
// size, it proves the size (proved true); else (a wrong size hint) the
// group is verified and dropped. A provider that holds only part of the
// blob may answer that it lacks r: ErrNotFound.
func (d *download) probeAnswer(conn *rangeConn, v *verifier, size uint64, r []ChunkRange) (proved bool, err error) {
	if size > uint64(MaxBlobSize) {
		return false, errBanned{fmt.Errorf("%w: announced size %d", ErrProtocol, size)}
	}
	if r[0].Start != numGroups(size)-1 {
		return false, conn.readRanges(v, d.h, size, r, discardSink{})
	}
	var m bytesSink
	if err := conn.readRanges(v, d.h, size, r, &m); err != nil {
		return false, err
	}
	if err := d.setSize(size); err != nil {
		return false, err
	}
	if size <= inlineMax {
		d.mu.Lock()
		if d.small == nil {
			d.small = append([]byte{}, m.b.Bytes()...)
			d.rep.blobStart(d.h, int64(size), 0)
		}
		d.checkDoneLocked()
		d.signalLocked()
		d.mu.Unlock()
	}
	return true, nil
}

// bytesSink keeps the groups of a probe (one group: at most 16 KiB).
type bytesSink struct{ b bytes.Buffer }

func (bytesSink) parent(uint64, []byte) error { return nil }
func (m *bytesSink) group(_ uint64, g []byte) error {
	m.b.Write(g)
	return nil
}

// localError marks a failure of our own disk, which stops the download.
type localError struct{ err error }

func (e localError) Error() string { return e.err.Error() }
func (e localError) Unwrap() error { return e.err }
