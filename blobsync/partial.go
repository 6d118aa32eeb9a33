package blobsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"
	"unsafe"

	"github.com/dwebkit/dweb/internal/store"
	"github.com/fxamacker/cbor/v2"
)

// Partial blobs and the crash-ordering rule.
//
// A blob being downloaded by ranges has a Pebble entry in state partial (its
// verified size), its data file <hex>.data (sparse: groups are written at
// their offsets as they arrive), its outboard file <hex>.obao (header
// written at creation, parents written at their pre-order places as they
// arrive) and a record of its verified ranges at blob/<hash>/r (CBOR array
// of [start, end] group ranges).
//
// Rule: a range is recorded as verified only after its bytes are durable.
// Each verified group is written (pwrite) and then added to an in-memory
// pending set. A flush — at most every flushInterval (500 ms), or as soon as
// flushBytes (64 MiB) are pending — takes the pending set, fsyncs the data
// file and the outboard file (which hold every group of that set and the
// parents above them), and only then writes the new range record to Pebble.
// So:
//
//   - the record never names a group whose bytes and parents are not on
//     disk, after kill -9 or a power loss alike, because it is written
//     after the fsyncs returned;
//   - groups written but not yet recorded are simply fetched again: a crash
//     costs at most the last flush interval of transfer;
//   - the cost is two file fsyncs and one Pebble commit per flush, never
//     one per group.
//
// The record is a synced Pebble write. An unsynced one (sync=false) is not
// enough even for kill -9: Pebble keeps a WAL record in a user-space buffer
// until its 32 KiB block fills or a sync asks for it, so a killed process
// loses it (TestDownloadResumeAfterKill saw exactly that). One WAL fsync per
// flush is cheap next to the file fsyncs.
//
// The entry turns complete only after every group is recorded, with a synced
// batch that writes the complete entry and deletes the range record. A
// partial blob is never served or opened as complete; its recorded ranges
// are served to peers that ask for them (Serve, have queries).

const (
	statePartial = 2

	flushInterval = 500 * time.Millisecond
	flushBytes    = 64 << 20
)

func rangesKey(h Hash) []byte { return store.Key(store.PrefixBlob, h[:], []byte("/r")) }

// errComplete: openPartial found the blob complete.
var errComplete = errors.New("blobsync: blob already complete")

// partial is an open partial blob. Its writes (group, parent) are safe for
// concurrent use; the caller holds s.lock(h) from openPartial to close.
type partial struct {
	s          *Store
	h          Hash
	size       uint64
	groups     uint64
	data, obao *os.File
	direct     *os.File // data opened with O_DIRECT, or nil (see writeData)

	mu        sync.Mutex
	recorded  RangeSet // durable and recorded in Pebble
	pending   RangeSet // verified and written, not yet flushed
	flushing  RangeSet // taken from pending by the flush in progress
	pendBytes uint64
	lastFlush time.Time
	kick      chan struct{}
	stop      chan struct{}
	stopped   chan struct{}
	flushErr  error // sticky

	flushMu sync.Mutex
}

// openPartial opens (or creates, with the verified size) the partial blob
// h. A size that disagrees with an existing partial entry is an error. The
// caller holds s.lock(h). It returns errComplete if h is complete.
func (s *Store) openPartial(h Hash, size uint64) (*partial, error) {
	if size <= inlineMax {
		return nil, fmt.Errorf("blobsync: internal error: partial blob of %d bytes", size)
	}
	e, found, err := s.rawEntry(h)
	if err != nil {
		return nil, err
	}
	var recorded RangeSet
	if found {
		switch {
		case e.State == stateComplete:
			return nil, errComplete
		case e.State != statePartial:
			return nil, fmt.Errorf("%w: blob %s entry state %d", ErrCorrupt, h, e.State)
		case uint64(e.Size) != size:
			return nil, fmt.Errorf("%w: blob %s: partial entry has size %d, the verified size is %d", ErrCorrupt, h, e.Size, size)
		}
		recorded, err = s.loadRanges(h)
		if err != nil {
			return nil, err
		}
	}
	p := &partial{s: s, h: h, size: size, groups: numGroups(size), recorded: recorded}
	if found {
		p.data, err = os.OpenFile(s.dataPath(h), os.O_RDWR, 0)
		if err == nil {
			p.obao, err = os.OpenFile(s.obaoPath(h), os.O_RDWR, 0)
			if err != nil {
				p.data.Close()
			}
		}
		if errors.Is(err, fs.ErrNotExist) {
			// Files gone (removed by hand): start over; the record must not
			// claim bytes that are not there.
			s.log.Warn("blobsync: partial blob lost its files; starting over", "hash", h)
			found, p.recorded = false, nil
		} else if err != nil {
			return nil, fmt.Errorf("blobsync: open partial %s: %w", h, err)
		}
	}
	if !found {
		if err := p.create(); err != nil {
			return nil, err
		}
	}
	p.direct = openDirect(s.dataPath(h))
	p.kick = make(chan struct{}, 1)
	p.stop = make(chan struct{})
	p.stopped = make(chan struct{})
	p.lastFlush = time.Now()
	go p.flusher()
	return p, nil
}

// create makes empty sparse files of the right sizes (outboard header
// written), fsyncs them and the directory, then writes the partial entry
// and an empty range record.
func (p *partial) create() error {
	s, h := p.s, p.h
	var err error
	fail := func(err error) error {
		for _, f := range []*os.File{p.data, p.obao} {
			if f != nil {
				f.Close()
			}
		}
		return fmt.Errorf("blobsync: create partial %s: %w", h, err)
	}
	if p.data, err = os.OpenFile(s.dataPath(h), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
		return fail(err)
	}
	if p.obao, err = os.OpenFile(s.obaoPath(h), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
		return fail(err)
	}
	var hdr [outboardHeader]byte
	putUint64LE(hdr[:], p.size)
	if _, err := p.obao.WriteAt(hdr[:], 0); err != nil {
		return fail(err)
	}
	if err := errors.Join(p.data.Truncate(int64(p.size)), p.obao.Truncate(int64(outboardSize(p.size)))); err != nil {
		return fail(err)
	}
	if err := errors.Join(p.data.Sync(), p.obao.Sync(), syncDir(s.dir)); err != nil {
		return fail(err)
	}
	b := s.db.NewBatch()
	pe := entry{Size: int64(p.size), State: statePartial, AddedAt: time.Now().Unix()}
	eb, err := entryEnc.Marshal(pe)
	if err != nil {
		return fail(err)
	}
	b.Set(entryKey(h), eb)
	b.Delete(rangesKey(h))
	if err := s.commitEntry(h, &pe, b); err != nil {
		return fail(err)
	}
	return nil
}

// mark records groups c (n bytes, already written) as verified and
// pending, and returns those of them that were not verified before (an
// end-game duplicate may have delivered some first).
func (p *partial) mark(c ChunkRange, n uint64) (fresh RangeSet, err error) {
	p.mu.Lock()
	if p.flushErr != nil {
		p.mu.Unlock()
		return nil, p.flushErr
	}
	known := p.recorded.Intersect(c).Union(p.pending.Intersect(c)).Union(p.flushing.Intersect(c))
	fresh = known.Missing(c.End).Intersect(c)
	p.pending = p.pending.Add(c)
	p.pendBytes += n
	due := p.pendBytes >= flushBytes
	p.mu.Unlock()
	if due {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return fresh, nil
}

// parents writes the verified parents b (a multiple of 64 bytes) at
// consecutive outboard slots from pre-order index i.
func (p *partial) parents(i uint64, b []byte) error {
	if _, err := p.obao.WriteAt(b, int64(outboardHeader+parentSize*i)); err != nil {
		return fmt.Errorf("blobsync: write partial outboard %s: %w", p.h, err)
	}
	return nil
}

// have returns a copy of the groups verified so far (recorded or pending).
func (p *partial) have() RangeSet {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append(RangeSet(nil), p.recorded...).Union(p.flushing).Union(p.pending)
}

// durable returns a copy of the recorded groups.
func (p *partial) durable() RangeSet {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append(RangeSet(nil), p.recorded...)
}

func (p *partial) flusher() {
	defer close(p.stopped)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		case <-p.kick:
		}
		if err := p.flush(); err != nil {
			p.s.log.Error("blobsync: flush partial", "hash", p.h, "err", err)
		}
	}
}

// flush makes the pending groups durable, then records them (the rule
// above). Flushes are serialised.
func (p *partial) flush() error {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.mu.Lock()
	if p.flushErr != nil {
		p.mu.Unlock()
		return p.flushErr
	}
	snap := p.pending
	p.pending, p.pendBytes, p.flushing = nil, 0, snap
	p.mu.Unlock()
	if len(snap) == 0 {
		return nil
	}
	err := errors.Join(p.data.Sync(), p.obao.Sync())
	var rec RangeSet
	if err == nil {
		p.mu.Lock()
		p.recorded = p.recorded.Union(snap)
		p.flushing = nil
		rec = append(rec, p.recorded...)
		p.lastFlush = time.Now()
		p.mu.Unlock()
		err = p.s.saveRanges(p.h, rec)
	}
	if err != nil {
		err = fmt.Errorf("blobsync: flush partial %s: %w", p.h, err)
		p.mu.Lock()
		p.flushErr = err
		p.pending = p.pending.Union(p.flushing) // still verified, not recorded
		p.flushing = nil
		p.mu.Unlock()
	}
	return err
}

// complete flushes, checks that every group is recorded and turns the
// entry complete (synced batch: complete entry, range record deleted). A
// small outboard (inlineOutboard) moves into the entry, as a blob stored
// whole keeps it, and its file is removed after; one that cannot be read
// back stays in its file. The partial is closed either way.
func (p *partial) complete() error {
	err := p.close()
	if err != nil {
		return err
	}
	if got := p.recorded.Groups(); !p.recorded.Contains(ChunkRange{0, p.groups}) {
		return fmt.Errorf("blobsync: internal error: complete %s with %d of %d groups", p.h, got, p.groups)
	}
	e := entry{Size: int64(p.size), State: stateComplete, AddedAt: time.Now().Unix()}
	if inlineOutboard(p.size) {
		ob, err := os.ReadFile(p.s.obaoPath(p.h))
		if err == nil && uint64(len(ob)) == outboardSize(p.size) && binary.LittleEndian.Uint64(ob) == p.size {
			e.Outboard = ob[outboardHeader:]
		}
	}
	if err := p.s.putEntry(p.h, e); err != nil {
		return err
	}
	if len(e.Outboard) > 0 {
		removeStale(p.s.obaoPath(p.h))
	}
	return nil
}

// close stops the flusher, flushes what is pending and closes the files.
func (p *partial) close() error {
	close(p.stop)
	<-p.stopped
	err := p.flush()
	if p.direct != nil {
		err = errors.Join(err, p.direct.Close())
	}
	return errors.Join(err, p.data.Close(), p.obao.Close())
}

// directAlign is the alignment O_DIRECT needs of buffers, offsets and
// lengths (the logical block size; 4 KiB covers every common disk).
const directAlign = 4096

// alignedBuf returns an empty slice of capacity n whose first byte is
// directAlign-aligned.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	if off != 0 {
		off = directAlign - off
	}
	return b[off : off : off+n]
}

// writeData writes verified bytes b at byte offset off of the data file:
// the aligned part through the O_DIRECT descriptor when there is one and b
// is aligned in memory (alignedBuf) and off is aligned, the rest through
// the page cache. Either way the flush's fsync makes them durable.
func (p *partial) writeData(b []byte, off int64) error {
	if p.direct != nil && off%directAlign == 0 && len(b) >= directAlign &&
		uintptr(unsafe.Pointer(&b[0]))%directAlign == 0 {
		n := len(b) &^ (directAlign - 1)
		if _, err := p.direct.WriteAt(b[:n], off); err == nil {
			b, off = b[n:], off+int64(n)
		} else {
			// Refused after all (some file systems accept the open but not
			// the write): page cache from now on.
			p.s.log.Debug("blobsync: O_DIRECT write refused; using the page cache", "err", err)
			p.direct.Close()
			p.direct = nil
		}
	}
	if len(b) == 0 {
		return nil
	}
	_, err := p.data.WriteAt(b, off)
	return err
}

// loadRanges reads the recorded range set of h (empty if none).
func (s *Store) loadRanges(h Hash) (RangeSet, error) {
	b, err := s.db.Get(rangesKey(h))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blobsync: ranges of %s: %w", h, err)
	}
	var w []wireRange
	if err := rangesDec.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: ranges of %s: %v", ErrCorrupt, h, err)
	}
	rs := make(RangeSet, 0, len(w))
	for _, r := range w {
		rs = append(rs, ChunkRange{r.Start, r.End})
	}
	if !rs.valid() {
		return nil, fmt.Errorf("%w: ranges of %s are not sorted and disjoint", ErrCorrupt, h)
	}
	return rs, nil
}

func (s *Store) saveRanges(h Hash, rs RangeSet) error {
	w := make([]wireRange, len(rs))
	for i, c := range rs {
		w[i] = wireRange{Start: c.Start, End: c.End}
	}
	b, err := entryEnc.Marshal(w)
	if err != nil {
		return err
	}
	return s.db.Set(rangesKey(h), b, true)
}

// rangesDec decodes a local range record: no limit on the number of ranges
// beyond the blob's groups (it is our own write).
var rangesDec, _ = cbor.DecOptions{MaxNestedLevels: 4, MaxArrayElements: 1 << 26}.DecMode()

func putUint64LE(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}
