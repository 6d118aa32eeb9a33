package core

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
)

// The Backend's one event model (DESIGN.md, "One event model in core/"):
// what changed in the groups, as this node learns of it, for apps to hear
// without polling. The CLI (`dweb watch`), the HTTP API (GET
// /dweb/v1/events, Server-Sent Events) and the C ABI's event callback all
// deliver these events, in the JSON shape of Event. changes.go derives
// them from what the watches and this node's own writes see; docs/cli.md
// ("Events") describes every kind for app writers.
//
// Every event has an ID, one more than the last event's, that is unique
// and increasing within a run of the node; a new run starts above every ID
// of the runs before it (the counter starts at the Unix time in
// microseconds), so an ID from an earlier run is recognised as too old to
// resume from. The last EventRing events are kept for resuming
// (SubscribeOptions.Resume). A subscriber that does not keep up never
// slows the node: past its buffer, events are dropped for it and a
// "lagged" event, in their place, says how many.

// Event kinds (Event.Kind).
const (
	// KindFileAdded: a repo of the group has a file it did not have
	// (payload FileEvent). Derived by diffing the repo's previous and new
	// collection, whether a member changed it (seen through the watches)
	// or this node did.
	KindFileAdded = "file.added"
	// KindFileRemoved: a repo no longer has a file (FileEvent: the entry
	// removed).
	KindFileRemoved = "file.removed"
	// KindFileChanged: a repo's file of that name has other content
	// (FileEvent with PrevHash).
	KindFileChanged = "file.changed"
	// KindRepoChanged: a repo's name or collection changed, after the
	// file events of that change (RepoEvent). Resync set: the file events
	// could not be derived; list the repo.
	KindRepoChanged = "repo.changed"
	// KindMemberJoined: a repo was listed in the group (MemberEvent); its
	// name and files follow as repo.changed and file.added once its
	// record is read.
	KindMemberJoined = "member.joined"
	// KindMemberLeft: a repo is no longer listed in the group
	// (MemberEvent). No operation removes a member today; a repo listed
	// for a moment in a slot that another claim won leaves this way.
	KindMemberLeft = "member.left"
	// KindDownloadProgress: a download an app asked for (GetFile,
	// OpenFile, Refresh) made progress, ended or failed (DownloadEvent).
	KindDownloadProgress = "download.progress"
	// KindPublicationState: a write of this node's own repo (its
	// collection or its name) was published to the DHT, queued because
	// no node was reachable, or left the queue superseded; or its tunnel
	// descriptor was published (PublicationEvent).
	KindPublicationState = "publication.state"
	// KindPeerReachable: a member's node answered (PeerEvent): a tunnel
	// to it opened, or it opened one to this node, after this node had
	// told nothing of it or told it unreachable. Event.Repo is the
	// member's repo (one event per repo of the group the node serves;
	// zero when the node opened a tunnel before this node read its
	// descriptor).
	KindPeerReachable = "peer.reachable"
	// KindPeerUnreachable: a member's node stopped answering (PeerEvent):
	// it shut down cleanly (its connection closed with its endpoint), or
	// no path to it opened, after it was told reachable or before
	// anything was told of it. It is told once, until the node answers
	// again.
	KindPeerUnreachable = "peer.unreachable"
	// KindLagged: events were lost for this subscriber (LaggedEvent): it
	// fell behind, or resumed from an ID older than the ring. Re-list what
	// the app shows.
	KindLagged = "lagged"
)

// EventKinds lists every kind, as docs/cli.md describes them.
var EventKinds = []string{
	KindFileAdded, KindFileRemoved, KindFileChanged, KindRepoChanged,
	KindMemberJoined, KindMemberLeft, KindDownloadProgress,
	KindPublicationState, KindPeerReachable, KindPeerUnreachable, KindLagged,
}

// IsEventKind reports whether k is one of EventKinds.
func IsEventKind(k string) bool { return slices.Contains(EventKinds, k) }

// Event is one thing that happened, for apps. Its JSON form is what every
// surface delivers:
//
//	{"id":1771000000000042,"time":"...","kind":"file.added","group":"<key>",
//	 "repo":"<key>","payload":{"name":"a.jpg","hash":"<b3>",...}}
//
// Payload holds the kind's type (a value, not a pointer): FileEvent,
// RepoEvent, MemberEvent, DownloadEvent, PublicationEvent, PeerEvent or
// LaggedEvent;
// UnmarshalJSON restores it by kind.
type Event struct {
	ID      uint64        `json:"id"`
	Time    time.Time     `json:"time"`
	Kind    string        `json:"kind"`
	Group   key.RecordKey `json:"group,omitzero"` // zero for lagged
	Repo    key.RecordKey `json:"repo,omitzero"`  // the repo it is about; zero for lagged, and for a refresh's progress
	Payload any           `json:"payload,omitempty"`
}

// FileEvent is the payload of file.added, file.removed and file.changed.
type FileEvent struct {
	Name      string        `json:"name"`
	Hash      blobsync.Hash `json:"hash"` // the content now; of file.removed, the content removed
	Size      int64         `json:"size"`
	MediaType string        `json:"media_type,omitempty"`
	CreatedAt time.Time     `json:"created_at,omitzero"`
	// PrevHash is, of file.changed, the content before.
	PrevHash blobsync.Hash `json:"prev_hash,omitzero"`
	RepoName string        `json:"repo_name"`
	Mine     bool          `json:"mine"` // in this node's own repo
}

// RepoEvent is the payload of repo.changed.
type RepoEvent struct {
	Name       string        `json:"name"`
	Collection blobsync.Hash `json:"collection,omitzero"` // zero: no collection yet
	Files      int           `json:"files"`
	Mine       bool          `json:"mine"`
	// Resync: the previous collection could not be read, so no file
	// events came with this change; list the repo's files.
	Resync bool `json:"resync,omitempty"`
}

// MemberEvent is the payload of member.joined and member.left; Event.Repo
// is the member's repo.
type MemberEvent struct {
	Mine bool `json:"mine"` // this node's own repo
}

// DownloadEvent is the payload of download.progress.
type DownloadEvent struct {
	Op        string        `json:"op"`             // "get" (GetFile, OpenFile) or "refresh"
	Name      string        `json:"name,omitempty"` // get: the file
	Hash      blobsync.Hash `json:"hash,omitzero"`  // get: its content
	Files     int           `json:"files,omitempty"`
	FilesDone int           `json:"files_done,omitempty"` // refresh: files dealt with, of Files
	Done      int64         `json:"done"`                 // bytes verified and stored
	Total     int64         `json:"total"`                // bytes
	State     string        `json:"state"`                // "active", "done" or "failed"
	Error     string        `json:"error,omitempty"`      // failed: why
}

// PublicationEvent is the payload of publication.state.
type PublicationEvent struct {
	// Record is the subkey of the repo record: "collection", "name", or
	// "tunnel" (this node's tunnel descriptor, which peers dial it by:
	// published at start and resume and when its addresses or relays
	// change; only "published" is told of it).
	Record string `json:"record"`
	Seq    uint64 `json:"seq"` // the write's sequence number; 0 for "tunnel"
	// State: "published" (a DHT node took it), "queued" (none was
	// reachable; it goes out when the network is back, across
	// restarts) or "superseded" (it left the queue unsent: a later
	// write went instead).
	State string `json:"state"`
}

// PeerEvent is the payload of peer.reachable and peer.unreachable;
// Event.Group and Event.Repo name the member.
type PeerEvent struct {
	Node key.NodeID `json:"node"` // the member's node
	// Reason: of peer.reachable, "tunnel" (this node opened a tunnel to
	// it) or "inbound" (it opened one to this node); of
	// peer.unreachable, "shutdown" (it shut down cleanly) or "failed"
	// (no path to it opened: direct addresses and relays).
	Reason string `json:"reason"`
}

// Reasons of PeerEvent.
const (
	PeerTunnel   = "tunnel"
	PeerInbound  = "inbound"
	PeerShutdown = "shutdown"
	PeerFailed   = "failed"
)

// LaggedEvent is the payload of lagged.
type LaggedEvent struct {
	// Reason: "slow" (the subscriber's buffer was full) or "resume" (the
	// ID it resumed from is older than the ring, or from an earlier run).
	Reason string `json:"reason"`
	// Missed counts the events lost, when known (slow: always).
	Missed uint64 `json:"missed,omitempty"`
}

// UnmarshalJSON decodes an event and its payload into the kind's type.
func (e *Event) UnmarshalJSON(b []byte) error {
	type plain Event
	var raw struct {
		plain
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*e = Event(raw.plain)
	e.Payload = nil
	if len(raw.Payload) == 0 || string(raw.Payload) == "null" {
		return nil
	}
	var err error
	switch e.Kind {
	case KindFileAdded, KindFileRemoved, KindFileChanged:
		e.Payload, err = decodePayload[FileEvent](raw.Payload)
	case KindRepoChanged:
		e.Payload, err = decodePayload[RepoEvent](raw.Payload)
	case KindMemberJoined, KindMemberLeft:
		e.Payload, err = decodePayload[MemberEvent](raw.Payload)
	case KindDownloadProgress:
		e.Payload, err = decodePayload[DownloadEvent](raw.Payload)
	case KindPublicationState:
		e.Payload, err = decodePayload[PublicationEvent](raw.Payload)
	case KindPeerReachable, KindPeerUnreachable:
		e.Payload, err = decodePayload[PeerEvent](raw.Payload)
	case KindLagged:
		e.Payload, err = decodePayload[LaggedEvent](raw.Payload)
	default:
		e.Payload = raw.Payload // a kind this build does not know: kept raw
	}
	if err != nil {
		return fmt.Errorf("event %d (%s) payload: %w", e.ID, e.Kind, err)
	}
	return nil
}

func decodePayload[T any](b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// Bounds of the event hub.
const (
	// EventRing is how many recent events the Backend keeps for resuming.
	EventRing = 1024
	// DefaultEventBuffer is SubscribeOptions.Buffer when zero.
	DefaultEventBuffer = 256
	// MaxEventBuffer bounds SubscribeOptions.Buffer.
	MaxEventBuffer = 1 << 16
)

// SubscribeOptions choose what a subscription receives. The zero value:
// every event from now on.
type SubscribeOptions struct {
	// Groups, if not empty, keeps only events of these groups (lagged
	// events always pass).
	Groups []key.RecordKey
	// Kinds, if not empty, keeps only events of these kinds (lagged
	// events always pass).
	Kinds []string
	// Resume replays, first, the kept events with an ID above After that
	// pass the filters. If After is older than the ring (or from an
	// earlier run of the node, or above the last ID), a lagged event
	// (reason "resume") comes first.
	Resume bool
	After  uint64
	// Buffer bounds the events waiting for the subscriber; past it they
	// are dropped, counted in a lagged event. 0: DefaultEventBuffer; at
	// most MaxEventBuffer.
	Buffer int
}

// Subscription is one subscriber's stream of events (Backend.Subscribe).
type Subscription struct {
	// C delivers the events in ID order (lagged events stand in for those
	// dropped). It is closed by Close and when the Backend closes.
	C <-chan Event

	hub    *eventHub
	groups map[key.RecordKey]bool
	kinds  map[string]bool
	buf    int

	mu      sync.Mutex
	queue   []Event
	dropped uint64
	wake    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// eventHub numbers events, keeps the ring and fans events out to the
// subscriptions. It never blocks on a subscriber.
type eventHub struct {
	mu     sync.Mutex
	base   uint64 // IDs of this run are above it
	last   uint64 // the last event's ID; base when none yet
	ring   [EventRing]Event
	subs   map[*Subscription]struct{}
	closed bool
}

func (h *eventHub) init(now time.Time) {
	h.base = uint64(now.UnixMicro())
	h.last = h.base
	h.subs = make(map[*Subscription]struct{})
}

// emit numbers an event and hands it to every subscription whose filter
// it passes. After Close it does nothing.
func (b *Backend) emit(kind string, g, repo key.RecordKey, payload any) {
	h := &b.ev
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.last++
	ev := Event{ID: h.last, Time: time.Now().UTC(), Kind: kind, Group: g, Repo: repo, Payload: payload}
	h.ring[ev.ID%EventRing] = ev
	for s := range h.subs {
		if s.match(ev) {
			s.push(ev)
		}
	}
}

// Subscribe starts a subscription to this node's events (see
// SubscribeOptions); end it with Close. Unknown kinds in o.Kinds are
// ignored (callers check them with IsEventKind). A subscription made after
// the Backend closed has its channel closed at once.
func (b *Backend) Subscribe(o SubscribeOptions) *Subscription {
	out := make(chan Event)
	s := &Subscription{
		C: out, hub: &b.ev, buf: o.Buffer,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if s.buf <= 0 {
		s.buf = DefaultEventBuffer
	}
	s.buf = min(s.buf, MaxEventBuffer)
	if len(o.Groups) > 0 {
		s.groups = make(map[key.RecordKey]bool, len(o.Groups))
		for _, g := range o.Groups {
			s.groups[g] = true
		}
	}
	if len(o.Kinds) > 0 {
		s.kinds = make(map[string]bool, len(o.Kinds))
		for _, k := range o.Kinds {
			s.kinds[k] = true
		}
	}
	h := &b.ev
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		s.once.Do(func() { close(s.done) })
		close(out)
		return s
	}
	if o.Resume {
		s.queue = h.replay(o.After, s.match)
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go s.run(out)
	return s
}

// replay returns the kept events after ID after that keep passes, with a
// lagged event first if events after it are no longer kept. h.mu is held.
func (h *eventHub) replay(after uint64, keep func(Event) bool) []Event {
	kept := min(h.last-h.base, EventRing) // events in the ring
	oldest := h.last - kept + 1           // the first kept ID (last+1 when none)
	var out []Event
	if after+1 < oldest || after > h.last {
		lag := LaggedEvent{Reason: "resume"}
		if after >= h.base && after < h.last {
			lag.Missed = oldest - after - 1
		}
		out = append(out, Event{ID: oldest - 1, Time: time.Now().UTC(), Kind: KindLagged, Payload: lag})
		after = oldest - 1
	}
	for id := after + 1; id <= h.last; id++ {
		if ev := h.ring[id%EventRing]; keep(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// closeEvents ends every subscription; later events are not emitted.
func (b *Backend) closeEvents() {
	h := &b.ev
	h.mu.Lock()
	h.closed = true
	subs := h.subs
	h.subs = nil
	h.mu.Unlock()
	for s := range subs {
		s.stop()
	}
}

// LastEventID returns the ID of the last event emitted (before any: a
// number below every ID this run will give).
func (b *Backend) LastEventID() uint64 {
	b.ev.mu.Lock()
	defer b.ev.mu.Unlock()
	return b.ev.last
}

func (s *Subscription) match(ev Event) bool {
	if ev.Kind == KindLagged {
		return true
	}
	return (s.groups == nil || s.groups[ev.Group]) && (s.kinds == nil || s.kinds[ev.Kind])
}

// push queues ev, or, when the buffer is full, drops it and counts it in
// the lagged event at the queue's end (adding one if needed). Called with
// the hub's lock held; never blocks.
func (s *Subscription) push(ev Event) {
	s.mu.Lock()
	n := len(s.queue)
	switch {
	case n < s.buf:
		s.queue = append(s.queue, ev)
	case n > 0 && isSlowMarker(s.queue[n-1]):
		m := &s.queue[n-1]
		lag := m.Payload.(LaggedEvent)
		lag.Missed++
		m.ID, m.Time, m.Payload = ev.ID, ev.Time, lag
		s.dropped++
	default:
		s.queue = append(s.queue, Event{ID: ev.ID, Time: ev.Time, Kind: KindLagged, Payload: LaggedEvent{Reason: "slow", Missed: 1}})
		s.dropped++
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// isSlowMarker reports whether ev is a lagged event that push made.
func isSlowMarker(ev Event) bool {
	lag, ok := ev.Payload.(LaggedEvent)
	return ev.Kind == KindLagged && ok && lag.Reason == "slow"
}

// run moves queued events to the subscriber's channel until stopped.
func (s *Subscription) run(out chan<- Event) {
	defer close(out)
	for {
		s.mu.Lock()
		var ev Event
		ok := len(s.queue) > 0
		if ok {
			ev = s.queue[0]
			s.queue[0] = Event{}
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-s.done:
				return
			}
		}
		select {
		case out <- ev:
		case <-s.done:
			return
		}
	}
}

// Dropped returns how many events this subscription lost because it fell
// behind.
func (s *Subscription) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close ends the subscription; C is closed soon after (events still
// queued are discarded). Safe to call more than once.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
	s.stop()
}

func (s *Subscription) stop() {
	s.once.Do(func() { close(s.done) })
}
