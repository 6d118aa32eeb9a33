package blobsync

// EntryChange is one difference between two collections (DiffCollections):
// an entry added, removed, or whose content changed.
type EntryChange struct {
	Op  ChangeOp
	Old Entry // EntryRemoved, EntryChanged: the entry before; zero for EntryAdded
	New Entry // EntryAdded, EntryChanged: the entry after; zero for EntryRemoved
}

// ChangeOp says what happened to an entry between two collections.
type ChangeOp uint8

// Ops of an EntryChange.
const (
	EntryAdded   ChangeOp = iota + 1 // a name only the new collection has
	EntryRemoved                     // a name only the old collection has
	EntryChanged                     // a name in both, with other content (hash)
)

func (op ChangeOp) String() string {
	switch op {
	case EntryAdded:
		return "added"
	case EntryRemoved:
		return "removed"
	case EntryChanged:
		return "changed"
	}
	return "unknown"
}

// DiffCollections lists what changed from old to new, by name, in name
// order: a name only in new was added, a name only in old was removed, and
// a name in both whose hash differs was changed. A name in both with the
// same hash is no change, even if its times or media type differ (a file
// added again with the same bytes). nil counts as an empty collection.
// Both must be sorted by name and free of duplicates, as Put keeps them and
// DecodeCollection checks; it runs in O(len(old) + len(new)).
func DiffCollections(old, new *Collection) []EntryChange {
	var a, b []Entry
	if old != nil {
		a = old.Entries
	}
	if new != nil {
		b = new.Entries
	}
	var out []EntryChange
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Name < b[j].Name):
			out = append(out, EntryChange{Op: EntryRemoved, Old: a[i]})
			i++
		case i == len(a) || b[j].Name < a[i].Name:
			out = append(out, EntryChange{Op: EntryAdded, New: b[j]})
			j++
		default:
			if a[i].Hash != b[j].Hash {
				out = append(out, EntryChange{Op: EntryChanged, Old: a[i], New: b[j]})
			}
			i++
			j++
		}
	}
	return out
}
