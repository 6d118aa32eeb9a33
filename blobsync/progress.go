package blobsync

import (
	"sync"
	"time"
)

// reporter aggregates a download's progress (one blob or a collection) and
// calls DownloadOptions.Progress, throttled and serialised.
type reporter struct {
	fn    func(Progress)
	every time.Duration
	coll  Hash

	mu         sync.Mutex
	last       time.Time
	fixedTotal bool
	total      int64
	done       int64
	resumed    int64
	blobs      int
	blobsDone  int
	perBlob    map[Hash]int64 // bytes counted so far of blobs in progress
	cur        Hash
	ended      bool
	provs      map[string]*providerState
	order      []*providerState
}

type providerState struct {
	id    string
	bytes int64
	state string
	err   string
}

func newReporter(opts DownloadOptions, coll Hash, blobs int) *reporter {
	return &reporter{fn: opts.Progress, every: opts.ProgressEvery, coll: coll, blobs: blobs,
		perBlob: make(map[Hash]int64), provs: make(map[string]*providerState)}
}

// setTotal fixes the total (a collection's sum of sizes).
func (r *reporter) setTotal(total int64) {
	r.mu.Lock()
	r.total, r.fixedTotal = total, true
	r.mu.Unlock()
}

func (r *reporter) provider(id string) *providerState {
	r.mu.Lock()
	defer r.mu.Unlock()
	ps := r.provs[id]
	if ps == nil {
		ps = &providerState{id: id, state: "active"}
		r.provs[id] = ps
		r.order = append(r.order, ps)
	}
	return ps
}

func (r *reporter) setState(ps *providerState, state string, err error) {
	r.mu.Lock()
	ps.state = state
	if err != nil {
		ps.err = err.Error()
	}
	r.mu.Unlock()
}

// blobStart: blob h of size bytes starts, resumed of them already verified.
func (r *reporter) blobStart(h Hash, size, resumed int64) {
	r.mu.Lock()
	if !r.fixedTotal {
		r.total = size
	}
	r.perBlob[h] += resumed
	r.done += resumed
	r.resumed += resumed
	r.cur = h
	r.mu.Unlock()
	r.emit(false)
}

// add counts n new verified bytes of blob h from provider ps.
func (r *reporter) add(ps *providerState, h Hash, n int64) {
	r.mu.Lock()
	ps.bytes += n
	r.perBlob[h] += n
	r.done += n
	r.cur = h
	r.mu.Unlock()
	r.emit(false)
}

// blobDone: blob h is complete (already: it was held before).
func (r *reporter) blobDone(h Hash, size, _ int64, already bool) {
	r.mu.Lock()
	if !r.fixedTotal {
		r.total = size
	}
	r.done += size - r.perBlob[h]
	if already {
		r.resumed += size - r.perBlob[h]
	}
	delete(r.perBlob, h)
	r.blobsDone++
	r.cur = h
	r.mu.Unlock()
	r.emit(true)
}

func (r *reporter) finish() {
	r.mu.Lock()
	r.ended = true
	r.mu.Unlock()
	r.emit(true)
}

// emit calls the callback if due (or forced), with a snapshot.
func (r *reporter) emit(force bool) {
	if r.fn == nil {
		return
	}
	r.mu.Lock()
	now := time.Now()
	if !force && now.Sub(r.last) < r.every {
		r.mu.Unlock()
		return
	}
	r.last = now
	p := Progress{Hash: r.cur, Collection: r.coll, Done: r.done, Total: r.total, Resumed: r.resumed,
		BlobsDone: r.blobsDone, Blobs: r.blobs, Finished: r.ended}
	for _, ps := range r.order {
		p.Providers = append(p.Providers, ProviderProgress{ID: ps.id, Bytes: ps.bytes, State: ps.state, Err: ps.err})
	}
	// The callback runs under the lock: calls are serialised and ordered.
	r.fn(p)
	r.mu.Unlock()
}
