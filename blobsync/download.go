package blobsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Provider is a peer that may serve a blob: Open returns a fresh stream to
// its blob server (ServeWith at the other end), such as a tunnel session to
// a group member. The downloader closes what Open returns. ID names the
// provider in progress events and logs and must be unique per download.
type Provider interface {
	ID() string
	Open(ctx context.Context) (io.ReadWriteCloser, error)
}

// DownloadOptions configures Download and DownloadCollection. The zero
// value works.
type DownloadOptions struct {
	// ChunkBytes is the largest unit of work handed to a provider: one
	// ranged request. Default 4 MiB; rounded up to whole 16 KiB groups.
	// With several providers, a blob too small to give each two pipelines
	// of such chunks is cut finer, down to MinChunkBytes (see chunkGroups).
	ChunkBytes int64
	// Pipeline is how many requests each provider has in flight. Default 4
	// (with ChunkBytes, 16 MiB requested ahead: enough to keep a loopback
	// or LAN link busy while the receiver verifies and writes).
	Pipeline int
	// StallTimeout: a provider that sends nothing for this long while a
	// request is pending has its stream closed; its unverified ranges go
	// to others. Default 15 s.
	StallTimeout time.Duration
	// MaxRetries is how many times a provider whose stream broke (not one
	// that lied) is opened again. Default 2.
	MaxRetries int
	// Concurrency is how many blobs of a collection download at once.
	// Default 3.
	Concurrency int
	// BatchMax: DownloadCollection fetches entries of at most BatchMax
	// bytes in children requests, many per request. Default 1 MiB;
	// negative: none (every blob its own download). A batched blob is
	// stored whole: one cut off mid-stream is fetched again from its
	// start, where a blob downloaded on its own resumes from its verified
	// ranges, so a larger BatchMax trades resume granularity for fewer
	// round trips.
	BatchMax int64
	// Progress, if not nil, gets a snapshot at most every ProgressEvery and
	// once at the end of each blob. Calls are serialised; they must not
	// block for long.
	Progress func(Progress)
	// ProgressEvery; default 100 ms.
	ProgressEvery time.Duration
	// SizeHint is the blob's size if the caller knows it from elsewhere,
	// such as a collection entry; 0: unknown. It is not trusted: a session
	// sends the request for the hinted last group together with its have
	// query (a lone provider's first chunk too), and that group proves the
	// size only if it is the real last group. A right hint saves a round
	// trip per provider (two for a lone one); a wrong one costs one group
	// of bytes (a lone provider's: one chunk). Download only:
	// DownloadCollection uses each entry's size.
	SizeHint int64
	// Logger gets provider failures at debug level; nil discards.
	Logger *slog.Logger
	// DeltaBase is the chunk list of an earlier version of the file that
	// the store holds (DeltaBaseOf picks it from an entry's history); zero:
	// none. DownloadChunked then asks for the new chunk list, and for each
	// run of new chunks the store lacks, as a delta against the old ones
	// (chunkdelta.go), and fetches whole what no provider gives that way.
	DeltaBase Hash
	// NoDelta turns chunk-run deltas off even with a DeltaBase.
	NoDelta bool
	// Mirror, if not nil, gets a copy of every verified byte Download
	// writes to the store, at its offset (DownloadTo). Download only.
	Mirror *Mirror
}

func (o *DownloadOptions) defaults() {
	if o.ChunkBytes <= 0 {
		o.ChunkBytes = 4 << 20
	}
	if o.Pipeline <= 0 {
		o.Pipeline = 4
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 15 * time.Second
	}
	if o.MaxRetries < 0 {
		o.MaxRetries = 0
	} else if o.MaxRetries == 0 {
		o.MaxRetries = 2
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 3
	}
	if o.BatchMax == 0 {
		o.BatchMax = 1 << 20
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Progress is a download's state. Byte counts are verified bytes of blob
// data (parents and framing not counted).
type Progress struct {
	Hash       Hash  // the blob being reported (for a collection: the blob that moved)
	Collection Hash  // the collection, or zero for a single blob
	Done       int64 // bytes verified and written, including those verified before this run
	Total      int64 // bytes in all (blob, or every blob of the collection); 0 until known
	Resumed    int64 // of Done, bytes found verified at the start (resume)
	BlobsDone  int   // collection: blobs complete
	Blobs      int   // collection: blobs in it
	Providers  []ProviderProgress
	Finished   bool // the last event of the download
}

// ProviderProgress is one provider's share of a download.
type ProviderProgress struct {
	ID    string
	Bytes int64  // new verified bytes received from it
	State string // "active", "idle" (nothing more it holds), "failed" (stream broke, retries spent), "banned" (sent a bad group or size), "missing" (does not hold the blob)
	Err   string // the last error, if any
}

// ErrNoProviders: every provider failed, lied or lacked part of the blob
// before it was complete; the verified ranges stay recorded for a resume.
var ErrNoProviders = errors.New("blobsync: no provider could supply the blob")

// Download fetches blob h from providers and stores it, verified, returning
// its size. If the store already holds h it returns at once.
//
// The blob's missing chunk groups (all of them, or those a previous run did
// not record: resume) are cut into chunks of ChunkBytes and handed to
// providers as they ask for work, so a faster provider gets more; each
// provider keeps Pipeline ranged requests in flight on one stream. When no
// unassigned chunk is left, an idle provider duplicates the oldest pending
// chunk of another (end game), so a slow provider does not hold up the end.
// A provider whose group or parent fails verification is banned at once;
// one whose stream breaks or stalls (StallTimeout) is reopened up to
// MaxRetries times; either way its unverified groups go back to the queue.
//
// The size a provider announces is trusted only after a ranged stream that
// includes the blob's last group verifies under it (the final chunk binds
// the length, as in bao); a provider announcing another size later is
// banned. Verified groups are recorded as described in partial.go; memory
// is a few buffers per provider whatever the blob's size.
//
// Errors: ErrNoProviders (joined with each provider's last error) when the
// providers run out before the blob is complete; ctx's error. The recorded
// ranges survive either, for the next Download.
func (s *Store) Download(ctx context.Context, h Hash, providers []Provider, opts DownloadOptions) (int64, error) {
	opts.defaults()
	rep := newReporter(opts, Hash{}, 1)
	n, err := s.download(ctx, h, opts.SizeHint, providers, &opts, rep)
	rep.finish()
	return n, err
}

// download fetches h as Download does; hint is its size if known (0: not),
// see DownloadOptions.SizeHint.
func (s *Store) download(ctx context.Context, h Hash, hint int64, providers []Provider, opts *DownloadOptions, rep *reporter) (int64, error) {
	if ok, _ := s.Has(h); ok {
		n, err := s.Size(h)
		if err == nil {
			rep.blobDone(h, n, n, true)
			return n, nil
		}
	}
	unlock, err := s.lock(ctx, h)
	if err != nil {
		return 0, err
	}
	defer unlock()
	if e, err := s.getEntry(h); err == nil {
		if !refChanged(e) {
			rep.blobDone(h, e.Size, e.Size, true)
			return e.Size, nil
		}
		// Held by reference to a file changed since: fetched again.
		s.log.Info("blobsync: dropping a broken reference to download it again", "hash", h, "path", e.RefPath)
		if err := s.deleteLocked(h); err != nil {
			return 0, err
		}
	}
	s.activeAdd(h)
	defer s.activeDel(h)
	d := &download{s: s, h: h, opts: opts, rep: rep, changed: make(chan struct{}), providers: len(providers)}
	if hint > 0 && hint <= MaxBlobSize {
		d.hint = uint64(hint)
	}
	if e, found, err := s.rawEntry(h); err != nil {
		return 0, err
	} else if found && e.State == statePartial {
		if err := d.setSize(uint64(e.Size)); err != nil {
			return 0, err
		}
	}
	if len(providers) == 0 && !d.finished {
		if d.p != nil {
			d.p.close()
		}
		return 0, fmt.Errorf("blobsync: download %s: %w (none given)", h, ErrNoProviders)
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	errs := make([]error, len(providers))
	d.workers = len(providers)
	for i, p := range providers {
		ps := rep.provider(p.ID())
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.work(wctx, p, ps)
			d.mu.Lock()
			d.workers--
			d.signalLocked()
			d.mu.Unlock()
		}()
	}
	// Wait for completion or for every worker to give up.
	d.mu.Lock()
	for !d.finished && d.workers > 0 && d.fatal == nil {
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		d.mu.Lock()
		if ctx.Err() != nil {
			break
		}
	}
	finished, fatal := d.finished, d.fatal
	d.mu.Unlock()
	if finished {
		cancel(errFinished)
	} else {
		cancel(nil)
	}
	wg.Wait()

	switch {
	case finished && d.small != nil:
		err = s.putEntry(h, entry{Size: int64(len(d.small)), State: stateComplete, Inline: d.small})
	case finished:
		err = d.p.complete()
		d.p = nil
	case fatal != nil:
		err = fatal
	case ctx.Err() != nil:
		err = ctx.Err()
	default:
		err = errors.Join(append([]error{ErrNoProviders}, errs...)...)
	}
	if d.p != nil {
		err = errors.Join(err, d.p.close())
	}
	if err != nil {
		return 0, fmt.Errorf("blobsync: download %s: %w", h, err)
	}
	rep.blobDone(h, int64(d.size), int64(d.size), false)
	return int64(d.size), nil
}

// download is the shared state of one blob's download.
type download struct {
	s    *Store
	h    Hash
	opts *DownloadOptions
	rep  *reporter

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every change of the queue
	size        uint64        // verified size; valid when sized
	sized       bool
	groups      uint64
	p           *partial // nil for small blobs
	small       []byte   // the whole blob when it is one group
	missing     RangeSet // groups not yet handed out (cursor: missing[0])
	retry       RangeSet // groups handed back by a failed provider
	inflight    map[*task]struct{}
	finished    bool
	fatal       error // a local failure (disk): stops everything
	workers     int
	providers   int           // given to the download (workers counts those still at it)
	hint        uint64        // the caller's idea of the size (0: none); never trusted
	taskTime    time.Duration // moving average of completed tasks' times, request to last group
	sizeWaiters int           // providers waiting for another to verify the size
}

// MinChunkBytes is the smallest unit of work chunkGroups cuts: 16 groups.
const MinChunkBytes = 16 * ChunkGroupSize

// chunkGroups is the unit of work in groups: ChunkBytes, or, with more
// than one provider, less for a blob that would not fill two pipelines of
// every provider with such chunks. A provider takes Pipeline chunks at
// once, so with whole 4 MiB chunks the first provider to ask would take
// all of a 16 MiB blob and leave the others only end-game duplicates of
// its work, as measured over an emulated 40 ms path (docs/BENCHMARKS.md,
// "Fifth session"). Cut into providers × Pipeline × 2 chunks, a blob
// leaves half its work for the providers that prove faster. A lone
// provider keeps whole chunks: cutting would only add requests (measured:
// 6-10 % fewer files/s on loopback). The size must be fixed.
func (d *download) chunkGroups() uint64 {
	most := d.maxChunkGroups()
	if d.providers < 2 {
		return most
	}
	pieces := uint64(d.providers * d.opts.Pipeline * 2)
	c := (d.groups + pieces - 1) / pieces
	return max(min(c, most), min(MinChunkBytes/ChunkGroupSize, most))
}

// maxChunkGroups is ChunkBytes in groups, rounded up.
func (d *download) maxChunkGroups() uint64 {
	return uint64((d.opts.ChunkBytes + ChunkGroupSize - 1) / ChunkGroupSize)
}

// task is one ranged request of one provider.
type task struct {
	r       ChunkRange
	next    uint64 // first group not yet verified (groups arrive in order)
	started time.Time
	dup     bool           // an end-game duplicate of another task
	stolen  bool           // someone duplicates it already
	owner   *providerState // the provider that asked for it (never duplicates its own)
}

func (d *download) signalLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// setSize fixes the verified size and opens the partial blob (resume: its
// recorded ranges are not asked again).
func (d *download) setSize(size uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sized {
		if size != d.size {
			return fmt.Errorf("%w: two verified sizes %d and %d", ErrCorrupt, d.size, size)
		}
		return nil
	}
	d.size, d.groups, d.sized = size, numGroups(size), true
	d.inflight = make(map[*task]struct{})
	if size <= inlineMax {
		d.missing = RangeSet{{0, 1}}
	} else {
		p, err := d.s.openPartial(d.h, size)
		if err != nil {
			d.sized = false
			return err
		}
		d.p = p
		have := p.have()
		d.missing = have.Missing(d.groups)
		resumed := int64(have.Bytes(size))
		d.rep.blobStart(d.h, int64(size), resumed)
	}
	// A resumed blob may already hold every group (a download stopped
	// between its last verified group and completing the blob): it is done
	// without asking any provider.
	d.checkDoneLocked()
	d.signalLocked()
	return nil
}

// take hands out the next chunk the provider holds: a retried range, the
// next unassigned chunk, or (end game) a duplicate of the oldest pending
// task of another provider. It blocks while there is nothing to take but
// work may come back; ok is false when the provider has nothing left to do.
func (d *download) take(ctx context.Context, held RangeSet, owner *providerState, block bool) (t *task, ok bool) {
	d.mu.Lock()
	chunk := d.chunkGroups()
	defer d.mu.Unlock()
	rescanned := false
	for {
		if d.finished || d.fatal != nil {
			return nil, false
		}
		have := RangeSet(nil)
		if d.p != nil {
			have = d.p.have()
		}
		// Retried and unassigned groups, first the ones this provider holds.
		for _, src := range []*RangeSet{&d.retry, &d.missing} {
			for _, c := range *src {
				for _, hc := range held.Intersect(c) {
					// Skip groups verified meanwhile (end-game duplicates).
					for _, m := range have.Missing(hc.End).Intersect(hc) {
						r := ChunkRange{m.Start, min(m.End, m.Start+chunk)}
						*src = subtract(*src, r)
						t := &task{r: r, next: r.Start, started: time.Now(), owner: owner}
						d.inflight[t] = struct{}{}
						return t, true
					}
					*src = subtract(*src, hc)
				}
			}
		}
		// End game: duplicate the oldest task of another provider.
		var oldest *task
		for t := range d.inflight {
			if t.owner == owner || t.stolen || t.dup || t.next >= t.r.End || !held.Contains(ChunkRange{t.next, t.r.End}) {
				continue
			}
			if oldest == nil || t.started.Before(oldest.started) {
				oldest = t
			}
		}
		late := d.lateAfterLocked()
		if oldest != nil && time.Since(oldest.started) > late {
			oldest.stolen = true
			t := &task{r: ChunkRange{oldest.next, oldest.r.End}, next: oldest.next, started: time.Now(), dup: true, owner: owner}
			d.inflight[t] = struct{}{}
			return t, true
		}
		if !block {
			return nil, true
		}
		if len(d.inflight) == 0 {
			// Nothing pending anywhere that could come back to us. Before
			// giving up, look again at what is still unverified (a group
			// lost between the queue and the record would stall us).
			if d.p != nil && !rescanned {
				if again := have.Missing(d.groups); len(again) > 0 {
					d.missing, rescanned = again, true
					continue
				}
			}
			return nil, false
		}
		ch := d.changed
		d.mu.Unlock()
		var timer <-chan time.Time
		if oldest != nil {
			// Look again when the oldest task turns late.
			timer = time.After(max(late-time.Since(oldest.started), 0) + 10*time.Millisecond)
		}
		select {
		case <-ch:
		case <-timer:
		case <-ctx.Done():
			d.mu.Lock()
			return nil, false
		}
		d.mu.Lock()
	}
}

// lateAfterLocked is the age at which a task counts as late, so that
// another provider may duplicate it (end game): 50 ms, or twice the
// typical time a task took from its request to its last group, whichever
// is longer. On a long path every task is older than 50 ms before its
// first byte arrives; duplicating tasks that are on time only wastes the
// link and, when the blob completes, cuts the streams still answering
// them instead of keeping them for the next blob (measured over emulated
// 40 ms paths, docs/BENCHMARKS.md, "Fifth session"). Tasks wait in their
// provider's pipeline before they are served, so a blob's last tasks are
// older than the typical: at 1.5 times it, equal providers still
// duplicated each other's. A stalled or much slower provider's tasks
// still turn late (TestDownloadSlowProviderTakenOver).
func (d *download) lateAfterLocked() time.Duration {
	return max(50*time.Millisecond, 2*d.taskTime)
}

// claim makes range r, already asked of owner, its task: r leaves the
// unassigned groups.
func (d *download) claim(r ChunkRange, owner *providerState) *task {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.missing = subtract(d.missing, r)
	t := &task{r: r, next: r.Start, started: time.Now(), owner: owner}
	d.inflight[t] = struct{}{}
	return t
}

// release ends task t: groups not verified go back to the queue. A task
// of its owner's own that completed feeds the typical task time.
func (d *download) release(t *task) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.inflight, t)
	if t.next < t.r.End {
		d.retry = d.retry.Add(ChunkRange{t.next, t.r.End})
	} else if !t.dup {
		took := time.Since(t.started)
		if d.taskTime == 0 {
			d.taskTime = took
		} else {
			d.taskTime = (3*d.taskTime + took) / 4
		}
	}
	d.checkDoneLocked()
	d.signalLocked()
}

func (d *download) checkDoneLocked() {
	if d.finished || !d.sized {
		return
	}
	if d.small != nil {
		d.finished = true
		return
	}
	if d.p != nil && d.p.have().Contains(ChunkRange{0, d.groups}) {
		d.finished = true
	}
}

func (d *download) fail(err error) {
	d.mu.Lock()
	if d.fatal == nil {
		d.fatal = err
	}
	d.signalLocked()
	d.mu.Unlock()
}

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

// subtract returns rs without the groups of c.
func subtract(rs RangeSet, c ChunkRange) RangeSet {
	var out RangeSet
	for _, r := range rs {
		if r.End <= c.Start || r.Start >= c.End {
			out = append(out, r)
			continue
		}
		if r.Start < c.Start {
			out = append(out, ChunkRange{r.Start, c.Start})
		}
		if r.End > c.End {
			out = append(out, ChunkRange{c.End, r.End})
		}
	}
	return out
}

// DownloadCollection downloads the collection blob h, then every blob it
// lists. Small blobs (at most BatchMax bytes each) not yet held go in
// children requests, up to 256 blobs or 16 MiB per request, handed to providers as
// they ask for work (see downloadBatches); the others, and any small one
// the batches did not bring, are downloaded at most Concurrency at once,
// each split across providers as Download does. Progress events cover the
// whole collection (Total is the sum of the entries' sizes, announced by
// the collection, which is itself verified). It returns the collection.
// Blobs already held are skipped; the first blob that fails stops the
// others (their verified ranges stay recorded) and its error is returned.
func (s *Store) DownloadCollection(ctx context.Context, h Hash, providers []Provider, opts DownloadOptions) (*Collection, error) {
	opts.defaults()
	crep := newReporter(DownloadOptions{}, Hash{}, 1)
	if _, err := s.download(ctx, h, 0, providers, &opts, crep); err != nil {
		return nil, err
	}
	b, err := s.ReadAll(h, MaxCollectionSize)
	if err != nil {
		return nil, err
	}
	c, err := DecodeCollection(b)
	if err != nil {
		return nil, fmt.Errorf("blobsync: download collection %s: %w", h, err)
	}
	rep := newReporter(opts, h, len(c.Entries))
	defer rep.finish()
	var total int64
	for _, e := range c.Entries {
		total += e.Size
	}
	rep.setTotal(total)

	// Small blobs first, in batches; the rest (and what the batches did not
	// bring) blob by blob, where a held blob returns at once, counted as
	// held. An entry whose blob another entry already names waits for the
	// end.
	all := make([]int, len(c.Entries))
	for i := range all {
		all[i] = i
	}
	small, each, held, dup, err := s.sortEntries(c, all, opts.BatchMax)
	if err != nil {
		return nil, err
	}
	each = append(each, held...)
	if len(small) > 0 && len(providers) > 0 {
		var left []int
		left, providers = s.downloadBatches(ctx, h, c, small, batchMaxBytes, false, providers, &opts, rep)
		slices.Sort(left)
		each = append(each, left...)
	} else {
		each = append(each, small...)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err := s.downloadEach(ctx, h, c, append(each, dup...), providers, &opts, rep); err != nil {
		return nil, err
	}
	return c, nil
}

// downloadEach downloads the entries idx of collection h (decoded as c) one
// blob per download, at most opts.Concurrency at once.
func (s *Store) downloadEach(ctx context.Context, h Hash, c *Collection, idx []int, providers []Provider, opts *DownloadOptions, rep *reporter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, i := range idx {
		e := c.Entries[i]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n, err := s.download(ctx, e.Hash, e.Size, providers, opts, rep)
			if err == nil && n != e.Size {
				err = fmt.Errorf("blobsync: collection %s entry %q: blob %s is %d bytes, the entry says %d", h, e.Name, e.Hash, n, e.Size)
			}
			if err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}
