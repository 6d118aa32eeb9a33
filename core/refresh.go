package core

import (
	"context"
	"sync"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
)

// RepoRefresh is one repo's part of a Refresh: the fields of the Save
// app's refresh body (../shared/SAVE-API.md) plus Key and FailedFiles.
type RepoRefresh struct {
	Key      key.RecordKey `json:"key"`
	Name     string        `json:"name"`
	CanWrite bool          `json:"can_write"`
	// RepoHash is the hex hash of the repo's current collection, "" if it
	// has none.
	RepoHash       string   `json:"repo_hash"`
	RefreshedFiles []string `json:"refreshed_files"` // fetched by this refresh
	AllFiles       []string `json:"all_files"`       // every file of the repo, by name
	// FailedFiles could not be fetched from any member this time (the
	// reasons are logged); a later refresh tries again.
	FailedFiles []string `json:"failed_files"`
}

// RefreshProgress is the state of a Refresh, over every repo of the group:
// the files this node lacked when it read the repos, how many of them are
// dealt with (fetched, or given up for now), and their bytes (a blob two
// entries name counts once). Done may stay below Total when files fail.
type RefreshProgress struct {
	Files     int   `json:"files"`
	FilesDone int   `json:"files_done"`
	Done      int64 `json:"done"`
	Total     int64 `json:"total"`
}

// refreshBatchMax and refreshConcurrency: Refresh fetches files up to
// refreshBatchMax bytes in children requests, larger ones (and those the
// batches missed) refreshConcurrency at a time.
const (
	refreshBatchMax    = 1 << 20
	refreshConcurrency = 4
)

// Refresh reads every repo of group g afresh and downloads every file this
// node lacks, verifying each: a repo's files up to 1 MiB in children
// requests (a few streams per member for hundreds of photos, not one
// download each), the others refreshConcurrency at a time, each from
// every member that holds it. A repo that cannot be read right now is
// skipped and logged; a file no member can supply now (or that the
// storage quota has no room for) is listed in FailedFiles. Errors:
// ErrUnknownGroup; DHT errors reading the group record; the context's
// error if it ends.
func (b *Backend) Refresh(ctx context.Context, g key.RecordKey) ([]RepoRefresh, error) {
	return b.RefreshWithProgress(ctx, g, nil)
}

// RefreshWithProgress is Refresh that reports its state to progress (if
// not nil): once the repos are read, as bytes arrive and as files are
// dealt with, and once at the end. Calls are serialised and must not
// block for long; a caller that draws a bar throttles them itself. A
// refresh that fetches files is told to subscribers too
// (download.progress events, op "refresh").
func (b *Backend) RefreshWithProgress(ctx context.Context, g key.RecordKey, progress func(RefreshProgress)) (_ []RepoRefresh, err error) {
	gs, err := b.group(g)
	if err != nil {
		return nil, err
	}
	var de *downloadEvents
	defer func() {
		if de != nil {
			de.end(err)
		}
	}()
	told := func(p RefreshProgress) {
		if p.Files > 0 {
			if de == nil {
				de = b.newDownloadEvents(g, key.RecordKey{}, DownloadEvent{Op: "refresh"})
			}
			de.update(func(e *DownloadEvent) { e.Files, e.FilesDone, e.Done, e.Total = p.Files, p.FilesDone, p.Done, p.Total })
		}
		if progress != nil {
			progress(p)
		}
	}
	keys, err := gs.g.RepoKeys(ctx)
	if err != nil {
		return nil, err
	}
	// Read every repo first (refreshConcurrency at once: each is a DHT
	// read, and perhaps a collection to fetch), so the totals are known
	// before the first byte.
	read := make([]*repoPlan, len(keys))
	var wg sync.WaitGroup
	sem := make(chan struct{}, refreshConcurrency)
	for i, rk := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p, err := b.planRefresh(ctx, gs, rk)
			if err != nil {
				if ctx.Err() == nil {
					b.log.Warn("refresh: read repo", "group", g, "repo", rk, "err", err)
				}
				return
			}
			read[i] = p
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	m := &refreshMeter{fn: told, parts: make(map[partKey]int64)}
	plans := make([]*repoPlan, 0, len(keys))
	for _, p := range read {
		if p != nil {
			plans = append(plans, p)
			m.p.Files += len(p.missing)
			m.p.Total += p.bytes
		}
	}
	m.report()
	out := make([]RepoRefresh, 0, len(plans))
	for _, p := range plans {
		if err := b.runRefresh(ctx, gs, p, m); err != nil {
			return nil, err
		}
		out = append(out, p.rr)
	}
	m.report()
	return out, nil
}

// repoPlan is one repo's part of a refresh: its collection and the
// entries this node lacks.
type repoPlan struct {
	rr      RepoRefresh
	h       blobsync.Hash
	c       *blobsync.Collection
	missing []int // entries whose blob is not held
	small   []int // of missing, those for children requests
	each    []int // of missing, those fetched one download each
	bytes   int64 // of the missing blobs, each counted once
}

// planRefresh reads repo rk afresh and lists what this node lacks.
func (b *Backend) planRefresh(ctx context.Context, gs *groupState, rk key.RecordKey) (*repoPlan, error) {
	name, h, c, err := b.repoCollection(ctx, gs, rk, false)
	if err != nil {
		return nil, err
	}
	p := &repoPlan{h: h, c: c, rr: RepoRefresh{Key: rk, Name: name, CanWrite: rk == gs.info.Repo,
		RefreshedFiles: []string{}, AllFiles: make([]string, 0, len(c.Entries)), FailedFiles: []string{}}}
	if h != (blobsync.Hash{}) {
		p.rr.RepoHash = h.String()
	}
	seen := make(map[blobsync.Hash]bool)
	for i, e := range c.Entries {
		p.rr.AllFiles = append(p.rr.AllFiles, e.Name)
		if ok, err := b.blobs.HasFile(e); err != nil || ok {
			continue
		}
		p.missing = append(p.missing, i)
		if !seen[e.Hash] {
			seen[e.Hash] = true
			p.bytes += e.Size
		}
		if e.Size <= refreshBatchMax {
			p.small = append(p.small, i)
		} else {
			p.each = append(p.each, i)
		}
	}
	return p, nil
}

// runRefresh fetches what plan p lacks and fills in p.rr's fetched and
// failed files. It returns only the context's error.
func (b *Backend) runRefresh(ctx context.Context, gs *groupState, p *repoPlan, m *refreshMeter) error {
	if len(p.missing) == 0 {
		return nil
	}
	rk := p.rr.Key
	filesBefore := m.filesDone()
	each := p.each
	if len(p.small) > 1 {
		left, err := b.refreshBatch(ctx, gs, rk, p, m)
		if err != nil {
			b.log.Debug("refresh: batch", "group", gs.info.ID, "repo", rk, "files", len(p.small), "err", err)
			left = p.small
		}
		each = append(each, left...)
	} else {
		each = append(each, p.small...)
	}
	errs := make(map[int]error)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, refreshConcurrency)
	for _, i := range each {
		e := p.c.Entries[i]
		if ok, _ := b.blobs.HasFile(e); ok {
			m.fileDone() // another entry names the same blob
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			err := b.refreshFile(ctx, gs, rk, e, m.part(partKey{p, i}))
			if err != nil {
				mu.Lock()
				errs[i] = err
				mu.Unlock()
			}
			m.fileDone()
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, i := range p.missing {
		e := p.c.Entries[i]
		if ok, _ := b.blobs.HasFile(e); ok {
			p.rr.RefreshedFiles = append(p.rr.RefreshedFiles, e.Name)
			continue
		}
		b.log.Warn("refresh: fetch", "group", gs.info.ID, "repo", rk, "file", e.Name, "err", errs[i])
		p.rr.FailedFiles = append(p.rr.FailedFiles, e.Name)
	}
	m.setFilesDone(filesBefore + len(p.missing))
	return nil
}

// refreshBatch fetches plan p's small entries in children requests from
// every member, under one storage reservation, and returns those it did
// not get.
func (b *Backend) refreshBatch(ctx context.Context, gs *groupState, rk key.RecordKey, p *repoPlan, m *refreshMeter) ([]int, error) {
	var need int64
	for _, i := range p.small {
		need += p.c.Entries[i].Size
	}
	release, err := b.reserveStorage(need)
	if err != nil {
		return nil, err
	}
	defer release()
	provs, err := b.memberProviders(ctx, gs, []key.RecordKey{rk}, 0)
	if err != nil {
		return nil, err
	}
	prog := m.part(partKey{p, -1})
	blobs := 0
	return b.blobs.DownloadBatch(ctx, p.h, p.c, p.small, provs, blobsync.DownloadOptions{Logger: b.log, Progress: func(bp blobsync.Progress) {
		prog(bp)
		for ; blobs < bp.BlobsDone; blobs++ {
			m.fileDone()
		}
	}})
}

// refreshFile fetches one file's blob from every member, under a storage
// reservation for it.
func (b *Backend) refreshFile(ctx context.Context, gs *groupState, rk key.RecordKey, e blobsync.Entry, progress func(blobsync.Progress)) error {
	release, err := b.reserveStorage(e.Size)
	if err != nil {
		return err
	}
	defer release()
	return b.fetch(ctx, gs, &FileInfo{Name: e.Name, Hash: e.Hash, Size: e.Size, Repo: rk, chunks: e.Chunks}, progress)
}

// refreshMeter adds up the progress of a refresh's downloads, which run
// at once: each reports its own cumulative bytes under its key.
type refreshMeter struct {
	mu    sync.Mutex
	fn    func(RefreshProgress)
	p     RefreshProgress
	parts map[partKey]int64 // bytes each download has verified
}

// partKey names one download of a refresh: entry i of a plan, or (i -1)
// the plan's batch.
type partKey struct {
	p *repoPlan
	i int
}

// part returns the progress function of one download.
func (m *refreshMeter) part(k partKey) func(blobsync.Progress) {
	return func(bp blobsync.Progress) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if d := bp.Done - m.parts[k]; d > 0 {
			m.parts[k] = bp.Done
			m.p.Done = min(m.p.Done+d, m.p.Total)
			m.reportLocked()
		}
	}
}

func (m *refreshMeter) fileDone() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.p.FilesDone = min(m.p.FilesDone+1, m.p.Files)
	m.reportLocked()
}

func (m *refreshMeter) filesDone() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.p.FilesDone
}

// setFilesDone sets the count once a repo is through (the per-file
// counting cannot see every path an entry takes).
func (m *refreshMeter) setFilesDone(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.p.FilesDone = min(n, m.p.Files)
	m.reportLocked()
}

func (m *refreshMeter) report() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reportLocked()
}

func (m *refreshMeter) reportLocked() {
	if m.fn != nil {
		m.fn(m.p)
	}
}
