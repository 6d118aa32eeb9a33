package blobsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
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
// its size. If the store already holds h (Has) it returns at once; a blob
// held by reference to a file changed since is dropped and fetched again.
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
	if e, err := s.getEntry(h); err == nil && !refChanged(e) {
		rep.blobDone(h, e.Size, e.Size, true)
		return e.Size, nil
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
		// Held by reference to a file changed since (Has): fetched again.
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
