package core

import (
	"context"
	"sync"
	"time"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
)

// Backoff between attempts to (re)establish a watch.
const (
	watchRetryMin = time.Second
	watchRetryMax = 30 * time.Second
)

// startWatch keeps gs current without polling, until the network run ends
// (the node pauses or closes; Resume starts it again):
// a DHT watch on the group record (members joining) and one on each
// member's repo (name and collection). When a repo's collection changes,
// the new collection blob is fetched at once, so ListFiles reads only local
// state and a new file of a member appears without asking the network;
// subscribers hear of each change (changes.go).
func (b *Backend) startWatch(gs *groupState) {
	b.spawn(func(ctx context.Context) { b.watchGroup(ctx, gs) })
}

// startWatchLocked is startWatch with b.mu held.
func (b *Backend) startWatchLocked(gs *groupState) {
	b.spawnLocked(func(ctx context.Context) { b.watchGroup(ctx, gs) })
}

func (b *Backend) watchGroup(ctx context.Context, gs *groupState) {
	repos := make(map[key.RecordKey]bool)
	var wg sync.WaitGroup
	defer wg.Wait()
	retry := watchRetryMin
	for ctx.Err() == nil {
		ch, err := b.curDHT().Watch(ctx, gs.info.ID, nil)
		if err != nil {
			b.log.Debug("watch group", "group", gs.info.ID, "err", err)
			if !sleepCtx(ctx, retry) {
				return
			}
			retry = min(2*retry, watchRetryMax)
			continue
		}
		retry = watchRetryMin
		b.setWatched(gs, gs.info.ID, true)
		b.watchNewRepos(ctx, gs, repos, &wg)
		for range ch {
			b.watchNewRepos(ctx, gs, repos, &wg)
		}
		b.setWatched(gs, gs.info.ID, false)
	}
}

// watchNewRepos accepts a new membership list (refreshMembership), tells subscribers of the members that joined or left gs
// (noteMembers) and starts a watch on every repo of gs not watched yet.
func (b *Backend) watchNewRepos(ctx context.Context, gs *groupState, repos map[key.RecordKey]bool, wg *sync.WaitGroup) {
	b.refreshMembership(ctx, gs, gs.local)
	keys, err := gs.local.RepoKeys(ctx)
	if err != nil {
		b.log.Debug("list repos", "group", gs.info.ID, "err", err)
		return
	}
	b.noteMembers(gs, keys)
	for _, rk := range keys {
		if repos[rk] || rk == gs.info.Repo {
			continue
		}
		repos[rk] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.watchRepo(ctx, gs, rk)
		}()
	}
}

func (b *Backend) watchRepo(ctx context.Context, gs *groupState, rk key.RecordKey) {
	retry := watchRetryMin
	subkeys := []uint32{datarepo.SubkeyName, datarepo.SubkeyCollection}
	for ctx.Err() == nil {
		ch, err := b.curDHT().Watch(ctx, rk, subkeys)
		if err != nil {
			b.log.Debug("watch repo", "group", gs.info.ID, "repo", rk, "err", err)
			if !sleepCtx(ctx, retry) {
				return
			}
			retry = min(2*retry, watchRetryMax)
			continue
		}
		retry = watchRetryMin
		b.setWatched(gs, rk, true)
		// A value this node stored before the watch existed (it may hold
		// the record for the DHT) is never pushed to it: catch up once.
		b.followRepo(ctx, gs, rk, ch)
		b.setWatched(gs, rk, false)
	}
}

// Retries of a change whose collection could not be fetched (its writer
// unreachable for a moment): changeRetries at most, from changeRetryMin,
// doubling. A new push restarts them.
const (
	changeRetries  = 5
	changeRetryMin = 500 * time.Millisecond
)

// followRepo reads repo rk now and at each push on ch, until ch closes. A
// read that fails is tried again a few times, so a change is not lost
// when its collection cannot be fetched at once.
func (b *Backend) followRepo(ctx context.Context, gs *groupState, rk key.RecordKey, ch <-chan dht.Change) {
	var retry <-chan time.Time
	tries, wait := 0, changeRetryMin
	for {
		if b.repoChanged(ctx, gs, rk) {
			retry, tries, wait = nil, 0, changeRetryMin
		} else if tries < changeRetries {
			retry = time.After(wait)
			tries, wait = tries+1, 2*wait
		}
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
			tries, wait = 0, changeRetryMin
		case <-retry:
		case <-ctx.Done():
			return
		}
	}
}

// repoChanged reads repo rk from the local store, fetching its collection
// if it is new, and tells subscribers what changed (noteRepo). It reports
// whether it could.
func (b *Backend) repoChanged(ctx context.Context, gs *groupState, rk key.RecordKey) bool {
	name, h, c, err := b.repoCollection(ctx, gs, rk, true)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("read changed repo", "group", gs.info.ID, "repo", rk, "err", err)
		}
		return false
	}
	b.noteRepo(gs, rk, name, h, c)
	return true
}

func (b *Backend) setWatched(gs *groupState, k key.RecordKey, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k == gs.info.ID {
		gs.groupWatched = on
		return
	}
	gs.watched[k] = on
}

// isWatched reports whether a watch keeps record k of gs current, so its
// local copy can be read instead of the network. This node's own repo is
// written only here, so its local copy is always current.
func (b *Backend) isWatched(gs *groupState, k key.RecordKey) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k == gs.info.ID {
		return gs.groupWatched
	}
	return k == gs.info.Repo || gs.watched[k]
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
