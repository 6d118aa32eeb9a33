package blobsync

import (
	"fmt"
	"sync"
	"time"
)

// sinkBuffers is how many write buffers of at most sinkBufSize one
// provider's stream uses: the verifier fills one while the writer writes
// another and a third absorbs a slow write. A write with O_DIRECT waits
// for the device; with two 1 MiB buffers a get that also writes the output
// file (a Mirror) left the verifier waiting 0.1-0.6 s per lane and GiB on
// the writer, with three of 2 MiB under 1 ms (docs/BENCHMARKS.md, "The
// writer kept up"). Buffers are made as the stream needs them and no
// larger than the blob, so a blob of one buffer costs one.
const (
	sinkBuffers = 3
	sinkBufSize = 2 << 20
	sinkParents = 512 // parents coalesced into one outboard write (32 KiB)
)

// groupSink takes the verified groups and parents of one provider's
// stream into the partial blob, without making the stream wait for the
// disk.
//
// The verifier reads each group straight into a write buffer (lend), and
// consecutive groups fill it. A full buffer, a gap or the end of a response
// hands the buffer to the sink's writer goroutine, which writes it (with
// O_DIRECT where the file system allows: no page-cache copy, but a write
// that waits for the device), marks its groups verified, advances the
// task's cursor and reports progress; meanwhile the verifier reads on
// into the next buffer. Parents are coalesced into runs of consecutive
// outboard slots (a response's parents come in outboard order) and
// written before the buffer whose groups they cover is handed over.
//
// So the rule of partial.go holds: a group is marked only after its bytes
// and its parents are written. Tasks are released through the writer too
// (release), after their last buffer: a released task's cursor counts
// every group the writer has written. Memory: at most sinkBuffers ×
// sinkBufSize (6 MiB) plus 32 KiB of parents.
type groupSink struct {
	d       *download
	ps      *providerState
	t       *task // the task whose response is being read
	stall   *time.Timer
	timeout time.Duration

	buf   []byte // being filled; nil until lend or group needs one
	bufAt uint64 // byte offset of buf[0] in the blob

	par   []byte // coalesced parents, for outboard slots parAt...
	parAt uint64

	free    chan []byte
	made    int // buffers made so far (at most sinkBuffers)
	bufSize int // their capacity: sinkBufSize, or less for a smaller blob
	items   chan sinkItem
	done    chan struct{}

	mu  sync.Mutex
	err error // the writer's first error (a localError)
}

// sinkItem is one job of the writer: a buffer of groups of task t at byte
// offset at, or (buf nil) the release of t.
type sinkItem struct {
	buf []byte
	at  uint64
	t   *task
}

func newGroupSink(d *download, ps *providerState, stall *time.Timer, timeout time.Duration) *groupSink {
	g := &groupSink{
		d: d, ps: ps, stall: stall, timeout: timeout,
		par:     make([]byte, 0, sinkParents*parentSize),
		free:    make(chan []byte, sinkBuffers),
		bufSize: int(min(sinkBufSize, numGroups(d.size)*ChunkGroupSize)),
		items:   make(chan sinkItem, sinkBuffers+8),
		done:    make(chan struct{}),
	}
	go g.run()
	return g
}

// take returns an empty write buffer: a free one, a new one while fewer
// than sinkBuffers were made, else the next the writer gives back.
func (g *groupSink) take() []byte {
	select {
	case b := <-g.free:
		return b
	default:
	}
	if g.made < sinkBuffers {
		g.made++
		return alignedBuf(g.bufSize)
	}
	return <-g.free
}

// run is the writer goroutine. After an error it writes nothing more but
// still releases tasks (their unwritten groups go back to the queue) and
// returns buffers.
func (g *groupSink) run() {
	defer close(g.done)
	for it := range g.items {
		if it.buf == nil {
			g.d.release(it.t)
			continue
		}
		if g.failed() == nil {
			if err := g.write(it); err != nil {
				g.mu.Lock()
				if g.err == nil {
					g.err = err
				}
				g.mu.Unlock()
				g.d.fail(err.(localError).err)
			}
		}
		g.free <- it.buf[:0]
	}
}

func (g *groupSink) failed() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// write writes one buffer, marks its groups verified and moves the task's
// cursor past them.
func (g *groupSink) write(it sinkItem) error {
	d := g.d
	// The mirror's copy is written at the same time as the store's: each
	// waits for the device.
	var mirrored bool
	var wg sync.WaitGroup
	if d.opts.Mirror != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mirrored = d.opts.Mirror.write(it.buf, int64(it.at))
		}()
	}
	err := d.p.writeData(it.buf, int64(it.at))
	wg.Wait()
	if err != nil {
		return localError{fmt.Errorf("write partial %s: %w", d.h, err)}
	}
	first := it.at / ChunkGroupSize
	end := (it.at + uint64(len(it.buf)) + ChunkGroupSize - 1) / ChunkGroupSize
	fresh, err := d.p.mark(ChunkRange{first, end}, uint64(len(it.buf)))
	if err != nil {
		return localError{err}
	}
	if mirrored {
		d.opts.Mirror.covered.Add(int64(fresh.Bytes(d.size)))
	}
	d.mu.Lock()
	if it.t.next < end {
		it.t.next = end
	}
	d.checkDoneLocked()
	if d.finished {
		d.signalLocked()
	}
	d.mu.Unlock()
	d.rep.add(g.ps, d.h, int64(fresh.Bytes(d.size)))
	return nil
}

// parent takes the verified parent of outboard slot i, coalescing it with
// the run of consecutive slots before it.
func (g *groupSink) parent(i uint64, b []byte) error {
	if len(g.par) > 0 && (i != g.parAt+uint64(len(g.par)/parentSize) || len(g.par) == cap(g.par)) {
		if err := g.writeParents(); err != nil {
			return err
		}
	}
	if len(g.par) == 0 {
		g.parAt = i
	}
	g.par = append(g.par, b...)
	return nil
}

func (g *groupSink) writeParents() error {
	if len(g.par) == 0 {
		return nil
	}
	if err := g.d.p.parents(g.parAt, g.par); err != nil {
		return localError{err}
	}
	g.par = g.par[:0]
	return nil
}

// lend gives the verifier the free tail of the write buffer to read the
// group at start (and the groups after it) into, handing the buffer over
// first if the group would not extend it.
func (g *groupSink) lend(start uint64) ([]byte, error) {
	if len(g.buf) > 0 && (g.bufAt+uint64(len(g.buf)) != start || len(g.buf)+ChunkGroupSize > cap(g.buf)) {
		if err := g.flush(); err != nil {
			return nil, err
		}
	}
	if g.buf == nil {
		g.buf = g.take()
	}
	return g.buf[len(g.buf):cap(g.buf)], nil
}

func (g *groupSink) group(start uint64, b []byte) error {
	g.stall.Reset(g.timeout)
	if n := len(g.buf); len(b) > 0 && n < cap(g.buf) && &g.buf[:n+1][n] == &b[0] {
		// Read in place (lend): extend buf over it.
		if n == 0 {
			g.bufAt = start
		}
		g.buf = g.buf[:n+len(b)]
		return nil
	}
	if len(g.buf) > 0 && (g.bufAt+uint64(len(g.buf)) != start || len(g.buf)+len(b) > cap(g.buf)) {
		if err := g.flush(); err != nil {
			return err
		}
	}
	if g.buf == nil {
		g.buf = g.take()
	}
	if len(g.buf) == 0 {
		g.bufAt = start
	}
	g.buf = append(g.buf, b...)
	return nil
}

// flush writes the pending parents and hands the filled buffer to the
// writer. It returns the writer's error, if it has failed.
func (g *groupSink) flush() error {
	if err := g.failed(); err != nil {
		return err
	}
	if err := g.writeParents(); err != nil {
		return err
	}
	if len(g.buf) == 0 {
		return nil
	}
	g.items <- sinkItem{buf: g.buf, at: g.bufAt, t: g.t}
	g.buf = nil
	return nil
}

// release ends task t once the writer has written its groups.
func (g *groupSink) release(t *task) { g.items <- sinkItem{t: t} }

// close waits for the writer to finish what it was handed. Groups still in
// the filling buffer (not handed over by flush) are dropped: their task's
// cursor never covered them, so they are fetched again.
func (g *groupSink) close() {
	close(g.items)
	<-g.done
}
