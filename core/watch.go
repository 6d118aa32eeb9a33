package core

import (
	"context"
	"sync"
	"time"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
)

// Event is something that changed in a group, as the Backend's watches see
// it. Kinds:
//
//	"repo.changed"     a member's repo changed (name or collection); its
//	                   collection has been fetched, so ListFiles shows it
//	"group.members"    a member joined (a repo subkey of the group changed)
type Event struct {
	Kind  string        `json:"kind"`
	Group key.RecordKey `json:"group"`
	Repo  key.RecordKey `json:"repo,omitzero"`
}

// eventBuffer is each subscriber's channel capacity; events beyond it are
// dropped for that subscriber (it can re-list to catch up).
const eventBuffer = 64

// Subscribe returns a channel of events and a function that ends the
// subscription (and closes the channel). A subscriber that does not keep up
// loses events, never blocks the Backend.
func (b *Backend) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, eventBuffer)
	b.evMu.Lock()
	if b.subs == nil {
		b.subs = make(map[chan Event]struct{})
	}
	b.subs[ch] = struct{}{}
	b.evMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.evMu.Lock()
			delete(b.subs, ch)
			b.evMu.Unlock()
			close(ch)
		})
	}
}

func (b *Backend) emit(ev Event) {
	b.evMu.Lock()
	defer b.evMu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// Backoff between attempts to (re)establish a watch.
const (
	watchRetryMin = time.Second
	watchRetryMax = 30 * time.Second
)

// startWatch keeps gs current without polling, until the Backend closes:
// a DHT watch on the group record (members joining) and one on each
// member's repo (name and collection). When a repo's collection changes,
// the new collection blob is fetched at once, so ListFiles reads only local
// state and a new file of a member appears without asking the network.
func (b *Backend) startWatch(gs *groupState) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.watchGroup(b.ctx, gs)
	}()
}

func (b *Backend) watchGroup(ctx context.Context, gs *groupState) {
	repos := make(map[key.RecordKey]bool)
	var wg sync.WaitGroup
	defer wg.Wait()
	retry := watchRetryMin
	for ctx.Err() == nil {
		ch, err := b.dht.Watch(ctx, gs.info.ID, nil)
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
			if b.watchNewRepos(ctx, gs, repos, &wg) {
				b.emit(Event{Kind: "group.members", Group: gs.info.ID})
			}
		}
		b.setWatched(gs, gs.info.ID, false)
	}
}

// watchNewRepos starts a watch on every repo of gs not watched yet; it
// reports whether there was one.
func (b *Backend) watchNewRepos(ctx context.Context, gs *groupState, repos map[key.RecordKey]bool, wg *sync.WaitGroup) bool {
	keys, err := gs.local.RepoKeys(ctx)
	if err != nil {
		b.log.Debug("list repos", "group", gs.info.ID, "err", err)
		return false
	}
	added := false
	for _, rk := range keys {
		if repos[rk] || rk == gs.info.Repo {
			continue
		}
		repos[rk] = true
		added = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.watchRepo(ctx, gs, rk)
		}()
	}
	return added
}

func (b *Backend) watchRepo(ctx context.Context, gs *groupState, rk key.RecordKey) {
	retry := watchRetryMin
	subkeys := []uint32{datarepo.SubkeyName, datarepo.SubkeyCollection}
	for ctx.Err() == nil {
		ch, err := b.dht.Watch(ctx, rk, subkeys)
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
		b.repoChanged(ctx, gs, rk)
		for range ch {
			b.repoChanged(ctx, gs, rk)
		}
		b.setWatched(gs, rk, false)
	}
}

// repoChanged reads repo rk from the local store, fetching its collection
// if it is new, and tells subscribers.
func (b *Backend) repoChanged(ctx context.Context, gs *groupState, rk key.RecordKey) {
	if _, err := b.repoFiles(ctx, gs, rk, true); err != nil {
		b.log.Warn("read changed repo", "group", gs.info.ID, "repo", rk, "err", err)
		return
	}
	b.emit(Event{Kind: "repo.changed", Group: gs.info.ID, Repo: rk})
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
