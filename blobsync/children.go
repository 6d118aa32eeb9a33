package blobsync

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Children requests: one request names a collection and a set of its
// entries (by index), and the answer carries a section per entry — a
// header and that blob's verified stream — so a collection of many small
// files moves without a request round trip, a stream and a have query per
// file. Wire format: docs/protocol.md, "Children requests". Iroh's
// GetRequest with a RangeSpecSeq over a HashSeq is the same idea.

// Batching of a collection's small blobs (DownloadCollection). Variables
// only so tests can cut a small collection into several batches.
var (
	batchMaxBytes    int64 = 16 << 20 // bytes of blobs one children request asks for (at most)
	batchMaxChildren       = 256      // children one request names (at most; MaxChildren is the wire limit)
)

const batchPipeline = 2 // children requests in flight per provider

// chunkPipeline: children requests in flight per provider for a chunked
// file's chunks (about 4 MiB each: chunkBatchBytes), 16 MiB ahead as a
// blob's Download asks by default (DownloadOptions.Pipeline).
const chunkPipeline = 4

// Group commits of staged batches (committer): answers staged while a
// commit runs wait in a queue of commitQueue, and are committed together,
// at most commitGroupMax blobs at once.
const (
	commitQueue    = 16
	commitGroupMax = 512
)

// collCache keeps the entry hashes of the collection a serve session last
// answered a children request for, so a stream of batches decodes it once.
type collCache struct {
	h      Hash
	size   uint64
	hashes []Hash
}

// serveChildren answers a children request: a header for the collection
// (status, its size, the count of sections that follow), then one section
// per requested child in request order, each a response header carrying
// the child's index and, if its status is OK, the body of its ranges. A
// child the peer may not have, or that is not held, gets a not-found
// section; the others still come. A collection that is not held (or not
// allowed) gets one not-found header and no sections. A chunk list
// (chunklist.go) is answered as a collection of its chunks, in list order.
// A blob that decodes as neither, or an index past its entries, is a bad
// request.
func (s *Store) serveChildren(ctx context.Context, w *bufio.Writer, enc *encoder, req Request, allow func(Hash) bool, cc *collCache) error {
	coll := req.Hash
	notFound := wireResponse{Status: statusNotFound, Msg: "not found"}
	if allow != nil && !allow(coll) {
		return writeFrame(w, notFound)
	}
	if cc.hashes == nil || cc.h != coll {
		size, err := s.Size(coll)
		if err != nil {
			return writeFrame(w, notFound)
		}
		b, err := s.ReadAll(coll, max(MaxCollectionSize, MaxChunkListSize))
		if err != nil {
			if errors.As(err, new(*LimitError)) {
				return fmt.Errorf("%w: blob %s is too large to be a collection", ErrProtocol, coll)
			}
			s.log.Error("blobsync: serve: read collection", "hash", coll, "err", err)
			return writeFrame(w, notFound)
		}
		hashes, err := childHashes(b)
		if err != nil {
			return fmt.Errorf("%w: blob %s: %v", ErrProtocol, coll, err)
		}
		*cc = collCache{h: coll, size: uint64(size), hashes: hashes}
	}
	for _, c := range req.Children {
		if c.Index >= uint64(len(cc.hashes)) {
			return fmt.Errorf("%w: child index %d: collection %s has %d entries", ErrProtocol, c.Index, coll, len(cc.hashes))
		}
	}
	if err := writeFrame(w, wireResponse{Status: statusOK, Size: cc.size, Count: uint64(len(req.Children))}); err != nil {
		return err
	}
	for _, c := range req.Children {
		if err := s.serveBlob(ctx, w, enc, cc.hashes[c.Index], c.Ranges, false, allow, c.Index); err != nil {
			return err
		}
	}
	return nil
}

// childHashes returns the hashes a children request indexes into: a
// chunk list's chunks (the blob starts with the list's magic), else a
// collection's entries.
func childHashes(b []byte) ([]Hash, error) {
	if len(b) >= 4 && [4]byte(b[:4]) == chunkListMagic {
		l, err := DecodeChunkList(b)
		if err != nil {
			return nil, err
		}
		hashes := make([]Hash, len(l.Chunks))
		for i, c := range l.Chunks {
			hashes[i] = c.Hash
		}
		return hashes, nil
	}
	if len(b) > MaxCollectionSize {
		return nil, fmt.Errorf("%d bytes, too large to be a collection", len(b))
	}
	c, err := DecodeCollection(b)
	if err != nil {
		return nil, fmt.Errorf("not a collection: %v", err)
	}
	hashes := make([]Hash, len(c.Entries))
	for i, e := range c.Entries {
		hashes[i] = e.Hash
	}
	return hashes, nil
}

// requestChildren writes a children request for collection coll.
func (c *rangeConn) requestChildren(coll Hash, children []ChildRanges) error {
	return writeFrame(c.rw, encodeRequest(Request{Hash: coll, Children: children}))
}

// readChildrenHeader reads the collection header of a children answer,
// which must announce n sections.
func (c *rangeConn) readChildrenHeader(n int) error {
	resp, err := readResponse(c.br)
	if err != nil {
		return err
	}
	if resp.Count != uint64(n) {
		return fmt.Errorf("%w: children answer announces %d sections, %d were asked for", ErrProtocol, resp.Count, n)
	}
	return nil
}

// readChildHeader reads the header of the section for entry index. A
// section without a body (the child is not found or held only in part)
// gives ok false and no error; the stream goes on with the next section.
func (c *rangeConn) readChildHeader(index uint64) (size uint64, ok bool, err error) {
	var resp wireResponse
	if err := readFrame(c.br, maxResponseFrame, "child header", &resp); err != nil {
		if err == io.EOF {
			err = fmt.Errorf("read child header: %w", io.ErrUnexpectedEOF)
		}
		return 0, false, err
	}
	if resp.Index != index {
		return 0, false, fmt.Errorf("%w: section for entry %d where entry %d was due", ErrProtocol, resp.Index, index)
	}
	if err := statusErr(resp.Status, resp.Msg); err != nil {
		if errors.Is(err, ErrNotFound) {
			return 0, false, nil
		}
		return 0, false, err
	}
	if resp.Size > uint64(MaxBlobSize) {
		return 0, false, fmt.Errorf("%w: %w", ErrProtocol, &LimitError{What: "announced blob size", Limit: MaxBlobSize, Got: int64(min(resp.Size, 1<<62))})
	}
	return resp.Size, true, nil
}

// discardSink takes verified bytes nobody needs (a blob stored meanwhile by
// another download): the stream must still be read and checked.
type discardSink struct{}

func (discardSink) parent(uint64, []byte) error { return nil }
func (discardSink) group(uint64, []byte) error  { return nil }

// batches cuts the entries idx of c into children requests of at most
// batchMaxChildren entries and about maxBytes (batchMaxBytes for a
// collection's small blobs, chunkBatchBytes for a file's chunks). For several providers
// (n > 1) it cuts finer, into at least n × batchPipeline × 2 batches (down
// to 16 entries or 1 MiB each), as chunkGroups does for a blob: else the
// first provider to ask takes every batch of a collection of a few dozen
// megabytes into its pipeline and the others have nothing to do (measured
// over emulated 40 ms paths: 320 files of 100 KB from three providers came
// at the speed of one).
func batches(c *Collection, idx []int, n int, maxBytes int64) [][]int {
	maxChildren := batchMaxChildren
	if n > 1 {
		var total int64
		for _, i := range idx {
			total += c.Entries[i].Size
		}
		pieces := n * batchPipeline * 2
		maxChildren = min(maxChildren, max(16, (len(idx)+pieces-1)/pieces))
		maxBytes = min(maxBytes, max(1<<20, (total+int64(pieces)-1)/int64(pieces)))
	}
	var out [][]int
	var cur []int
	var bytes int64
	for _, i := range idx {
		if len(cur) > 0 && (len(cur) == maxChildren || bytes+c.Entries[i].Size > maxBytes) {
			out = append(out, cur)
			cur, bytes = nil, 0
		}
		cur = append(cur, i)
		bytes += c.Entries[i].Size
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// batchRun is the shared state of downloadBatches.
type batchRun struct {
	s      *Store
	coll   Hash
	c      *Collection
	opts   *DownloadOptions
	rep    *reporter
	work   chan []int // batches not yet handed out; closed, filled up front
	cancel context.CancelCauseFunc

	commits   chan stagedBatch // to the committer (nil: s.commitEach)
	pool      *partPool        // data part files created ahead (nil: s.commitEach)
	pack      *packFile        // where blobs go (pack.go); nil: a file each
	pipeline  int              // requests in flight per provider
	committed chan struct{}    // closed when the committer has finished

	mu        sync.Mutex
	state     map[int]entryState
	remaining int // entries still pending
	inflight  map[*batchTask]struct{}
	banned    map[string]bool // providers that sent a bad group or size
}

// stagedBatch is what one children answer's reader staged: blobs whose
// tag is their entry's index, from provider ps.
type stagedBatch struct {
	ps  *providerState
	sts []*staged
}

type entryState uint8

const (
	entryPending entryState = iota
	entryStored
	entryLeft // for the blob-by-blob path
)

// batchTask is one children request of one provider.
type batchTask struct {
	entries []int
	next    int  // entries[:next] read by the owner
	reading bool // the owner is reading its answer: entries[next] is under way
	owner   *providerState
	started time.Time
	stolen  bool // duplicated by another provider (end game)
}

// settle records what became of entry ei; when no entry is pending any
// more, the run ends (a provider still streaming a duplicated batch is cut
// off). It reports whether ei was pending or left (so a stored blob is
// counted once).
func (b *batchRun) settle(ei int, to entryState) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	from := b.state[ei]
	switch {
	case from == entryStored, from == entryLeft && to == entryLeft:
		return false
	case from == entryPending:
		b.remaining--
	}
	b.state[ei] = to
	if b.remaining == 0 {
		b.cancel(errFinished)
	}
	return true
}

// take hands provider ps its next batch: an unassigned one, or (end game:
// none is left) the unread rest of the oldest batch of another provider
// that has run for 50 ms, so a slow provider does not hold up the end.
// With block it waits while another provider's batch may still need
// help; it returns nil when there is nothing for ps to do.
func (b *batchRun) take(ctx context.Context, ps *providerState, block bool) *batchTask {
	for {
		b.mu.Lock()
		if x, ok := <-b.work; ok {
			t := &batchTask{entries: x, owner: ps, started: time.Now()}
			b.inflight[t] = struct{}{}
			b.mu.Unlock()
			return t
		}
		var oldest *batchTask
		for t := range b.inflight {
			if t.owner != ps && !t.stolen && t.next < len(t.entries) && (oldest == nil || t.started.Before(oldest.started)) {
				oldest = t
			}
		}
		if oldest != nil && time.Since(oldest.started) > 50*time.Millisecond {
			oldest.stolen = true
			from := oldest.next
			if oldest.reading {
				from++ // the owner is storing it: racing it only waits for its lock
			}
			var rest []int
			for _, ei := range oldest.entries[min(from, len(oldest.entries)):] {
				if b.state[ei] == entryPending {
					rest = append(rest, ei)
				}
			}
			if len(rest) > 0 {
				t := &batchTask{entries: rest, owner: ps, started: time.Now(), stolen: true}
				b.inflight[t] = struct{}{}
				b.mu.Unlock()
				return t
			}
		}
		b.mu.Unlock()
		if !block || oldest == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// drop ends task t, leaving its unread entries to the blob-by-blob path
// unless another provider stores them first.
func (b *batchRun) drop(t *batchTask) {
	b.mu.Lock()
	delete(b.inflight, t)
	rest := t.entries[t.next:]
	b.mu.Unlock()
	for _, ei := range rest {
		b.settle(ei, entryLeft)
	}
}

// downloadBatches fetches the entries idx of collection coll (decoded as c;
// each at most opts.BatchMax bytes, none held, no hash twice) with children
// requests: batches go to providers as they ask for work, so a faster
// provider takes more, with batchPipeline requests in flight each; when
// none is left, an idle provider duplicates the rest of another's oldest
// batch (end game). Every blob is verified against the hash its entry
// names before it is stored. It returns the entries it did not get — no
// provider that was asked had them, or streams failed beyond MaxRetries —
// for the caller to fetch blob by blob, which also reports why one cannot
// be had, and the providers that did not lie (a liar is used for nothing
// more). The blobs too large to be inline are appended to one pack file
// (pack.go) unless the store keeps a file per blob (StoreOptions.SmallFiles;
// for chunks, ChunkFiles). With chunks (coll is a chunk list, the entries
// its chunks) each provider has chunkPipeline requests in flight.
func (s *Store) downloadBatches(ctx context.Context, coll Hash, c *Collection, idx []int, maxBytes int64, chunks bool, providers []Provider, opts *DownloadOptions, rep *reporter) (left []int, honest []Provider) {
	all := batches(c, idx, len(providers), maxBytes)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b := &batchRun{s: s, coll: coll, c: c, opts: opts, rep: rep, cancel: cancel,
		work: make(chan []int, len(all)), state: make(map[int]entryState, len(idx)), remaining: len(idx),
		inflight: map[*batchTask]struct{}{}, banned: map[string]bool{}, pipeline: batchPipeline}
	if chunks {
		b.pipeline = chunkPipeline
	}
	for _, x := range all {
		b.work <- x
	}
	close(b.work)
	if !s.commitEach {
		b.commits = make(chan stagedBatch, commitQueue)
		b.committed = make(chan struct{})
		go b.committer()
		b.pool = newPartPool(s.dir)
		if chunks && !s.chunkFiles || !chunks && !s.smallFiles && anyLarge(c, idx) {
			var err error
			if b.pack, err = s.newPack(); err != nil {
				s.log.Warn("blobsync: no pack for a download; a file per blob", "collection", coll, "err", err)
			}
		}
	}
	var wg sync.WaitGroup
	for _, p := range providers {
		ps := rep.provider(p.ID())
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.provider(ctx, p, ps)
		}()
	}
	wg.Wait()
	if b.commits != nil {
		b.pool.close()
		close(b.commits)
		<-b.committed
		if b.pack != nil {
			b.pack.close()
		}
	}
	for x := range b.work { // batches no provider took
		for _, ei := range x {
			b.settle(ei, entryLeft)
		}
	}
	for _, ei := range idx {
		if b.state[ei] != entryStored {
			left = append(left, ei)
		}
	}
	for _, p := range providers {
		if !b.banned[p.ID()] {
			honest = append(honest, p)
		}
	}
	return left, honest
}

// anyLarge reports whether an entry of c among idx is too large to be
// inline, so would go to a pack.
func anyLarge(c *Collection, idx []int) bool {
	for _, i := range idx {
		if c.Entries[i].Size > inlineMax {
			return true
		}
	}
	return false
}

// provider runs one provider's sessions until the batches run out, it
// lies, lacks the collection, or its retries are spent.
func (b *batchRun) provider(ctx context.Context, p Provider, ps *providerState) {
	err := retryProvider(ctx, b.opts, b.rep, p, ps, "collection "+b.coll.String(), func() error { return b.session(ctx, p, ps) })
	if err != nil && lied(err) {
		b.mu.Lock()
		b.banned[p.ID()] = true
		b.mu.Unlock()
	}
}

// session is one stream to p: children requests for the batches it takes,
// pipelined. The unread entries of its batches are left when it ends.
func (b *batchRun) session(ctx context.Context, p Provider, ps *providerState) (err error) {
	var waiting atomic.Bool
	rw, stall, release, err := openStream(ctx, p, b.opts.StallTimeout, &waiting)
	if err != nil {
		return err
	}
	conn := newRangeConn(rw)
	defer func() { release(err == nil && conn.br.Buffered() == 0) }()
	b.rep.setState(ps, "active", nil)

	// Requests go out from their own goroutine (see download.session).
	reqs := make(chan []ChildRanges, b.pipeline)
	defer close(reqs)
	go func() {
		failed := false
		for r := range reqs {
			if !failed && conn.requestChildren(b.coll, r) != nil {
				failed = true
				rw.Close()
			}
		}
	}()
	var inflight []*batchTask
	waiting.Store(true) // nothing asked yet
	defer func() {
		for _, t := range inflight {
			b.drop(t)
		}
	}()
	v := new(verifier)
	for {
		for len(inflight) < b.pipeline {
			t := b.take(ctx, ps, len(inflight) == 0)
			if t == nil {
				break
			}
			children := make([]ChildRanges, len(t.entries))
			for i, ei := range t.entries {
				children[i] = ChildRanges{Index: uint64(ei)}
			}
			waiting.Store(false)
			reqs <- children
			inflight = append(inflight, t)
		}
		if len(inflight) == 0 {
			return nil
		}
		stall.Reset(b.opts.StallTimeout)
		if err := b.read(ctx, conn, v, inflight[0], ps, stall); err != nil {
			return err
		}
		b.drop(inflight[0])
		inflight = inflight[1:]
		waiting.Store(len(inflight) == 0)
	}
}

// read reads the answer to the children request of task t, advancing
// t.next past each entry it deals with (stored, or left because the
// provider does not hold it).
func (b *batchRun) read(ctx context.Context, conn *rangeConn, v *verifier, t *batchTask, ps *providerState, stall *time.Timer) error {
	b.mu.Lock()
	t.reading = true
	b.mu.Unlock()
	if err := conn.readChildrenHeader(len(t.entries)); err != nil {
		return err
	}
	prog := func(uint64) error {
		stall.Reset(b.opts.StallTimeout)
		return ctx.Err()
	}
	var stage []*staged // verified, written, for the committer
	defer func() { b.commit(ps, stage) }()
	for i, ei := range t.entries {
		e := b.c.Entries[ei]
		size, ok, err := conn.readChildHeader(uint64(ei))
		if err != nil {
			return err
		}
		switch {
		case !ok:
			b.settle(ei, entryLeft)
		case size != uint64(e.Size):
			return errBanned{fmt.Errorf("%w: entry %q: peer announced %d bytes, the collection says %d", ErrCorrupt, e.Name, size, e.Size)}
		case b.commits != nil:
			st, err := b.stage(ctx, conn, v, e.Hash, size, prog, ps, &stage)
			if err != nil {
				return err
			}
			if st != nil {
				st.tag = ei
				stage = append(stage, st)
			}
		default:
			stored, err := b.store(ctx, conn, v, e.Hash, size, prog)
			if err != nil {
				return err
			}
			if stored && b.settle(ei, entryStored) {
				b.rep.add(ps, e.Hash, e.Size)
				b.rep.blobDone(e.Hash, e.Size, e.Size, false)
			}
		}
		b.mu.Lock()
		t.next = i + 1
		b.mu.Unlock()
	}
	return nil
}

// store verifies and stores one child's whole-blob body, or verifies and
// drops it if the blob is held already (an end-game duplicate, or another
// download); stored reports which. The blob's lock is held only to store.
func (b *batchRun) store(ctx context.Context, conn *rangeConn, v *verifier, h Hash, size uint64, prog func(uint64) error) (stored bool, err error) {
	unlock, err := b.s.lock(ctx, h)
	if err != nil {
		return false, err
	}
	if _, err := b.s.Size(h); err == nil {
		unlock()
		return false, v.verify(conn.br, h, size, nil, discardSink{}, prog)
	}
	defer unlock()
	b.s.activeAdd(h)
	defer b.s.activeDel(h)
	return true, b.s.storeWhole(conn.br, v, h, size, prog)
}

// stage verifies one child's whole-blob body and stages it for the
// committer (commit.go), or verifies and drops it if the blob is held
// already (then st is nil). The blob's lock stays held until its batch is
// committed. If the lock is busy, the reader's own staged blobs (*pending)
// go to the committer before it waits: two readers each holding a blob
// the other waits for would wait forever otherwise.
func (b *batchRun) stage(ctx context.Context, conn *rangeConn, v *verifier, h Hash, size uint64, prog func(uint64) error, ps *providerState, pending *[]*staged) (st *staged, err error) {
	unlock, ok := b.s.tryLock(h)
	if !ok {
		b.commit(ps, *pending)
		*pending = nil
		if unlock, err = b.s.lock(ctx, h); err != nil {
			return nil, err
		}
	}
	if _, err := b.s.Size(h); err == nil {
		unlock()
		return nil, v.verify(conn.br, h, size, nil, discardSink{}, prog)
	}
	return b.s.stageWhole(conn.br, v, h, size, unlock, b.pool, b.pack, prog)
}

// commit hands staged blobs from provider ps to the committer.
func (b *batchRun) commit(ps *providerState, sts []*staged) {
	if len(sts) > 0 {
		b.commits <- stagedBatch{ps: ps, sts: sts}
	}
}

// committer commits the staged batches, and only then settles their
// entries and reports them stored. Batches that arrive while a commit
// runs are committed together in the next (up to commitGroupMax), so
// the fsyncs of a fast download are paid once per group rather than
// once per children answer, and a reader is held up only when
// commitQueue batches wait. An entry whose commit failed is left to the
// blob-by-blob path, which reports why.
func (b *batchRun) committer() {
	defer close(b.committed)
	for sb := range b.commits {
		group := []stagedBatch{sb}
		n := len(sb.sts)
	more:
		for n < commitGroupMax {
			select {
			case sb, ok := <-b.commits:
				if !ok {
					break more
				}
				group = append(group, sb)
				n += len(sb.sts)
			default:
				break more
			}
		}
		sts := make([]*staged, 0, n)
		for _, sb := range group {
			sts = append(sts, sb.sts...)
		}
		stored, err := b.s.commitStaged(sts)
		if err != nil {
			b.s.log.Error("blobsync: commit a batch of blobs", "collection", b.coll, "blobs", len(sts), "stored", len(stored), "err", err)
		}
		done := make(map[*staged]bool, len(stored))
		for _, st := range stored {
			done[st] = true
		}
		for _, sb := range group {
			for _, st := range sb.sts {
				e := b.c.Entries[st.tag]
				switch {
				case !done[st]:
					b.settle(st.tag, entryLeft)
				case b.settle(st.tag, entryStored):
					b.rep.add(sb.ps, e.Hash, e.Size)
					b.rep.blobDone(e.Hash, e.Size, e.Size, false)
				}
			}
		}
	}
}

// DownloadBatch downloads the entries idx (positions in c.Entries) of
// collection h, whose decoded content c the caller holds, in children
// requests as DownloadCollection does for its small entries (batches
// taken by providers as they ask for work, end game, every blob verified
// against its entry's hash). It returns the entries it did not get — no
// provider sent them, their streams broke, or they are held in part (a
// partial blob resumes through Download) — for the caller to fetch blob by
// blob. Entries already held are skipped; an entry whose blob another
// listed entry names is returned for the caller to find held. Progress
// covers the listed entries. Errors: an index outside c.Entries; ctx's.
func (s *Store) DownloadBatch(ctx context.Context, h Hash, c *Collection, idx []int, providers []Provider, opts DownloadOptions) ([]int, error) {
	opts.defaults()
	for _, i := range idx {
		if i < 0 || i >= len(c.Entries) {
			return nil, fmt.Errorf("blobsync: download batch of %s: entry %d of %d", h, i, len(c.Entries))
		}
	}
	rep := newReporter(opts, h, len(idx))
	defer rep.finish()
	var total int64
	for _, i := range idx {
		total += c.Entries[i].Size
	}
	rep.setTotal(total)
	ask, each, held, dup, err := s.sortEntries(c, idx, opts.BatchMax)
	if err != nil {
		return nil, err
	}
	for _, i := range held {
		e := c.Entries[i]
		rep.blobDone(e.Hash, e.Size, e.Size, true)
	}
	left := append(each, dup...)
	if len(ask) > 0 && len(providers) > 0 {
		missed, _ := s.downloadBatches(ctx, h, c, ask, batchMaxBytes, false, providers, &opts, rep)
		left = append(left, missed...)
	} else {
		left = append(left, ask...)
	}
	slices.Sort(left)
	return left, ctx.Err()
}

// sortEntries sorts the entries idx of c for a download: ask are those to
// fetch in children requests (not held at all, at most batchMax bytes),
// each those to fetch blob by blob (held in part: they resume from their
// record; or larger), held those complete already, and dup those whose
// blob an earlier listed entry names.
func (s *Store) sortEntries(c *Collection, idx []int, batchMax int64) (ask, each, held, dup []int, err error) {
	seen := make(map[Hash]bool, len(idx))
	for _, i := range idx {
		e := c.Entries[i]
		if seen[e.Hash] {
			dup = append(dup, i)
			continue
		}
		seen[e.Hash] = true
		re, found, err := s.rawEntry(e.Hash)
		switch {
		case err != nil:
			return nil, nil, nil, nil, err
		case found && re.State == stateComplete:
			held = append(held, i)
		case found || e.Size > batchMax:
			each = append(each, i)
		default:
			ask = append(ask, i)
		}
	}
	return ask, each, held, dup, nil
}
