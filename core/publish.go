package core

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

// Writes of this node's own repos never wait for the network. A file
// added, removed or a repo renamed is done once the blobs, the new
// collection and the record's new value are in the local store; the
// value's publication to the DHT is queued (in the store, so it survives
// a restart) and sent in the background by the DHT's offline queue
// (internal/dht, queue.go): at once, and while no node takes it again
// one second later, then twice as long each time, at most every 30 s, and
// at once when a node answers or calls. Publications lists what is still
// waiting; publication.state events tell each change (changes.go).
//
// Only the repo's name and collection go this way: its tunnel
// descriptors are written through the network as before, because a
// cleared descriptor at Close is worth something only if it goes out
// before the node is gone.

// ownRecords is the records of this node's own repo: its reads come from
// the local store (the node is the repo's only writer, and keeps every
// value it wrote: records it published never expire locally), its writes
// of the name and collection are queued (dht.SetQueued), and its other
// writes go through the network (records).
type ownRecords struct{ b *Backend }

func (r ownRecords) Set(ctx context.Context, desc *record.Descriptor, subkey uint32, v *record.Value) error {
	if err := r.b.started(); err != nil {
		return err
	}
	switch subkey {
	case datarepo.SubkeyName, datarepo.SubkeyCollection:
		return r.b.curDHT().SetQueued(desc, subkey, v)
	}
	return records(r).Set(ctx, desc, subkey, v)
}

func (r ownRecords) Get(ctx context.Context, k key.RecordKey, subkey uint32) (*record.Descriptor, *record.Value, error) {
	if err := r.b.started(); err != nil {
		return nil, nil, err
	}
	desc, v, err := r.b.curDHT().GetLocal(ctx, k, subkey)
	if errors.Is(err, dht.ErrNotFound) {
		// Not held here (a store from before the repo was made this
		// way): the network has it.
		return records(r).Get(ctx, k, subkey)
	}
	return desc, v, err
}

// Publication states (Publication.State).
const (
	// PublicationQueued: not yet tried, or being sent now.
	PublicationQueued = "queued"
	// PublicationRetrying: a try found no DHT node to take it; it is
	// tried again at NextTry, or as soon as a node answers or calls.
	PublicationRetrying = "retrying"
)

// Publication is a write of this node's own repo in a group that waits to
// be published to the DHT: the repo's collection or its name.
type Publication struct {
	Group  key.RecordKey `json:"group"`
	Repo   key.RecordKey `json:"repo"`
	Record string        `json:"record"` // "collection" or "name"
	Seq    uint64        `json:"seq"`    // the write's sequence number (as publication.state events)
	State  string        `json:"state"`  // PublicationQueued or PublicationRetrying
	Since  time.Time     `json:"since,omitzero"`
	Tries  int           `json:"tries"` // failed tries during this run
	// LastError says why the last try left it waiting.
	LastError string `json:"last_error,omitempty"`
	// NextTry is the next timed try; zero: when a node is seen.
	NextTry time.Time `json:"next_try,omitzero"`
}

// Publications lists the writes of this node's own repos waiting to be
// published, by group and record. It reads the local store only. Before
// Start, and on a node with nothing waiting, it is empty.
func (b *Backend) Publications() []Publication {
	if b.started() != nil {
		return nil
	}
	q, err := b.curDHT().Queue()
	if err != nil {
		b.log.Warn("read the publication queue", "err", err)
	}
	repos := make(map[key.RecordKey]key.RecordKey) // own repo -> its group
	b.mu.Lock()
	for _, gs := range b.groups {
		repos[gs.info.Repo] = gs.info.ID
	}
	b.mu.Unlock()
	out := []Publication{}
	for _, w := range q {
		g, ok := repos[w.Key]
		if !ok {
			continue // not a repo's: a group record, or a group left
		}
		rec := subkeyRecord(w.Subkey)
		if rec == "" {
			continue
		}
		p := Publication{Group: g, Repo: w.Key, Record: rec, Seq: w.Seq, State: PublicationQueued,
			Since: w.Since, Tries: w.Tries, LastError: w.LastError, NextTry: w.NextTry}
		if w.Tries > 0 {
			p.State = PublicationRetrying
		} else {
			p.LastError, p.NextTry = "", time.Time{}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group.String() < out[j].Group.String()
		}
		return out[i].Record < out[j].Record
	})
	return out
}

// subkeyRecord names the subkey of a repo record whose writes are told
// of ("collection", "name"); "" for the others.
func subkeyRecord(subkey uint32) string {
	switch subkey {
	case datarepo.SubkeyName:
		return "name"
	case datarepo.SubkeyCollection:
		return "collection"
	}
	return ""
}

// collectionPending returns the state of the publication of gs's own
// collection, "" if none waits.
func (b *Backend) collectionPending(gs *groupState) string {
	for _, p := range b.Publications() {
		if p.Repo == gs.info.Repo && p.Record == "collection" {
			return p.State
		}
	}
	return ""
}
