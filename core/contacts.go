package core

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
)

// The DHT contacts a node keeps across restarts, so that it finds the
// network again without its first bootstrap nodes. They are saved at
// Close, after a bootstrap that reached someone, and when an invite brings
// hints, under metaContacts as CBOR [{1: "nodeID@host:port", 2: last seen,
// Unix seconds, 0 unknown}], at most maxContactsKV of them. Contacts that
// answered during this run come first, then the others by when they were
// last seen: a contact that did not answer (the network was down, or it
// was) is kept until better ones push it out, never dropped for that
// alone. Earlier versions saved a plain list of contact strings; it is
// still read.

// savedContact is one saved contact.
type savedContact struct {
	Contact string `cbor:"1,keyasint"`
	Seen    int64  `cbor:"2,keyasint,omitempty"` // last seen, Unix seconds; 0: unknown
}

// contactSeen is a contact with when it was last seen (zero: unknown).
type contactSeen struct {
	c    dht.Contact
	seen time.Time
}

// loadContacts reads the saved contacts, in either format. Entries that
// do not parse, and this node itself, are skipped; a value that decodes
// as neither format is logged and read as none.
func (b *Backend) loadContacts() []contactSeen {
	raw, err := b.db.Get([]byte(metaContacts))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			b.log.Warn("load saved contacts", "err", err)
		}
		return nil
	}
	var saved []savedContact
	if err := transport.Unmarshal(raw, &saved); err != nil {
		var old []string
		if err2 := transport.Unmarshal(raw, &old); err2 != nil {
			b.log.Warn("saved contacts unreadable; starting without them", "err", err)
			return nil
		}
		for _, s := range old {
			saved = append(saved, savedContact{Contact: s})
		}
	}
	var out []contactSeen
	for _, s := range saved {
		c, err := dht.ParseContact(s.Contact)
		if err != nil || c.ID == b.ident.ID() {
			continue
		}
		cs := contactSeen{c: c}
		if s.Seen > 0 {
			cs.seen = time.Unix(s.Seen, 0)
		}
		out = append(out, cs)
	}
	return out
}

// bootstrapContacts merges Options.Bootstrap with the contacts saved by
// earlier runs, so a node that joined through an invite finds the network
// again after a restart.
func (b *Backend) bootstrapContacts() ([]dht.Contact, error) {
	var out []dht.Contact
	for _, s := range b.opts.Bootstrap {
		c, err := dht.ParseContact(s)
		if err != nil {
			return nil, badInput(fmt.Errorf("bootstrap %q: %w", s, err))
		}
		out = append(out, c)
	}
	for _, cs := range b.loadContacts() {
		out = append(out, cs.c)
	}
	return out, nil
}

// saveContacts saves extra (hints just given), the routing table and the
// contacts saved before, merged by mergeContacts.
func (b *Backend) saveContacts(extra ...dht.Contact) {
	var live []contactSeen
	for _, c := range append(extra, b.curDHT().Contacts()...) {
		live = append(live, contactSeen{c: c, seen: b.curDHT().LastSeen(c.ID)})
	}
	merged := mergeContacts(b.ident.ID(), len(extra), live, b.loadContacts(), maxContactsKV)
	saved := make([]savedContact, len(merged))
	for i, cs := range merged {
		saved[i] = savedContact{Contact: cs.c.String()}
		if !cs.seen.IsZero() {
			saved[i].Seen = cs.seen.Unix()
		}
	}
	raw, err := transport.Marshal(saved)
	if err == nil {
		err = b.db.Set([]byte(metaContacts), raw, true)
	}
	if err != nil {
		b.log.Warn("save contacts", "err", err)
	}
}

// mergeContacts returns at most limit contacts, self and duplicates left
// out: the first hints of cur (hints given now) in their order, then the
// contacts of cur seen during this run, most recent first, then every
// other contact of cur and prev by last seen, most recent first (unknown
// last). A contact in both keeps cur's address and the later of the two
// last-seen times.
func mergeContacts(self key.NodeID, hints int, cur, prev []contactSeen, limit int) []contactSeen {
	prevSeen := make(map[key.NodeID]time.Time, len(prev))
	for _, p := range prev {
		prevSeen[p.c.ID] = p.seen
	}
	taken := map[key.NodeID]bool{self: true}
	var out []contactSeen
	take := func(cs contactSeen) {
		if taken[cs.c.ID] || len(out) >= limit {
			return
		}
		taken[cs.c.ID] = true
		if p := prevSeen[cs.c.ID]; p.After(cs.seen) {
			cs.seen = p
		}
		out = append(out, cs)
	}
	byRecent := func(a, b contactSeen) int { return b.seen.Compare(a.seen) }
	hints = min(hints, len(cur))
	for _, cs := range cur[:hints] {
		take(cs)
	}
	var answered, rest []contactSeen
	for _, cs := range cur[hints:] {
		if cs.seen.IsZero() {
			rest = append(rest, cs)
		} else {
			answered = append(answered, cs)
		}
	}
	slices.SortStableFunc(answered, byRecent)
	for _, cs := range answered {
		take(cs)
	}
	for i := range rest {
		rest[i].seen = prevSeen[rest[i].c.ID]
	}
	rest = append(rest, prev...)
	slices.SortStableFunc(rest, byRecent)
	for _, cs := range rest {
		take(cs)
	}
	return out
}
