package core

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
)

// Backup mode (Options.Backup, `dweb serve --backup`, docs/backup.md): the
// node keeps a full, verified copy of every repo of every group it belongs
// to and serves it to the members.
//
// One loop per Backend (runBackup) schedules passes; a pass over one group
// lists every repo of the group (fetching collections not yet local, from
// every member through download) and then downloads every file blob the
// node lacks, at most Options.BackupConcurrency blobs at once over all
// groups. A group's passes never overlap: a request for a pass while one
// runs makes one more pass follow it. Passes are requested by
//
//   - the watches (watch.go): a repo.changed or member.joined event
//     (events.go) asks for a quick pass of that group, which reads the
//     records the watches keep current from the local store; a lagged
//     event (the loop fell behind) a full pass of every group;
//   - the periodic full reconciliation, every Options.BackupInterval (the
//     first at start), which reads every record afresh from the DHT;
//   - a group this node joined since the last look (checked every
//     backupTick);
//   - a retry after a pass that left blobs missing, with exponential backoff
//     from backupRetryMin to backupRetryMax (reset by a complete pass).
//
// Every collection and file the passes list is marked servable to the group
// (repoFiles, markServable), so the node is a provider for all of them.
// Downloads resume from the ranges blobsync recorded: a restart or a crash
// loses no verified chunk group.

// Defaults and bounds of backup mode.
const (
	// DefaultBackupInterval is Options.BackupInterval when zero.
	DefaultBackupInterval = 10 * time.Minute
	// DefaultBackupConcurrency is Options.BackupConcurrency when zero.
	DefaultBackupConcurrency = 4

	backupTick     = time.Second      // new groups, due retries
	backupRetryMin = 2 * time.Second  // first retry after a failed pass
	backupRetryMax = 5 * time.Minute  // longest wait between retries
	maxBackupErrs  = 20               // errors kept per group in the status
	backupListWait = 30 * time.Second // bound on reading one repo in a pass
)

// BackupStatus is what a backup node holds and lacks (Backend.BackupStatus,
// GET /dweb/v1/backup/status, `dweb backup status`).
type BackupStatus struct {
	Enabled     bool                `json:"enabled"`      // Options.Backup
	IntervalS   float64             `json:"interval_s"`   // full reconciliation period, seconds
	Concurrency int                 `json:"concurrency"`  // blobs downloaded at once
	Groups      []BackupGroupStatus `json:"groups"`       // by name, then key
	Downloading []BackupDownload    `json:"downloading"`  // blobs in flight now
	Fetched     int64               `json:"fetched"`      // new verified bytes received from members by this process
	Resumed     int64               `json:"resumed"`      // bytes found verified by an earlier run when a download started
	StartedAt   time.Time           `json:"started_at"`   // when the backup loop started
	Passes      int                 `json:"passes"`       // group passes completed since the start
	Errors      int                 `json:"errors_total"` // errors since the start, all groups
	// ErrorsByKind splits Errors: "read_group" (a group record), "read_repo"
	// (a repo's record or collection), "download" (a blob no member could
	// supply, or a failed write), "quota" (a download the storage quota
	// refused).
	ErrorsByKind map[string]int `json:"errors_by_kind"`
	// Quota is Options.StorageQuota in bytes (0: none); StoreBytes the
	// bytes of complete blobs the store keeps, which the quota bounds, as
	// of the last pass or quota check (Backend.StorageUsage; -1: none yet).
	Quota      int64 `json:"quota"`
	StoreBytes int64 `json:"store_bytes"`
}

// BackupGroupStatus is one group's state after its last pass. Files and
// bytes count distinct blobs (a file that two repos hold counts once);
// collections are not counted.
type BackupGroupStatus struct {
	Group key.RecordKey `json:"group"`
	Name  string        `json:"name"`
	Repos int           `json:"repos"` // repos read in the last pass
	// Files and Bytes: every file blob of the group's repos, of every
	// version their history keeps (docs/design-notes.md, "History"); Held and
	// BytesHeld: those this node holds complete and verified; Missing =
	// Files - Held.
	Files     int   `json:"files"`
	Bytes     int64 `json:"bytes"`
	Held      int   `json:"held"`
	BytesHeld int64 `json:"bytes_held"`
	Missing   int   `json:"missing"`
	// Records: the group's records (the group record and every repo's)
	// this node republishes, as if it had written them, so they outlive
	// their writers being offline (docs/dht.md: republish, expiry).
	Records int `json:"records"`
	// Running: a pass is under way.
	Running bool `json:"running"`
	// LastPass is when the last pass ended (zero: none yet); LastComplete
	// when the last pass that left nothing missing and read every repo did.
	LastPass     time.Time `json:"last_pass,omitzero"`
	LastComplete time.Time `json:"last_complete,omitzero"`
	LastPassS    float64   `json:"last_pass_s"` // duration of the last pass, seconds
	// Errors of the last pass (at most 20; the rest are only logged).
	Errors []string `json:"errors"`
	// OverQuota: blobs the last pass did not download because the storage
	// quota was reached (their errors say the quota and the bytes held and
	// needed); they count in Missing.
	OverQuota int `json:"over_quota"`
	// NextRetry: when a pass that failed will be retried (zero: none due).
	NextRetry time.Time `json:"next_retry,omitzero"`
}

// BackupDownload is one blob being downloaded.
type BackupDownload struct {
	Group key.RecordKey `json:"group"`
	Repo  key.RecordKey `json:"repo"`
	Name  string        `json:"name"`
	Hash  blobsync.Hash `json:"hash"`
	Done  int64         `json:"done"`  // bytes verified, including resumed ones
	Total int64         `json:"total"` // bytes in the blob
}

// backupGroup is the loop's bookkeeping of one group. Guarded by
// backupState.mu.
type backupGroup struct {
	running, again bool
	full           bool // the pass asked for reads the DHT afresh
	retry          time.Duration
	retryAt        time.Time
	status         BackupGroupStatus
}

// backupState is the backup loop's state; zero when backup mode is off.
type backupState struct {
	mu        sync.Mutex
	on        bool
	sem       chan struct{} // BackupConcurrency download slots
	kick      chan struct{} // asks the loop to look for new groups now
	groups    map[key.RecordKey]*backupGroup
	inflight  map[*BackupDownload]struct{}
	fetched   int64
	resumed   int64
	passes    int
	errs      int
	errKinds  map[string]int // errs by kind (BackupStatus.ErrorsByKind)
	startedAt time.Time

	republished map[key.RecordKey]bool // records this node now republishes (this process)

	quota quotaState // bytes reserved against Options.StorageQuota (quota.go)

	admin        key.Secret // admin.go; zero: remote administration off
	adminCreated bool       // the secret was created by this start
}

// startBackup starts the backup loop if Options.Backup is set; Close ends
// it with the Backend's context.
func (b *Backend) startBackup() {
	if !b.opts.Backup {
		return
	}
	if b.opts.BackupInterval <= 0 {
		b.opts.BackupInterval = DefaultBackupInterval
	}
	if b.opts.BackupConcurrency <= 0 {
		b.opts.BackupConcurrency = DefaultBackupConcurrency
	}
	bs := &b.bk
	bs.mu.Lock()
	bs.on = true
	bs.sem = make(chan struct{}, b.opts.BackupConcurrency)
	bs.kick = make(chan struct{}, 1)
	bs.groups = make(map[key.RecordKey]*backupGroup)
	bs.inflight = make(map[*BackupDownload]struct{})
	bs.republished = make(map[key.RecordKey]bool)
	bs.errKinds = make(map[string]int)
	bs.startedAt = time.Now().UTC()
	// Until its first pass ends, each group shows what this node verified
	// before: a restart holds its blobs already. The loop's first look
	// passes every group.
	for _, gi := range b.Groups() {
		bs.groups[gi.ID] = &backupGroup{status: b.knownBackupStatus(gi)}
	}
	bs.mu.Unlock()
	if secret, created, err := b.loadAdminSecret(); err != nil {
		b.log.Error("backup: remote administration off", "err", err)
	} else {
		bs.mu.Lock()
		bs.admin, bs.adminCreated = secret, created
		bs.mu.Unlock()
		b.curEP().Handle(transport.ProtoAdmin, b.serveAdmin)
	}
	sub := b.Subscribe(SubscribeOptions{Kinds: []string{KindRepoChanged, KindMemberJoined, KindLagged}})
	if !b.spawn(func(ctx context.Context) {
		defer sub.Close()
		b.runBackup(ctx, sub.C)
	}) {
		sub.Close()
	}
	b.log.Info("backup mode on", "interval", b.opts.BackupInterval, "concurrency", b.opts.BackupConcurrency)
}

// runBackup is the backup loop: it turns watch events, the reconciliation
// period, new groups and due retries into group passes, until ctx ends.
func (b *Backend) runBackup(ctx context.Context, events <-chan Event) {
	full := time.NewTicker(b.opts.BackupInterval)
	defer full.Stop()
	tick := time.NewTicker(backupTick)
	defer tick.Stop()
	b.backupHousekeeping(ctx, true)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			switch ev.Kind {
			case KindRepoChanged, KindMemberJoined:
				b.log.Debug("backup: change seen", "kind", ev.Kind, "group", ev.Group, "repo", ev.Repo)
				b.schedulePass(ctx, ev.Group, false)
			case KindLagged: // changes were missed: look at every group
				b.backupHousekeeping(ctx, true)
			}
		case <-full.C:
			b.backupHousekeeping(ctx, true)
		case <-tick.C:
			b.backupHousekeeping(ctx, false)
		case <-b.bk.kick:
			b.backupHousekeeping(ctx, false)
		}
	}
}

// kickBackup makes the backup loop look for new groups now instead of at
// its next tick (after a join).
func (b *Backend) kickBackup() {
	b.bk.mu.Lock()
	kick := b.bk.kick
	b.bk.mu.Unlock()
	if kick != nil {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}

// backupHousekeeping starts a pass of every group (all: the periodic full
// reconciliation), or of the groups joined since the last look and those
// whose retry is due; it forgets groups this node left.
func (b *Backend) backupHousekeeping(ctx context.Context, all bool) {
	now := time.Now()
	current := make(map[key.RecordKey]bool)
	var due []key.RecordKey
	bs := &b.bk
	bs.mu.Lock()
	for _, gi := range b.Groups() {
		current[gi.ID] = true
		bg, ok := bs.groups[gi.ID]
		switch {
		case !ok:
			bs.groups[gi.ID] = &backupGroup{status: b.knownBackupStatus(gi)}
			due = append(due, gi.ID)
		case all:
			due = append(due, gi.ID)
		case !bg.retryAt.IsZero() && !now.Before(bg.retryAt):
			bg.retryAt = time.Time{}
			due = append(due, gi.ID)
		}
	}
	for g := range bs.groups {
		if !current[g] {
			delete(bs.groups, g)
		}
	}
	bs.mu.Unlock()
	for _, g := range due {
		b.schedulePass(ctx, g, true)
	}
}

// schedulePass starts a pass of group g, or, if one is running, makes one
// more follow it. It is called from the backup loop's goroutine only.
func (b *Backend) schedulePass(ctx context.Context, g key.RecordKey, full bool) {
	bs := &b.bk
	bs.mu.Lock()
	bg, ok := bs.groups[g]
	if !ok {
		bs.mu.Unlock()
		return // not seen by housekeeping yet: it starts a pass within backupTick
	}
	bg.full = bg.full || full
	if bg.running {
		bg.again = true
		bs.mu.Unlock()
		return
	}
	bg.running, bg.status.Running = true, true
	bs.mu.Unlock()
	ok = b.spawn(func(context.Context) {
		for {
			bs.mu.Lock()
			full := bg.full
			bg.full, bg.again = false, false
			bs.mu.Unlock()
			b.backupPass(ctx, g, bg, full)
			bs.mu.Lock()
			if !bg.again || ctx.Err() != nil {
				bg.running, bg.status.Running = false, false
				bs.mu.Unlock()
				return
			}
			bs.mu.Unlock()
		}
	})
	if !ok { // the node is going off the network
		bs.mu.Lock()
		bg.running, bg.status.Running = false, false
		bs.mu.Unlock()
	}
}

// backupFile is one file blob a pass wants.
type backupFile struct {
	fi      FileInfo
	have    bool
	batched bool // asked for in a repo's batch already
}

// repoColl is one repo's collection as a backup pass read it.
type repoColl struct {
	rk key.RecordKey
	h  blobsync.Hash
	c  *blobsync.Collection
}

// backupBatchMax: files of at most this many bytes are fetched in
// children requests, many per request (blobsync.DownloadBatch). A batched
// file is stored whole, so an interrupted one starts again; larger files
// go on their own and resume from their verified ranges.
const backupBatchMax = 1 << 20

// backupPass lists every repo of group g and downloads every file blob not
// held, then records the outcome in bg.status.
func (b *Backend) backupPass(ctx context.Context, g key.RecordKey, bg *backupGroup, full bool) {
	start := time.Now()
	gs, err := b.group(g)
	if err != nil {
		return // left the group
	}
	var errs []string
	var errN, overQuota int
	kinds := make(map[string]int)
	fail := func(kind, format string, args ...any) {
		errN++
		kinds[kind]++
		msg := fmt.Sprintf(format, args...)
		if len(errs) < maxBackupErrs {
			errs = append(errs, msg)
		}
	}

	// Phase 1: every repo's collection (fetched if not local), which also
	// makes the group's blobs servable.
	grp := gs.g
	if !full && b.isWatched(gs, g) {
		grp = gs.local
	}
	known, knownOrder := b.knownRepos(g)
	keys, err := grp.RepoKeys(ctx)
	if err != nil {
		fail("read_group", "read group record: %v", err)
		keys = b.heldRepoKeys(ctx, gs, knownOrder)
	}
	blobs := make(map[blobsync.Hash]*backupFile)
	var order []blobsync.Hash
	var colls []repoColl
	repos := 0
	for _, rk := range keys {
		local := !full && b.isWatched(gs, rk)
		lctx, cancel := context.WithTimeout(ctx, backupListWait)
		name, ch, c, err := b.repoCollection(lctx, gs, rk, local)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fail("read_repo", "read repo %s: %v", rk, err)
			b.log.Warn("backup: read repo", "group", g, "repo", rk, "err", err)
			// Count, and fetch what is missing of, the collection this
			// node verified last.
			kr, ok := known[rk]
			kc, kerr := b.knownCollection(kr, ok)
			if kerr != nil {
				continue
			}
			name, ch, c = kr.Name, kr.Collection, kc
			b.markServable(gs, ch, c)
		}
		repos++
		colls = append(colls, repoColl{rk: rk, h: ch, c: c})
		// Every version the repo keeps, so its history survives the
		// member's device.
		c.KeptFiles(func(e blobsync.Entry) bool {
			fi := b.fileInfo(gs, rk, name, e)
			if _, ok := blobs[fi.Hash]; !ok {
				blobs[fi.Hash] = &backupFile{fi: fi, have: fi.Local}
				order = append(order, fi.Hash)
			}
			return true
		})
	}

	if full {
		b.backupRepublish(ctx, g, keys)
	}

	// Phase 2: each repo's small missing files in children requests (a
	// few streams per member rather than one per file), one repo at a time
	// in a slot of BackupConcurrency; then every blob still missing, up to
	// BackupConcurrency at once over all groups, where each failure is
	// recorded per file.
	for _, rc := range colls {
		var idx []int
		for i, e := range rc.c.Entries {
			if bf := blobs[e.Hash]; bf != nil && !bf.have && !bf.batched && e.Size <= backupBatchMax {
				bf.batched = true
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			continue
		}
		select {
		case b.bk.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		b.backupBatch(ctx, gs, rc, idx, blobs)
		<-b.bk.sem
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, h := range order {
		bf := blobs[h]
		if bf.have {
			continue
		}
		select {
		case b.bk.sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-b.bk.sem }()
			err := b.backupDownload(ctx, gs, bf.fi)
			mu.Lock()
			defer mu.Unlock()
			kind := "download"
			if errors.Is(err, ErrQuota) {
				overQuota++
				kind = "quota"
			}
			if err != nil {
				if ctx.Err() == nil {
					fail(kind, "download %q (%s) of repo %s: %v", bf.fi.Name, bf.fi.Hash, bf.fi.Repo, err)
					b.log.Warn("backup: download", "group", g, "repo", bf.fi.Repo, "file", bf.fi.Name, "hash", bf.fi.Hash, "err", err)
				}
				return
			}
			bf.have = true
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}

	st := BackupGroupStatus{Group: g, Name: gs.info.Name, Repos: repos, Errors: errs, Running: true, OverQuota: overQuota}
	if st.Errors == nil {
		st.Errors = []string{}
	}
	for _, h := range order {
		bf := blobs[h]
		st.Files++
		st.Bytes += bf.fi.Size
		if bf.have {
			st.Held++
			st.BytesHeld += bf.fi.Size
		}
	}
	st.Missing = st.Files - st.Held
	b.refreshStoreBytes()
	b.bk.mu.Lock()
	for _, k := range append([]key.RecordKey{g}, keys...) {
		if b.bk.republished[k] {
			st.Records++
		}
	}
	b.bk.mu.Unlock()
	end := time.Now().UTC()
	st.LastPass, st.LastPassS = end, end.Sub(start).Seconds()

	bs := &b.bk
	bs.mu.Lock()
	bs.passes++
	bs.errs += errN
	for k, n := range kinds {
		bs.errKinds[k] += n
	}
	st.LastComplete = bg.status.LastComplete
	if errN == 0 && st.Missing == 0 {
		st.LastComplete = end
		bg.retry, bg.retryAt = 0, time.Time{}
	} else {
		bg.retry = min(max(2*bg.retry, backupRetryMin), backupRetryMax)
		bg.retryAt = time.Now().Add(bg.retry)
		st.NextRetry = bg.retryAt.UTC()
	}
	bg.status = st
	bs.mu.Unlock()
	level := b.log.Info
	if errN > 0 {
		level = b.log.Warn
	}
	level("backup pass", "group", g, "name", gs.info.Name, "full", full, "repos", repos,
		"files", st.Files, "held", st.Held, "missing", st.Missing, "bytes_held", st.BytesHeld,
		"errors", errN, "took", time.Since(start).Round(time.Millisecond))
}

// backupRepublish makes this node republish the group record g and the
// repo records keys, which it holds locally (a member's store, the
// watches): dht.Set of a value it holds marks the record as written by this
// node, so the DHT re-sends it to its nearest nodes every
// RepublishInterval, and sends it now. Each record is done once per
// process; a failure is logged and retried by the next full pass.
func (b *Backend) backupRepublish(ctx context.Context, g key.RecordKey, keys []key.RecordKey) {
	for _, k := range append([]key.RecordKey{g}, keys...) {
		b.bk.mu.Lock()
		done := b.bk.republished[k]
		b.bk.mu.Unlock()
		if done || ctx.Err() != nil {
			continue
		}
		if err := b.republishRecord(ctx, k); err != nil {
			b.log.Debug("backup: republish record", "group", g, "record", k, "err", err)
			continue
		}
		b.bk.mu.Lock()
		b.bk.republished[k] = true
		b.bk.mu.Unlock()
	}
}

func (b *Backend) republishRecord(ctx context.Context, k key.RecordKey) error {
	desc, v, err := b.curDHT().GetLocal(ctx, k, 0)
	if err != nil {
		return err
	}
	sk := uint32(0)
	for sk+1 < desc.SubkeyCount() && v == nil {
		sk++
		if _, v, err = b.curDHT().GetLocal(ctx, k, sk); err != nil {
			return err
		}
	}
	if v == nil {
		return errors.New("no subkey held locally")
	}
	sctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	return b.curDHT().Set(sctx, desc, sk, v)
}

// backupBatch downloads the entries idx of repo collection rc in children
// requests from every member, under one storage reservation for all of
// them, and marks the files it stored as held. Files it did not get are
// left for the per-file downloads, which report why; a reservation refused
// by the quota leaves them all to those too.
func (b *Backend) backupBatch(ctx context.Context, gs *groupState, rc repoColl, idx []int, blobs map[blobsync.Hash]*backupFile) {
	var total int64
	for _, i := range idx {
		total += rc.c.Entries[i].Size
	}
	release, err := b.reserveStorage(total)
	if err != nil {
		return
	}
	defer release()
	provs, err := b.memberProviders(ctx, gs, []key.RecordKey{rc.rk}, 0)
	if err != nil {
		return
	}
	progress, done := b.trackBackupDownload(&BackupDownload{Group: gs.info.ID, Repo: rc.rk, Name: fmt.Sprintf("%d files of repo %s", len(idx), rc.rk), Hash: rc.h, Total: total})
	left, err := b.blobs.DownloadBatch(ctx, rc.h, rc.c, idx, provs, blobsync.DownloadOptions{Progress: progress, Logger: b.log})
	last := done()
	if err != nil {
		return
	}
	missed := make(map[int]bool, len(left))
	for _, i := range left {
		missed[i] = true
	}
	stored := 0
	for _, i := range idx {
		e := rc.c.Entries[i]
		if missed[i] {
			continue
		}
		if ok, _ := b.blobs.HasFile(e); ok {
			blobs[e.Hash].have = true
			stored++
		}
	}
	b.log.Info("backup: stored batch", "group", gs.info.ID, "repo", rc.rk, "files", stored, "of", len(idx), "bytes", last.Done)
}

// trackBackupDownload lists d among the downloads in flight (BackupStatus)
// and returns the progress function that keeps it current and done, which
// takes it off the list, adds what it fetched and resumed to the totals
// and returns its last progress.
func (b *Backend) trackBackupDownload(d *BackupDownload) (progress func(blobsync.Progress), done func() blobsync.Progress) {
	bs := &b.bk
	bs.mu.Lock()
	bs.inflight[d] = struct{}{}
	bs.mu.Unlock()
	var last blobsync.Progress
	progress = func(p blobsync.Progress) {
		bs.mu.Lock()
		d.Done = p.Done
		if p.Total > 0 {
			d.Total = p.Total
		}
		last = p
		bs.mu.Unlock()
	}
	done = func() blobsync.Progress {
		bs.mu.Lock()
		defer bs.mu.Unlock()
		delete(bs.inflight, d)
		bs.resumed += last.Resumed
		for _, pp := range last.Providers {
			bs.fetched += pp.Bytes
		}
		return last
	}
	return progress, done
}

// backupDownload downloads one file (its blob, or the chunks of a chunked
// file not held) from every member that holds it, reporting progress in
// the status, and marks it servable.
func (b *Backend) backupDownload(ctx context.Context, gs *groupState, fi FileInfo) error {
	release, err := b.reserveStorage(fi.Size)
	if err != nil {
		return err
	}
	defer release()
	progress, done := b.trackBackupDownload(&BackupDownload{Group: gs.info.ID, Repo: fi.Repo, Name: fi.Name, Hash: fi.Hash, Total: fi.Size})
	e := fi.entry()
	err = b.downloadFile(ctx, gs, e, []key.RecordKey{fi.Repo}, progress)
	last := done()
	if err != nil {
		return err
	}
	if ok, herr := b.blobs.HasFile(e); herr != nil || !ok {
		return errors.Join(fmt.Errorf("file %s not in the store after its download", fi.Hash), herr)
	}
	b.markFileServable(gs, e)
	b.log.Info("backup: stored", "group", gs.info.ID, "repo", fi.Repo, "file", fi.Name, "hash", fi.Hash,
		"bytes", fi.Size, "resumed", last.Resumed)
	return nil
}

// BackupStatus reports what the backup loop holds and lacks, per group, as
// of each group's last pass, and the downloads in flight. With backup mode
// off it returns Enabled false and nothing else.
func (b *Backend) BackupStatus() BackupStatus {
	storeBytes := b.lastStoreBytes()
	bs := &b.bk
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if !bs.on {
		return BackupStatus{Groups: []BackupGroupStatus{}, Downloading: []BackupDownload{}, ErrorsByKind: map[string]int{}}
	}
	out := BackupStatus{
		Enabled: true, IntervalS: b.opts.BackupInterval.Seconds(), Concurrency: b.opts.BackupConcurrency,
		Groups: make([]BackupGroupStatus, 0, len(bs.groups)), Downloading: make([]BackupDownload, 0, len(bs.inflight)),
		Fetched: bs.fetched, Resumed: bs.resumed, StartedAt: bs.startedAt, Passes: bs.passes, Errors: bs.errs,
		Quota: b.opts.StorageQuota, StoreBytes: storeBytes, ErrorsByKind: make(map[string]int, len(bs.errKinds)),
	}
	for k, n := range bs.errKinds {
		out.ErrorsByKind[k] = n
	}
	for _, bg := range bs.groups {
		st := bg.status
		st.Errors = append([]string{}, st.Errors...)
		out.Groups = append(out.Groups, st)
	}
	sort.Slice(out.Groups, func(i, j int) bool {
		if out.Groups[i].Name != out.Groups[j].Name {
			return out.Groups[i].Name < out.Groups[j].Name
		}
		return out.Groups[i].Group.String() < out.Groups[j].Group.String()
	})
	for d := range bs.inflight {
		out.Downloading = append(out.Downloading, *d)
	}
	sort.Slice(out.Downloading, func(i, j int) bool { return out.Downloading[i].Name < out.Downloading[j].Name })
	return out
}
