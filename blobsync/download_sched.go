package blobsync

import (
	"context"
	"fmt"
	"sync"
	"time"
)

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
