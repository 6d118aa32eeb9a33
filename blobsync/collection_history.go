package blobsync

import (
	"slices"
	"time"
)

// A name's history: Entry.Versions keeps what the name was before, newest
// first, and a deleted name stays as a tombstone (Collection.Tombstones)
// whose Versions say what it was. Put and Remove keep history; Prune
// drops what a retention lets go. docs/protocol.md, "Collections",
// gives the wire form; docs/design-notes.md, "History", the reasons.

// Current returns e's current version: its own fields (a deletion when e
// is a tombstone).
func (e Entry) Current() Version {
	return Version{Hash: e.Hash, Size: e.Size, Chunks: e.Chunks, CreatedAt: e.CreatedAt,
		ModTime: e.ModTime, MediaType: e.MediaType, Deleted: e.Deleted}
}

// History returns e's versions newest first: index 0 is the current one,
// then e.Versions. Its length is 1 + len(e.Versions).
func (e Entry) History() []Version {
	return append([]Version{e.Current()}, e.Versions...)
}

// Entry returns version v of the file name as an entry without history:
// what HasFile, DownloadFile, ExportFile, OpenFile and FileBlobs take. A
// deletion gives an entry marked Deleted.
func (v Version) Entry(name string) Entry {
	return Entry{Name: name, Hash: v.Hash, Size: v.Size, Chunks: v.Chunks, CreatedAt: v.CreatedAt,
		ModTime: v.ModTime, MediaType: v.MediaType, Deleted: v.Deleted}
}

// sameBytes reports whether two versions hold the same file: both
// deletions, or both the same whole-file hash (however it is stored).
func sameBytes(a, b Version) bool {
	if a.Deleted || b.Deleted {
		return a.Deleted == b.Deleted
	}
	return a.Hash == b.Hash
}

// Lookup returns the entry named name, live or a tombstone (Entry.Deleted).
func (c *Collection) Lookup(name string) (Entry, bool) {
	if e, ok := c.Get(name); ok {
		return e, true
	}
	if i, ok := find(c.Tombstones, name); ok {
		return c.Tombstones[i], true
	}
	return Entry{}, false
}

// Put makes e the current version of e.Name, keeping Entries sorted. The
// name's history is kept: when the name was live with other bytes (another
// whole-file hash), or was deleted, what it was becomes its newest older
// version; with the same bytes only the current fields are replaced (a
// file re-added unchanged adds no version). e.Versions and e.Deleted are
// ignored. Put does not validate e or bound the history (Encode refuses
// more than MaxVersions; Prune drops them); see Prune.
func (c *Collection) Put(e Entry) {
	e.Deleted, e.Versions = false, nil
	if i, ok := find(c.Tombstones, e.Name); ok {
		t := c.Tombstones[i]
		c.Tombstones = slices.Delete(c.Tombstones, i, i+1)
		e.Versions = t.History()
	}
	i, ok := find(c.Entries, e.Name)
	if ok {
		old := c.Entries[i]
		if sameBytes(old.Current(), e.Current()) {
			e.Versions = old.Versions
		} else {
			e.Versions = old.History()
		}
		c.Entries[i] = e
		return
	}
	c.Entries = slices.Insert(c.Entries, i, e)
}

// Remove deletes the live entry named name, now, and reports whether
// there was one: see RemoveAt.
func (c *Collection) Remove(name string) bool {
	return c.RemoveAt(name, time.Now().UTC().Truncate(time.Millisecond))
}

// RemoveAt deletes the live entry named name and reports whether there
// was one. The name leaves Entries and becomes a tombstone deleted at
// at, whose Versions are the entry's history (its current version first).
func (c *Collection) RemoveAt(name string, at time.Time) bool {
	i, ok := find(c.Entries, name)
	if !ok {
		return false
	}
	e := c.Entries[i]
	c.Entries = slices.Delete(c.Entries, i, i+1)
	t := Entry{Name: name, CreatedAt: at, Deleted: true, Versions: e.History()}
	j, _ := find(c.Tombstones, name)
	c.Tombstones = slices.Insert(c.Tombstones, j, t)
	return true
}

// Retention says which older versions a collection keeps (Prune). The
// zero value keeps none; KeepAll keeps every one.
type Retention struct {
	// Keep is the most older versions kept per name, newest first;
	// negative: no bound.
	Keep int
	// MaxAge, when > 0, also drops an older version replaced (by the
	// version after it) more than MaxAge ago; a version whose successor
	// has no time is kept. 0: no bound.
	MaxAge time.Duration
}

// KeepAll keeps every version, the default of an archive of evidence; the
// count is still bounded by MaxVersions per name (see Prune).
var KeepAll = Retention{Keep: -1}

// Prune drops the older versions r does not keep, as of now, and never
// more than MaxVersions per name (the oldest go first). A tombstone left
// with no older version is dropped with them: nothing of the name is
// kept. It returns how many versions it dropped (a dropped tombstone
// counts as one). Blobs only dropped versions named are then garbage
// (Store.GC).
func (c *Collection) Prune(r Retention, now time.Time) int {
	dropped := 0
	for i := range c.Entries {
		dropped += pruneEntry(&c.Entries[i], r, now)
	}
	kept := c.Tombstones[:0]
	for _, t := range c.Tombstones {
		dropped += pruneEntry(&t, r, now)
		if len(t.Versions) == 0 {
			dropped++
			continue
		}
		kept = append(kept, t)
	}
	clear(c.Tombstones[len(kept):])
	c.Tombstones = kept
	return dropped
}

func pruneEntry(e *Entry, r Retention, now time.Time) int {
	n := len(e.Versions)
	if r.Keep >= 0 {
		n = min(n, r.Keep)
	}
	n = min(n, MaxVersions)
	if r.MaxAge > 0 {
		replaced := e.CreatedAt // when the version after Versions[j] was added
		for j := 0; j < n; j++ {
			if !replaced.IsZero() && now.Sub(replaced) > r.MaxAge {
				n = j
				break
			}
			replaced = e.Versions[j].CreatedAt
		}
	}
	dropped := len(e.Versions) - n
	if n == 0 {
		e.Versions = nil
	} else {
		e.Versions = slices.Clip(e.Versions[:n])
	}
	return dropped
}

// KeptFiles calls yield with every stored version the collection keeps,
// as an entry without history (Version.Entry): each live entry's current
// version, then each older version of live entries and tombstones that is
// not a deletion. Several may name the same bytes. It is what a node must
// keep (GC), serve and back up to keep the history readable. It stops
// when yield returns false.
func (c *Collection) KeptFiles(yield func(Entry) bool) {
	for _, e := range c.Entries {
		if !yield(e.Current().Entry(e.Name)) {
			return
		}
	}
	for _, es := range [][]Entry{c.Entries, c.Tombstones} {
		for _, e := range es {
			for _, v := range e.Versions {
				if !v.Deleted && !yield(v.Entry(e.Name)) {
					return
				}
			}
		}
	}
}
