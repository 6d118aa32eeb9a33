package core

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
)

// How the events of events.go are derived from what the node sees.
//
// File events diff a repo's collection against the last one the events
// told of (its baseline), when a watch reports that a member's repo
// changed (watch.go) and after each write of this node's own repo
// (ownRepoChanged). Member events diff the group's list of repos the same
// way when the group's watch fires. Baselines are kept in the store, so a
// change made while this node was off is told once it is back; a repo or
// group never told of before has an empty baseline (every file of a group
// just joined is file.added).

// Store keys of the baselines: + repo key, CBOR repoBaseline; + group key,
// the repo keys of the group concatenated.
const (
	metaEvRepo    = store.PrefixMeta + "ev-repo/"
	metaEvMembers = store.PrefixMeta + "ev-members/"
)

// repoBaseline is what the events last told of a repo.
type repoBaseline struct {
	Hash []byte `cbor:"1,keyasint"` // its collection's hash; empty: none
	Name string `cbor:"2,keyasint"`

	c *blobsync.Collection // the collection of Hash, once read
}

// changeState holds the baselines this run has loaded or made.
type changeState struct {
	mu      sync.Mutex // serialises the diffs, so each change is told once and in order
	repos   map[key.RecordKey]*repoBaseline
	members map[key.RecordKey][]key.RecordKey
}

func (cs *changeState) init() {
	cs.repos = make(map[key.RecordKey]*repoBaseline)
	cs.members = make(map[key.RecordKey][]key.RecordKey)
}

// noteRepo tells subscribers how repo rk of gs changed since its baseline,
// now that it is named name and holds collection c (hash h, zero if none):
// a file event per entry added, removed or changed, then repo.changed.
// Nothing changed, nothing is told.
func (b *Backend) noteRepo(gs *groupState, rk key.RecordKey, name string, h blobsync.Hash, c *blobsync.Collection) {
	cs := &b.changes
	cs.mu.Lock()
	defer cs.mu.Unlock()
	prev := cs.repos[rk]
	if prev == nil {
		prev = b.loadRepoBaseline(rk)
	}
	var hb []byte
	if h != (blobsync.Hash{}) {
		hb = h[:]
	}
	if prev != nil && bytes.Equal(prev.Hash, hb) && prev.Name == name {
		return
	}
	mine := rk == gs.info.Repo
	resync := false
	var old *blobsync.Collection
	switch {
	case prev == nil || len(prev.Hash) == 0:
		old = &blobsync.Collection{}
	case bytes.Equal(prev.Hash, hb):
		old = c
	case prev.c != nil:
		old = prev.c
	default:
		var ph blobsync.Hash
		copy(ph[:], prev.Hash)
		raw, err := b.blobs.ReadAll(ph, datarepo.MaxCollectionSize)
		if err == nil {
			old, err = blobsync.DecodeCollection(raw)
		}
		if err != nil {
			b.log.Warn("events: previous collection unreadable; telling a resync", "group", gs.info.ID, "repo", rk, "err", err)
			resync = true
		}
	}
	if !resync {
		for _, ch := range blobsync.DiffCollections(old, c) {
			b.emitFileChange(gs.info.ID, rk, name, mine, ch)
		}
	}
	b.emit(KindRepoChanged, gs.info.ID, rk, RepoEvent{Name: name, Collection: h, Files: len(c.Entries), Mine: mine, Resync: resync})
	nb := &repoBaseline{Hash: hb, Name: name, c: c}
	cs.repos[rk] = nb
	if raw, err := transport.Marshal(nb); err == nil {
		if err := b.db.Set(store.Key(metaEvRepo, rk[:]), raw, false); err != nil {
			b.log.Debug("events: save repo baseline", "repo", rk, "err", err)
		}
	}
}

func (b *Backend) emitFileChange(g, rk key.RecordKey, repoName string, mine bool, ch blobsync.EntryChange) {
	e, kind := ch.New, KindFileAdded
	switch ch.Op {
	case blobsync.EntryRemoved:
		e, kind = ch.Old, KindFileRemoved
	case blobsync.EntryChanged:
		kind = KindFileChanged
	}
	fe := FileEvent{Name: e.Name, Hash: e.Hash, Size: e.Size, MediaType: e.MediaType, CreatedAt: e.CreatedAt, RepoName: repoName, Mine: mine}
	if ch.Op == blobsync.EntryChanged {
		fe.PrevHash = ch.Old.Hash
	}
	b.emit(kind, g, rk, fe)
}

// loadRepoBaseline reads rk's baseline from the store; nil if none (or
// unreadable: the repo is then told of as new).
func (b *Backend) loadRepoBaseline(rk key.RecordKey) *repoBaseline {
	raw, err := b.db.Get(store.Key(metaEvRepo, rk[:]))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			b.log.Debug("events: load repo baseline", "repo", rk, "err", err)
		}
		return nil
	}
	var rb repoBaseline
	if err := transport.Unmarshal(raw, &rb); err != nil || (len(rb.Hash) != 0 && len(rb.Hash) != len(blobsync.Hash{})) {
		return nil
	}
	return &rb
}

// noteMembers tells subscribers which repos joined or left gs since its
// baseline, now that the group lists keys.
func (b *Backend) noteMembers(gs *groupState, keys []key.RecordKey) {
	cs := &b.changes
	cs.mu.Lock()
	defer cs.mu.Unlock()
	g := gs.info.ID
	prev, ok := cs.members[g]
	if !ok {
		prev = b.loadMembersBaseline(g)
	}
	in := func(ks []key.RecordKey, k key.RecordKey) bool {
		for _, x := range ks {
			if x == k {
				return true
			}
		}
		return false
	}
	changed := len(prev) != len(keys) || !ok
	for _, k := range keys {
		if !in(prev, k) {
			changed = true
			b.emit(KindMemberJoined, g, k, MemberEvent{Mine: k == gs.info.Repo})
		}
	}
	for _, k := range prev {
		if !in(keys, k) {
			changed = true
			b.emit(KindMemberLeft, g, k, MemberEvent{Mine: k == gs.info.Repo})
		}
	}
	if !changed {
		return
	}
	cs.members[g] = append([]key.RecordKey(nil), keys...)
	raw := make([]byte, 0, len(keys)*key.Size)
	for _, k := range keys {
		raw = append(raw, k[:]...)
	}
	if err := b.db.Set(store.Key(metaEvMembers, g[:]), raw, false); err != nil {
		b.log.Debug("events: save members baseline", "group", g, "err", err)
	}
}

func (b *Backend) loadMembersBaseline(g key.RecordKey) []key.RecordKey {
	raw, err := b.db.Get(store.Key(metaEvMembers, g[:]))
	if err != nil || len(raw)%key.Size != 0 {
		return nil
	}
	keys := make([]key.RecordKey, 0, len(raw)/key.Size)
	for i := 0; i < len(raw); i += key.Size {
		keys = append(keys, key.RecordKey(raw[i:i+key.Size]))
	}
	return keys
}

// onWrite turns the DHT's news of this node's writes to its own repos'
// name and collection into publication.state events.
func (b *Backend) onWrite(w dht.WriteEvent) {
	var record string
	switch w.Subkey {
	case datarepo.SubkeyName:
		record = "name"
	case datarepo.SubkeyCollection:
		record = "collection"
	default:
		return
	}
	var state string
	switch w.State {
	case dht.WriteSent:
		state = "published"
	case dht.WriteQueued:
		state = "queued"
	case dht.WriteSuperseded:
		state = "superseded"
	default:
		return
	}
	var g key.RecordKey
	b.mu.Lock()
	for _, gs := range b.groups {
		if gs.info.Repo == w.Key {
			g = gs.info.ID
		}
	}
	b.mu.Unlock()
	if g.IsZero() {
		return // a repo being created: not a group's yet
	}
	b.emit(KindPublicationState, g, w.Key, PublicationEvent{Record: record, Seq: w.Seq, State: state})
}

// downloadEventEvery is the shortest interval between two active
// download.progress events of one download.
const downloadEventEvery = 250 * time.Millisecond

// downloadEvents emits the download.progress events of one download
// described by base: update reports progress (at most one event per
// downloadEventEvery, the first always), end reports the outcome (always
// an event). Safe for concurrent use.
type downloadEvents struct {
	b       *Backend
	g, repo key.RecordKey
	mu      sync.Mutex
	ev      DownloadEvent
	last    time.Time
	sent    bool
}

func (b *Backend) newDownloadEvents(g, repo key.RecordKey, base DownloadEvent) *downloadEvents {
	base.State = "active"
	return &downloadEvents{b: b, g: g, repo: repo, ev: base}
}

func (d *downloadEvents) update(set func(*DownloadEvent)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	set(&d.ev)
	if now := time.Now(); !d.sent || now.Sub(d.last) >= downloadEventEvery {
		d.sent, d.last = true, now
		d.b.emit(KindDownloadProgress, d.g, d.repo, d.ev)
	}
}

func (d *downloadEvents) end(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ev.State = "done"
	if err == nil && d.ev.Op == "get" {
		d.ev.Done = d.ev.Total
	}
	if err != nil {
		d.ev.State, d.ev.Error = "failed", err.Error()
		if errors.Is(err, context.Canceled) {
			d.ev.Error = "cancelled"
		}
	}
	d.b.emit(KindDownloadProgress, d.g, d.repo, d.ev)
}
