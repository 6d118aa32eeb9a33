package blobsync

import "sort"

// RangeSet is a set of chunk groups kept as sorted, disjoint, non-adjacent,
// non-empty ranges (adjacent ranges are merged). The zero value is empty.
// Methods that change the set return the new set; the receiver's backing
// array may be reused, as with append.
type RangeSet []ChunkRange

// Add returns the set with the groups of c added (an empty c changes nothing).
func (rs RangeSet) Add(c ChunkRange) RangeSet {
	if c.Start >= c.End {
		return rs
	}
	// i: first range that ends at or after c.Start (may merge);
	// j: first range that starts after c.End (may not merge).
	i := sort.Search(len(rs), func(k int) bool { return rs[k].End >= c.Start })
	j := sort.Search(len(rs), func(k int) bool { return rs[k].Start > c.End })
	if i < j {
		c.Start = min(c.Start, rs[i].Start)
		c.End = max(c.End, rs[j-1].End)
	}
	if i == j { // insert
		rs = append(rs, ChunkRange{})
		copy(rs[i+1:], rs[i:])
		rs[i] = c
		return rs
	}
	rs[i] = c
	return append(rs[:i+1], rs[j:]...)
}

// Union returns the set with every group of o added.
func (rs RangeSet) Union(o RangeSet) RangeSet {
	for _, c := range o {
		rs = rs.Add(c)
	}
	return rs
}

// Contains reports whether every group of c is in the set (true for an
// empty c).
func (rs RangeSet) Contains(c ChunkRange) bool {
	if c.Start >= c.End {
		return true
	}
	i := sort.Search(len(rs), func(k int) bool { return rs[k].End > c.Start })
	return i < len(rs) && rs[i].Start <= c.Start && rs[i].End >= c.End
}

// Has reports whether group g is in the set.
func (rs RangeSet) Has(g uint64) bool { return rs.Contains(ChunkRange{g, g + 1}) }

// Groups returns the number of groups in the set.
func (rs RangeSet) Groups() uint64 {
	var n uint64
	for _, c := range rs {
		n += c.End - c.Start
	}
	return n
}

// Missing returns the groups of [0, n) that are not in the set, as a new set.
func (rs RangeSet) Missing(n uint64) RangeSet {
	var out RangeSet
	var at uint64
	for _, c := range rs {
		if c.Start >= n {
			break
		}
		if c.Start > at {
			out = append(out, ChunkRange{at, c.Start})
		}
		at = c.End
	}
	if at < n {
		out = append(out, ChunkRange{at, n})
	}
	return out
}

// Intersect returns the groups of c that are in the set, as a new set.
func (rs RangeSet) Intersect(c ChunkRange) RangeSet {
	var out RangeSet
	i := sort.Search(len(rs), func(k int) bool { return rs[k].End > c.Start })
	for ; i < len(rs) && rs[i].Start < c.End; i++ {
		out = append(out, ChunkRange{max(rs[i].Start, c.Start), min(rs[i].End, c.End)})
	}
	return out
}

// Bytes returns how many bytes of a blob of size bytes the set's groups
// cover (the last group may be short; groups past the end count nothing).
func (rs RangeSet) Bytes(size uint64) uint64 {
	var n uint64
	for _, c := range rs {
		n += rangeBytes(c, size)
	}
	return n
}

// rangeBytes returns the bytes of a blob of size bytes in the groups of c.
func rangeBytes(c ChunkRange, size uint64) uint64 {
	lo := min(c.Start*ChunkGroupSize, size)
	hi := min(c.End*ChunkGroupSize, size)
	return hi - lo
}

// valid reports whether rs is sorted, disjoint and without empty ranges
// (adjacent ranges are allowed: a peer may send them).
func (rs RangeSet) valid() bool {
	for i, c := range rs {
		if c.Start >= c.End || (i > 0 && c.Start < rs[i-1].End) {
			return false
		}
	}
	return true
}
