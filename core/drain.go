package core

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
)

// Draining (`dweb drain`, docs/backup.md "Draining"): before a node leaves
// a group or shuts down for good, it makes sure that every blob of the
// group it holds (every collection and file the group's repos reference)
// is held complete by another member's node too, asking other backup
// servers to fetch the ones nobody else holds, and reports what it could
// not place.
//
// A drain of one group:
//
//  1. lists the group's repos afresh from the DHT and, for each, its
//     current collection and files; the blobs this node holds complete are
//     the ones checked;
//  2. asks every other member node (a tunnel as for a download, one per
//     node) with blobsync have-queries which of them it holds complete;
//  3. sends the blobs nobody else holds to every backup server named in
//     DrainOptions.To with the admin operation "fetch" (docs/backup.md:
//     the server fetches them from the group's members, this node
//     included, verified, and serves them to the group);
//  4. repeats the have-queries of step 2 for those blobs until each is held
//     elsewhere or DrainOptions.Wait has passed: only a holder's answer
//     counts as handed over, never the fetch request alone.
//
// A blob that is still held by nobody else is reported with the reason.

// Defaults and bounds of draining.
const (
	// DefaultDrainWait is DrainOptions.Wait when zero.
	DefaultDrainWait = 5 * time.Minute

	maxFetchHashes  = 256                    // hashes per admin fetch request (fits maxAdminRequest)
	drainDialWait   = 10 * time.Second       // bound on opening a tunnel to one member
	drainHaveWait   = 30 * time.Second       // bound on the have-queries on one tunnel
	drainPollMin    = 200 * time.Millisecond // first wait between confirmation rounds
	drainPollMax    = 5 * time.Second        // longest wait between confirmation rounds
	adminFetchWait  = 30 * time.Minute       // bound on a server's downloads for one fetch request
	maxDrainReasons = 1000                   // unplaced blobs listed per group (the count is exact)
)

// DrainOptions says what Backend.Drain drains and where to.
type DrainOptions struct {
	// Group is the group to drain (zero: every group this node is in).
	Group key.RecordKey
	// To lists admin URIs (dweb+admin:) of other backup servers that are
	// members of the group(s): blobs no other member holds are handed to
	// them. Empty: the drain only checks and reports.
	To []string
	// Leave makes the node leave every drained group whose drain was
	// complete (DrainGroup.Complete); a group with unplaced blobs or
	// errors is kept.
	Leave bool
	// Wait bounds how long the drain waits for the servers of To to hold
	// the blobs they were given (0: DefaultDrainWait).
	Wait time.Duration
}

// DrainReport is the outcome of Backend.Drain (POST /dweb/v1/drain,
// `dweb drain --json`).
type DrainReport struct {
	Groups []DrainGroup `json:"groups"` // by name, then key
	// Complete: every group's drain was complete.
	Complete bool `json:"complete"`
}

// DrainGroup is the drain of one group. Checked = HeldElsewhere +
// HandedOver + len(Unplaced) when Unplaced is not clipped (it holds at most
// 1000 blobs; UnplacedN is the exact count).
type DrainGroup struct {
	Group key.RecordKey `json:"group"`
	Name  string        `json:"name"`
	// Checked: blobs (collections and files) of the group's repos this
	// node holds complete.
	Checked int `json:"checked"`
	// HeldElsewhere: of Checked, those another member's node already held
	// complete.
	HeldElsewhere int `json:"held_elsewhere"`
	// HandedOver: of Checked, those a backup server of DrainOptions.To
	// fetched on request and then confirmed holding.
	HandedOver int `json:"handed_over"`
	// Unplaced: blobs no other node was found holding, with the reason.
	Unplaced  []DrainBlob `json:"unplaced"`
	UnplacedN int         `json:"unplaced_n"`
	// Errors: what made the drain unsure (a repo or the member list that
	// could not be read) and, when blobs stay unplaced, the backup servers
	// that refused them or could not be reached (at most 20).
	Errors []string `json:"errors"`
	// Complete: no blob unplaced and no error: this node is not the last
	// holder of anything the group references.
	Complete bool `json:"complete"`
	// Left: the node left the group after the drain (DrainOptions.Leave).
	Left bool `json:"left"`
}

// DrainBlob is one blob of a drained group.
type DrainBlob struct {
	Hash   blobsync.Hash `json:"hash"`
	Name   string        `json:"name"` // the file's name, or "collection of repo KEY"
	Repo   key.RecordKey `json:"repo_key"`
	Size   int64         `json:"size"`
	Reason string        `json:"reason,omitempty"`
}

// Drain drains opts.Group (or every group) as described above and returns
// the report; a group's problems are in its report, not the error. Errors:
// ErrUnknownGroup; BadInputError for a malformed admin URI in opts.To;
// the context's error.
func (b *Backend) Drain(ctx context.Context, opts DrainOptions) (DrainReport, error) {
	if opts.Wait <= 0 {
		opts.Wait = DefaultDrainWait
	}
	var targets []*AdminClient
	defer func() {
		for _, c := range targets {
			c.Close()
		}
	}()
	for _, s := range opts.To {
		c, err := DialAdmin(s, b.log)
		if err != nil {
			return DrainReport{}, err
		}
		if c.u.Node == b.NodeID() {
			c.Close()
			return DrainReport{}, badInput(errors.New("an admin URI of --to names this node itself"))
		}
		targets = append(targets, c)
	}
	var groups []GroupInfo
	if opts.Group.IsZero() {
		groups = b.Groups()
	} else {
		gs, err := b.group(opts.Group)
		if err != nil {
			return DrainReport{}, err
		}
		groups = []GroupInfo{gs.info}
	}
	rep := DrainReport{Groups: []DrainGroup{}, Complete: true}
	for _, gi := range groups {
		dg := b.drainGroup(ctx, gi, targets, opts.Wait)
		if ctx.Err() != nil {
			return DrainReport{}, ctx.Err()
		}
		if dg.Complete && opts.Leave {
			if err := b.LeaveGroup(ctx, gi.ID); err != nil {
				dg.Errors = append(dg.Errors, fmt.Sprintf("leave: %v", err))
			} else {
				dg.Left = true
			}
		}
		rep.Complete = rep.Complete && dg.Complete
		rep.Groups = append(rep.Groups, dg)
	}
	sort.Slice(rep.Groups, func(i, j int) bool {
		if rep.Groups[i].Name != rep.Groups[j].Name {
			return rep.Groups[i].Name < rep.Groups[j].Name
		}
		return rep.Groups[i].Group.String() < rep.Groups[j].Group.String()
	})
	return rep, nil
}

func (b *Backend) drainGroup(ctx context.Context, gi GroupInfo, targets []*AdminClient, wait time.Duration) (dg DrainGroup) {
	dg = DrainGroup{Group: gi.ID, Name: gi.Name, Unplaced: []DrainBlob{}, Errors: []string{}}
	fail := func(format string, args ...any) {
		if len(dg.Errors) < maxBackupErrs {
			dg.Errors = append(dg.Errors, fmt.Sprintf(format, args...))
		}
	}
	defer func() {
		dg.Complete = dg.UnplacedN == 0 && len(dg.Errors) == 0
		b.log.Info("drain", "group", gi.ID, "name", gi.Name, "checked", dg.Checked, "held_elsewhere", dg.HeldElsewhere,
			"handed_over", dg.HandedOver, "unplaced", dg.UnplacedN, "errors", len(dg.Errors))
	}()
	gs, err := b.group(gi.ID)
	if err != nil {
		fail("%v", err)
		return dg
	}

	// 1. The group's blobs this node holds.
	blobs, order, errs := b.drainBlobs(ctx, gs)
	for _, e := range errs {
		fail("%v", e)
	}
	dg.Checked = len(order)
	if len(order) == 0 {
		return dg
	}

	// 2. Who else holds them.
	pending := append([]blobsync.Hash(nil), order...)
	held, err := b.heldElsewhere(ctx, gs, blobs, pending)
	if err != nil {
		fail("list the group's members: %v", err)
	}
	pending = without(pending, held)
	dg.HeldElsewhere = len(order) - len(pending)

	// 3. Hand the rest to the backup servers named.
	reason := map[blobsync.Hash]string{}
	if len(pending) > 0 && len(targets) == 0 {
		for _, h := range pending {
			reason[h] = "no other member's node holds it, and no backup server was named to hand it to (--to)"
		}
	}
	asked := 0
	var refused []string // reported only if something stays unplaced
	if len(pending) > 0 && len(targets) > 0 {
		for _, c := range targets {
			if err := c.Fetch(ctx, gi.ID.String(), pending); err != nil {
				refused = append(refused, fmt.Sprintf("ask %s to fetch %d blobs: %v", c.u.Node, len(pending), err))
				continue
			}
			asked++
		}
		if asked == 0 {
			for _, h := range pending {
				reason[h] = "no other member's node holds it, and no backup server named accepted it"
			}
		}
	}

	// 4. Wait until a holder confirms each.
	if asked > 0 {
		deadline := time.Now().Add(wait)
		poll := drainPollMin
		for len(pending) > 0 && ctx.Err() == nil {
			held, err := b.heldElsewhere(ctx, gs, blobs, pending)
			if err != nil {
				b.log.Debug("drain: confirm", "group", gi.ID, "err", err)
			}
			dg.HandedOver += len(held)
			pending = without(pending, held)
			if len(pending) == 0 || !time.Now().Add(poll).Before(deadline) {
				break
			}
			if !sleepCtx(ctx, poll) {
				break
			}
			poll = min(2*poll, drainPollMax)
		}
		for _, h := range pending {
			reason[h] = fmt.Sprintf("no node confirmed holding it within %v of the fetch request", wait)
		}
	}
	if len(pending) > 0 {
		for _, e := range refused {
			fail("%s", e)
		}
	}
	for _, h := range pending {
		dg.UnplacedN++
		if len(dg.Unplaced) < maxDrainReasons {
			db := *blobs[h]
			db.Reason = reason[h]
			dg.Unplaced = append(dg.Unplaced, db)
		}
	}
	return dg
}

// without returns hs minus the hashes in drop, in order.
func without(hs []blobsync.Hash, drop map[blobsync.Hash]bool) []blobsync.Hash {
	out := hs[:0:0]
	for _, h := range hs {
		if !drop[h] {
			out = append(out, h)
		}
	}
	return out
}

// drainBlobs lists the blobs of gs's repos (collections and every version
// their histories keep; a chunked file's chunk list and chunks) that this
// node holds complete, read afresh from the DHT. errs lists the repos
// that could not be read (their blobs are not checked).
func (b *Backend) drainBlobs(ctx context.Context, gs *groupState) (map[blobsync.Hash]*DrainBlob, []blobsync.Hash, []error) {
	blobs := make(map[blobsync.Hash]*DrainBlob)
	var order []blobsync.Hash
	var errs []error
	add := func(db DrainBlob) {
		if _, ok := blobs[db.Hash]; ok {
			return
		}
		if ok, _ := b.blobs.Has(db.Hash); !ok {
			return
		}
		blobs[db.Hash] = &db
		order = append(order, db.Hash)
	}
	keys, err := gs.g.RepoKeys(ctx)
	if err != nil {
		return nil, nil, []error{fmt.Errorf("read group record: %w", err)}
	}
	for _, rk := range keys {
		lctx, cancel := context.WithTimeout(ctx, backupListWait)
		// Every version the repo's history keeps, not only current files.
		var files []FileInfo
		name, _, c, err := b.repoCollection(lctx, gs, rk, false)
		if err == nil {
			c.KeptFiles(func(e blobsync.Entry) bool {
				files = append(files, b.fileInfo(gs, rk, name, e))
				return true
			})
		}
		var ch blobsync.Hash
		var ok bool
		if err == nil {
			var r *datarepo.Repo
			if r, err = b.openRepo(lctx, gs, rk); err == nil {
				ch, ok, err = r.CollectionHash(lctx)
			}
		}
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("read repo %s: %w", rk, err))
			continue
		}
		if ok {
			size, _ := b.blobs.Size(ch)
			add(DrainBlob{Hash: ch, Name: "collection of repo " + rk.String(), Repo: rk, Size: size})
		}
		for _, fi := range files {
			if fi.chunks.IsZero() {
				add(DrainBlob{Hash: fi.Hash, Name: fi.Name, Repo: rk, Size: fi.Size})
				continue
			}
			// A chunked file is placed blob by blob: its chunk list and each
			// chunk, which other files and versions may share.
			b.blobs.FileBlobs(fi.entry(), func(h blobsync.Hash) bool {
				name := "chunk of " + fi.Name
				if h == fi.chunks {
					name = "chunk list of " + fi.Name
				}
				size, _ := b.blobs.Size(h)
				add(DrainBlob{Hash: h, Name: name, Repo: rk, Size: size})
				return true
			})
		}
	}
	return blobs, order, errs
}

// heldElsewhere asks every other member node of gs which of hs it holds
// complete (have-queries over one tunnel per node, nodes queried one after
// the other); a node that cannot be reached holds nothing. The error is
// only about listing the members.
func (b *Backend) heldElsewhere(ctx context.Context, gs *groupState, blobs map[blobsync.Hash]*DrainBlob, hs []blobsync.Hash) (map[blobsync.Hash]bool, error) {
	held := make(map[blobsync.Hash]bool)
	members, err := gs.g.Providers(ctx, nil, b.NodeID())
	if err != nil {
		return held, err
	}
	for _, m := range members {
		var ask []blobsync.Hash
		for _, h := range hs {
			if !held[h] {
				ask = append(ask, h)
			}
		}
		if len(ask) == 0 || ctx.Err() != nil {
			break
		}
		p := &memberProvider{b: b, gs: gs, td: m.Tunnel}
		dctx, cancel := context.WithTimeout(ctx, drainDialWait)
		rw, err := p.Open(dctx)
		cancel()
		if err != nil {
			b.log.Debug("drain: reach member", "group", gs.info.ID, "node", m.Tunnel.Node, "err", err)
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, drainHaveWait)
		for _, h := range ask {
			size, ranges, err := blobsync.Have(hctx, rw, h)
			if errors.Is(err, blobsync.ErrNotFound) {
				continue
			}
			if err != nil {
				b.log.Debug("drain: have", "group", gs.info.ID, "node", m.Tunnel.Node, "hash", h, "err", err)
				break // the stream may be out of step: next node
			}
			if want := uint64(blobs[h].Size); uint64(size) == want && ranges.Bytes(want) == want {
				held[h] = true
			}
		}
		cancel()
		rw.Close()
	}
	return held, nil
}

// Fetch asks the backup server to fetch blobs of a group it is a member of
// (group: its key or a name unique on the server) from the group's members
// and serve them to the group (admin operation "fetch"). The server
// answers at once and downloads afterwards, only hashes that its group's
// repos reference; confirm with have-queries. hashes is sent in requests
// of at most 256. Errors: as List; *AdminError 400 for no hashes, 404 for
// a group the server is not in.
func (c *AdminClient) Fetch(ctx context.Context, group string, hashes []blobsync.Hash) error {
	if len(hashes) == 0 {
		return badInput(errors.New("no blobs to fetch"))
	}
	for len(hashes) > 0 {
		n := min(len(hashes), maxFetchHashes)
		if _, err := c.do(ctx, adminRequest{Op: "fetch", Group: group, Hashes: hashes[:n]}); err != nil {
			return err
		}
		hashes = hashes[n:]
	}
	return nil
}

// adminFetch downloads the blobs of a checked fetch request that this
// node lacks, refreshConcurrency at a time, each from every member of the
// group at once, and makes them servable to the group. Only hashes that the group's
// repos reference are fetched (anything else is skipped and logged): the
// request cannot make a blob of another group servable here. Bounded by
// adminFetchWait and the Backend's life.
func (b *Backend) adminFetch(req adminRequest) {
	gi, err := b.ResolveGroup(req.Group)
	if err != nil {
		return
	}
	gs, err := b.group(gi.ID)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(b.runCtx(), adminFetchWait)
	defer cancel()
	servable := func(h blobsync.Hash) bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return gs.servable[h]
	}
	listed := false
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, refreshConcurrency)
	for _, h := range req.Hashes {
		if ctx.Err() != nil {
			return
		}
		if !servable(h) && !listed {
			// Not seen yet: list the group afresh (marks what it references).
			listed = true
			if keys, err := gs.g.RepoKeys(ctx); err == nil {
				for _, rk := range keys {
					lctx, lcancel := context.WithTimeout(ctx, backupListWait)
					if _, err := b.repoFiles(lctx, gs, rk, false); err != nil {
						b.log.Debug("admin fetch: read repo", "group", gi.ID, "repo", rk, "err", err)
					}
					lcancel()
				}
			}
		}
		if !servable(h) {
			b.log.Warn("admin fetch: not a blob of the group, skipped", "group", gi.ID, "hash", h)
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := b.download(ctx, gs, h, 0, nil, nil); err != nil {
				b.log.Warn("admin fetch: download", "group", gi.ID, "hash", h, "err", err)
				return
			}
			b.log.Info("admin fetch: stored", "group", gi.ID, "hash", h)
		})
	}
}
