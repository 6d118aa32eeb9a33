package group

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/uri"
	"github.com/fxamacker/cbor/v2"
	"github.com/zeebo/blake3"
)

// Role is what a member may do in a group (docs/trust.md, "Member keys
// and the membership list").
type Role uint8

const (
	// RoleViewer reads and holds the group's files and writes nothing: no
	// repo slot (a backup server, a follower).
	RoleViewer Role = 1
	// RoleMember also writes its own repo, in the slot the list gives it.
	RoleMember Role = 2
	// RoleAdmin also signs membership changes: adds, removals, roles.
	RoleAdmin Role = 3
)

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleMember:
		return "member"
	case RoleAdmin:
		return "admin"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// ParseRole reads "viewer", "member" or "admin".
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{RoleViewer, RoleMember, RoleAdmin} {
		if s == r.String() {
			return r, nil
		}
	}
	return 0, fmt.Errorf("%w: role %q: want viewer, member or admin", ErrBadMembership, s)
}

// Membership limits.
const (
	// MaxMembers is the most members a list holds: MaxRepos writers, and
	// as many viewers.
	MaxMembers = 2 * MaxRepos
	// MaxMemberName is the longest display name, in bytes; sealed, it
	// takes 40 bytes more.
	MaxMemberName = 256
	// MaxMeta is the longest group metadata (JSON of Meta), in bytes;
	// sealed, it takes 40 bytes more.
	MaxMeta = 1024
	// sealOverhead is what sealWith adds: a nonce and a tag.
	sealOverhead = 24 + 16
	// maxEncodedMembership bounds a list's encoding: it is one subkey value.
	maxEncodedMembership = 32 << 10
)

// ErrBadMembership is wrapped by every error of decoding or checking a
// membership list.
var ErrBadMembership = errors.New("group: bad membership list")

const membershipContext = "dweb membership v1\x00"

// MemberEntry is one entry of a membership list: a device's member key
// (uri.Contact: signing key, X25519 key and the signature binding them),
// its role and repo slot, who added it and in which epoch, the list's
// epoch key sealed to it, and its display name sealed under that key.
type MemberEntry struct {
	Sign    []byte `cbor:"1,keyasint"`           // ed25519 public key, 32 bytes
	Box     []byte `cbor:"2,keyasint"`           // X25519 public key, 32 bytes
	BoxSig  []byte `cbor:"3,keyasint"`           // the contact signature, 64 bytes
	Role    Role   `cbor:"4,keyasint"`           //
	Slot    uint32 `cbor:"5,keyasint"`           // repo subkey; 0 for a viewer
	AddedBy []byte `cbor:"6,keyasint"`           // the admin's signing key, 32 bytes
	AddedIn uint64 `cbor:"7,keyasint"`           // epoch it was added in
	Name    []byte `cbor:"8,keyasint,omitempty"` // display name, sealed (MemberName)
	Key     []byte `cbor:"9,keyasint"`           // the list's epoch key sealed to Box, EpochKeyBoxSize bytes
	// Expires, for a bearer invite's entry (invite.go), is when the invite
	// stops working, in Unix seconds; 0 for a member's own key.
	Expires int64 `cbor:"10,keyasint,omitempty"`
	// From, for an entry that took another's over (Replace: a used
	// bearer invite, a member's new device), is the signing key of the
	// entry it replaced: readers take the slot's value from either key
	// until this member writes it again (the holders take new writes from
	// this member only).
	From []byte `cbor:"11,keyasint,omitempty"`
}

// Invite reports whether the entry is a bearer invite's, not yet taken
// over by the member that used it.
func (m MemberEntry) Invite() bool { return m.Expires != 0 }

// Contact is the member's key as a contact code.
func (m MemberEntry) Contact() uri.Contact {
	return uri.Contact{Sign: ed25519.PublicKey(m.Sign), Box: [32]byte(m.Box), Sig: m.BoxSig}
}

// Membership is a group's membership list, one version of it: the value
// of the group record's membership subkey, signed by an admin. Each
// version names the hash of the one before (Prev), so a member that holds
// version n can check that version n+1 was made from it by an admin of n
// (CheckNext). Epoch counts removals: a list that drops a member starts
// the next epoch (new group keys, not sealed to the removed member).
// Each version carries the epoch key sealed to each member, the earlier
// epochs' keys and the group's metadata sealed under it (epoch.go).
//
// Encoding: deterministic CBOR (RFC 8949 §4.2.1) with small integer map
// keys; the signature is ed25519 (RFC 8032) over "dweb membership
// v1\x00" || the encoding with Sig empty.
type Membership struct {
	Group   []byte        `cbor:"1,keyasint"`           // the group's record key
	Version uint64        `cbor:"2,keyasint"`           // 0 for the first list, then +1 per change
	Epoch   uint64        `cbor:"3,keyasint"`           //
	Prev    []byte        `cbor:"4,keyasint,omitempty"` // BLAKE3-256 of the previous version's encoding
	Members []MemberEntry `cbor:"5,keyasint"`           // sorted by Sign
	Signer  []byte        `cbor:"6,keyasint"`           // an admin's signing key
	Sig     []byte        `cbor:"7,keyasint"`           //
	Meta    []byte        `cbor:"8,keyasint,omitempty"` // the group's Meta as JSON, sealed (OpenMeta)
	Chain   []byte        `cbor:"9,keyasint,omitempty"` // earlier epochs' keys, sealed; none in epoch 0
}

var (
	memEnc cbor.EncMode
	memDec cbor.DecMode
)

func init() {
	var err error
	if memEnc, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic("group: cbor EncMode: " + err.Error())
	}
	if memDec, err = (cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  4,
		MaxArrayElements: MaxMembers,
		MaxMapPairs:      16,
	}).DecMode(); err != nil {
		panic("group: cbor DecMode: " + err.Error())
	}
}

// Encode returns the list's deterministic encoding.
func (l *Membership) Encode() ([]byte, error) {
	b, err := memEnc.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("group: encode membership: %w", err)
	}
	return b, nil
}

// Hash is BLAKE3-256 of the encoding: what the next version's Prev names.
func (l *Membership) Hash() ([32]byte, error) {
	b, err := l.Encode()
	if err != nil {
		return [32]byte{}, err
	}
	return blake3.Sum256(b), nil
}

func (l *Membership) signed() ([]byte, error) {
	c := *l
	c.Sig = nil
	b, err := c.Encode()
	if err != nil {
		return nil, err
	}
	return append([]byte(membershipContext), b...), nil
}

// DecodeMembership parses an encoded list of at most 32 KiB, in its
// deterministic encoding only (one list, one byte string), and checks
// its shape and its own rules (Check); it does not say whether the signer
// may sign it: that is CheckGenesis's or CheckNext's. Errors wrap
// ErrBadMembership.
func DecodeMembership(b []byte) (*Membership, error) {
	if len(b) > maxEncodedMembership {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadMembership, len(b), maxEncodedMembership)
	}
	var l Membership
	if err := memDec.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMembership, err)
	}
	if again, err := l.Encode(); err != nil || !bytes.Equal(again, b) {
		return nil, fmt.Errorf("%w: not in deterministic encoding", ErrBadMembership)
	}
	if err := l.Check(); err != nil {
		return nil, err
	}
	return &l, nil
}

// Member returns the entry of the member whose signing key is sign.
func (l *Membership) Member(sign []byte) (MemberEntry, bool) {
	i, ok := slices.BinarySearchFunc(l.Members, sign, func(m MemberEntry, s []byte) int { return bytes.Compare(m.Sign, s) })
	if !ok {
		return MemberEntry{}, false
	}
	return l.Members[i], true
}

// Check verifies the list on its own: sizes, members sorted and unique,
// each contact signature, roles, slots (a writer's slot within the
// group's repo subkeys and unique, a viewer's 0), at least one admin, a
// signer who is an admin of this list or of the previous one (CheckNext
// says which), and the signature.
func (l *Membership) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadMembership}, args...)...)
	}
	switch {
	case len(l.Group) != key.Size:
		return bad("group key of %d bytes", len(l.Group))
	case l.Prev != nil && len(l.Prev) != 32:
		return bad("previous hash of %d bytes", len(l.Prev))
	case l.Version == 0 && l.Prev != nil:
		return bad("version 0 names a previous version")
	case l.Version > 0 && l.Prev == nil:
		return bad("version %d names no previous version", l.Version)
	case len(l.Members) == 0 || len(l.Members) > MaxMembers:
		return bad("%d members, want 1..%d", len(l.Members), MaxMembers)
	case len(l.Signer) != ed25519.PublicKeySize || len(l.Sig) != ed25519.SignatureSize:
		return bad("signer key of %d bytes, signature of %d", len(l.Signer), len(l.Sig))
	case len(l.Meta) > MaxMeta+sealOverhead:
		return bad("metadata of %d bytes, limit %d", len(l.Meta), MaxMeta+sealOverhead)
	case (l.Epoch == 0) != (l.Chain == nil):
		return bad("epoch %d with an earlier-keys chain of %d bytes (want one after epoch 0 only)", l.Epoch, len(l.Chain))
	case l.Chain != nil && (len(l.Chain) < 8+sealOverhead || len(l.Chain) > 8+32*MaxEpochChain+sealOverhead):
		return bad("earlier-keys chain of %d bytes", len(l.Chain))
	}
	slots := map[uint32]bool{}
	admins := 0
	for i, m := range l.Members {
		if i > 0 && bytes.Compare(l.Members[i-1].Sign, m.Sign) >= 0 {
			return bad("members not sorted by key, or a key twice")
		}
		if len(m.Box) != 32 || len(m.AddedBy) != ed25519.PublicKeySize || len(m.Name) > MaxMemberName+sealOverhead || len(m.Key) != EpochKeyBoxSize {
			return bad("member %d: X25519 key of %d bytes, added-by of %d, sealed name of %d (limit %d), sealed epoch key of %d (want %d)",
				i, len(m.Box), len(m.AddedBy), len(m.Name), MaxMemberName+sealOverhead, len(m.Key), EpochKeyBoxSize)
		}
		if err := m.Contact().Verify(); err != nil {
			return bad("member %d: %v", i, err)
		}
		if m.Expires < 0 || (m.From != nil && len(m.From) != ed25519.PublicKeySize) {
			return bad("member %d: expiry %d, replaced key of %d bytes", i, m.Expires, len(m.From))
		}
		if m.AddedIn > l.Epoch {
			return bad("member %d added in epoch %d, after the list's %d", i, m.AddedIn, l.Epoch)
		}
		switch m.Role {
		case RoleViewer:
			if m.Slot != 0 {
				return bad("member %d: a viewer with repo slot %d", i, m.Slot)
			}
			continue
		case RoleAdmin:
			admins++
		case RoleMember:
		default:
			return bad("member %d: %v", i, m.Role)
		}
		if m.Slot < SubkeyRepoFirst || m.Slot >= SubkeyRepoFirst+MaxRepos || slots[m.Slot] {
			return bad("member %d: repo slot %d taken or outside %d..%d", i, m.Slot, SubkeyRepoFirst, SubkeyRepoFirst+MaxRepos-1)
		}
		slots[m.Slot] = true
	}
	if admins == 0 {
		return bad("no admin: the last admin cannot leave or lose the role")
	}
	msg, err := l.signed()
	if err != nil {
		return err
	}
	if !ed25519.Verify(l.Signer, msg, l.Sig) {
		return bad("signature does not verify")
	}
	return nil
}

// NewMembership is a group's first list, signed by its creator: the
// creator as its only member, an admin in repo slot SubkeyRepoFirst, a
// fresh epoch-0 key sealed to it, its display name (at most
// MaxMemberName bytes) and the group's metadata (at most MaxMeta bytes)
// sealed under that key.
func NewMembership(group key.RecordKey, creator MemberKey, name, meta []byte) (*Membership, error) {
	if len(name) > MaxMemberName || len(meta) > MaxMeta {
		return nil, fmt.Errorf("%w: name of %d bytes (limit %d), metadata of %d (limit %d)", ErrBadMembership, len(name), MaxMemberName, len(meta), MaxMeta)
	}
	c := creator.Contact()
	l := &Membership{Group: group[:], Members: []MemberEntry{{
		Sign: c.Sign, Box: c.Box[:], BoxSig: c.Sig, Role: RoleAdmin, Slot: SubkeyRepoFirst, AddedBy: c.Sign,
	}}}
	k := key.NewSecret()
	if err := l.seal(k, map[string][]byte{string(c.Sign): name}, meta); err != nil {
		return nil, err
	}
	return l, l.sign(creator)
}

// seal fills the list's sealed parts under k, its epoch's key: each
// member's copy of k, the display names (plaintext, by signing key; a
// member without one gets none) and the metadata (nil: none).
func (l *Membership) seal(k key.Secret, names map[string][]byte, meta []byte) error {
	for i := range l.Members {
		m := &l.Members[i]
		var err error
		if m.Key, err = sealEpochKey(*m, l.Group, l.Epoch, k); err != nil {
			return err
		}
		m.Name = nil
		if n := names[string(m.Sign)]; len(n) > 0 {
			if m.Name, err = sealWith(ctxNames, k, nameAD(l.Group, l.Epoch, m.Sign), n); err != nil {
				return err
			}
		}
	}
	l.Meta = nil
	if len(meta) > 0 {
		var err error
		if l.Meta, err = sealWith(ctxNames, k, chainAD(l.Group, l.Epoch), meta); err != nil {
			return err
		}
	}
	return nil
}

// OpenKeys opens the epoch keys this list holds for member mk: the
// current one (sealed to mk's entry) and the earlier ones of its chain.
// A key that is not a member of this version gets an error wrapping
// ErrNoEpochKey: a removed member cannot read the new epoch.
func (l *Membership) OpenKeys(mk MemberKey) (*Keyring, error) {
	m, ok := l.Member(mk.Public())
	if !ok {
		return nil, fmt.Errorf("%w: not a member of list version %d (epoch %d)", ErrNoEpochKey, l.Version, l.Epoch)
	}
	k, err := openEpochKey(mk, m, l.Group, l.Epoch)
	if err != nil {
		return nil, err
	}
	r := &Keyring{group: key.RecordKey(l.Group), epoch: l.Epoch, keys: map[uint64]key.Secret{l.Epoch: k}}
	if l.Chain == nil {
		return r, nil
	}
	pt, err := openWith(ctxChain, k, chainAD(l.Group, l.Epoch), l.Chain)
	if err != nil {
		return nil, fmt.Errorf("%w: list version %d: earlier keys: %v", ErrBadMembership, l.Version, err)
	}
	first, keys, err := decodeChain(pt)
	if err != nil || first+uint64(len(keys)) != l.Epoch {
		return nil, fmt.Errorf("%w: list version %d: earlier keys do not lead to epoch %d", ErrBadMembership, l.Version, l.Epoch)
	}
	for i, ek := range keys {
		r.keys[first+uint64(i)] = ek
	}
	return r, nil
}

// OpenMeta opens the group's metadata with the list's epoch key, held in
// r; nil when the list has none.
func (l *Membership) OpenMeta(r *Keyring) ([]byte, error) {
	if l.Meta == nil {
		return nil, nil
	}
	k, ok := r.Key(l.Epoch)
	if !ok {
		return nil, fmt.Errorf("group metadata of epoch %d: %w", l.Epoch, ErrNoEpochKey)
	}
	return openWith(ctxNames, k, chainAD(l.Group, l.Epoch), l.Meta)
}

// MemberName opens member m's display name with the list's epoch key,
// held in r; "" when it has none.
func (l *Membership) MemberName(r *Keyring, m MemberEntry) (string, error) {
	if m.Name == nil {
		return "", nil
	}
	k, ok := r.Key(l.Epoch)
	if !ok {
		return "", fmt.Errorf("member name of epoch %d: %w", l.Epoch, ErrNoEpochKey)
	}
	b, err := openWith(ctxNames, k, nameAD(l.Group, l.Epoch, m.Sign), m.Name)
	return string(b), err
}

func (l *Membership) sign(admin MemberKey) error {
	l.Signer = admin.Public()
	l.Sig = nil
	msg, err := l.signed()
	if err != nil {
		return err
	}
	l.Sig = ed25519.Sign(admin.sign, msg)
	return l.Check()
}

// CheckGenesis checks a first list: version 0, signed by the key the
// group's record commits to as its first admin, who is an admin in it.
func (l *Membership) CheckGenesis(group key.RecordKey, firstAdmin ed25519.PublicKey) error {
	if err := l.Check(); err != nil {
		return err
	}
	if !bytes.Equal(l.Group, group[:]) || l.Version != 0 || l.Epoch != 0 {
		return fmt.Errorf("%w: not the first list of group %s", ErrBadMembership, group)
	}
	if m, ok := l.Member(firstAdmin); !ok || m.Role != RoleAdmin || !bytes.Equal(l.Signer, firstAdmin) {
		return fmt.Errorf("%w: the first list is not signed by the group's first admin", ErrBadMembership)
	}
	return nil
}

// CheckNext checks that next may follow l: same group, the next version,
// Prev naming l, signed by an admin of l, entries of members kept
// unchanged but for role and name, and a removal starting the next epoch
// (an epoch never moves otherwise: keys are rotated on removal only).
func (l *Membership) CheckNext(next *Membership) error {
	if err := next.Check(); err != nil {
		return err
	}
	h, err := l.Hash()
	if err != nil {
		return err
	}
	switch {
	case !bytes.Equal(next.Group, l.Group):
		return fmt.Errorf("%w: a list of another group", ErrBadMembership)
	case next.Version != l.Version+1 || !bytes.Equal(next.Prev, h[:]):
		return fmt.Errorf("%w: version %d does not follow version %d", ErrBadMembership, next.Version, l.Version)
	}
	if m, ok := l.Member(next.Signer); !ok || m.Role != RoleAdmin {
		return fmt.Errorf("%w: version %d is signed by a key that is not an admin of version %d", ErrBadMembership, next.Version, l.Version)
	}
	removed := false
	for _, m := range l.Members {
		n, ok := next.Member(m.Sign)
		if !ok {
			removed = true
			continue
		}
		if !bytes.Equal(n.Box, m.Box) || n.Slot != m.Slot || !bytes.Equal(n.AddedBy, m.AddedBy) || n.AddedIn != m.AddedIn || n.Expires != m.Expires || !bytes.Equal(n.From, m.From) {
			return fmt.Errorf("%w: version %d changes member %x's keys, slot or origin", ErrBadMembership, next.Version, m.Sign[:4])
		}
	}
	for _, n := range next.Members {
		if _, ok := l.Member(n.Sign); !ok && (!bytes.Equal(n.AddedBy, next.Signer) || n.AddedIn != next.Epoch) {
			return fmt.Errorf("%w: version %d adds %x as added by another key or in another epoch", ErrBadMembership, next.Version, n.Sign[:4])
		}
	}
	want := l.Epoch
	if removed {
		want++
	}
	if next.Epoch != want {
		return fmt.Errorf("%w: version %d is in epoch %d, want %d (a removal, and only a removal, starts the next epoch)", ErrBadMembership, next.Version, next.Epoch, want)
	}
	return nil
}

// Change makes the next version of l: edit applies the change to a copy
// of the members, then admin signs it, and CheckNext must accept it (so
// an admin of l, and a change the rules allow). The epoch moves on when
// a member was removed: a fresh key, sealed to each remaining member,
// with the earlier keys chained under it and the names and metadata
// sealed again; otherwise new members get the current key. newNames
// gives display names of added members, by signing key.
func (l *Membership) Change(admin MemberKey, edit func(members []MemberEntry) ([]MemberEntry, error)) (*Membership, error) {
	return l.change(admin, edit, nil, nil)
}

func (l *Membership) change(admin MemberKey, edit func(members []MemberEntry) ([]MemberEntry, error), newNames map[string][]byte, meta []byte) (*Membership, error) {
	ring, err := l.OpenKeys(admin)
	if err != nil {
		return nil, err
	}
	h, err := l.Hash()
	if err != nil {
		return nil, err
	}
	names := map[string][]byte{}
	for _, m := range l.Members {
		n, err := l.MemberName(ring, m)
		if err != nil {
			return nil, fmt.Errorf("%w: member %x's name: %v", ErrBadMembership, m.Sign[:4], err)
		}
		names[string(m.Sign)] = []byte(n)
	}
	maps.Copy(names, newNames)
	if meta == nil {
		if meta, err = l.OpenMeta(ring); err != nil {
			return nil, fmt.Errorf("%w: group metadata: %v", ErrBadMembership, err)
		}
	}
	members, err := edit(slices.Clone(l.Members))
	if err != nil {
		return nil, err
	}
	slices.SortFunc(members, func(a, b MemberEntry) int { return bytes.Compare(a.Sign, b.Sign) })
	next := &Membership{Group: l.Group, Version: l.Version + 1, Epoch: l.Epoch, Prev: h[:], Members: members, Chain: l.Chain}
	for _, m := range l.Members {
		if _, ok := next.Member(m.Sign); !ok {
			next.Epoch = l.Epoch + 1
			break
		}
	}
	k := ring.Current()
	if next.Epoch != l.Epoch {
		k = key.NewSecret()
		first := next.Epoch - min(next.Epoch, MaxEpochChain)
		for e := first; e < next.Epoch; e++ {
			if _, ok := ring.Key(e); !ok {
				first = e + 1 // keep the run of held keys that ends at l.Epoch
			}
		}
		keys := make([]key.Secret, 0, next.Epoch-first)
		for e := first; e < next.Epoch; e++ {
			ek, _ := ring.Key(e)
			keys = append(keys, ek)
		}
		if next.Chain, err = sealWith(ctxChain, k, chainAD(next.Group, next.Epoch), encodeChain(first, keys)); err != nil {
			return nil, err
		}
	}
	if err := next.seal(k, names, meta); err != nil {
		return nil, err
	}
	if err := next.sign(admin); err != nil {
		return nil, err
	}
	if err := l.CheckNext(next); err != nil {
		return nil, err
	}
	return next, nil
}

// SetMeta returns the next version with the group's metadata (at most
// MaxMeta bytes) replaced, signed by admin.
func (l *Membership) SetMeta(admin MemberKey, meta []byte) (*Membership, error) {
	if len(meta) == 0 || len(meta) > MaxMeta {
		return nil, fmt.Errorf("%w: metadata of %d bytes, want 1..%d", ErrBadMembership, len(meta), MaxMeta)
	}
	return l.change(admin, func(ms []MemberEntry) ([]MemberEntry, error) { return ms, nil }, nil, meta)
}

// Add returns the next version with c added in role (a writer in the
// first free repo slot), its display name (at most MaxMemberName bytes)
// and the current epoch key sealed to it, signed by admin.
func (l *Membership) Add(admin MemberKey, c uri.Contact, role Role, name []byte) (*Membership, error) {
	if err := c.Verify(); err != nil {
		return nil, err
	}
	if len(name) > MaxMemberName {
		return nil, fmt.Errorf("%w: name of %d bytes, limit %d", ErrBadMembership, len(name), MaxMemberName)
	}
	if _, ok := l.Member(c.Sign); ok {
		return nil, fmt.Errorf("%w: %x is already a member", ErrBadMembership, []byte(c.Sign[:4]))
	}
	return l.change(admin, func(ms []MemberEntry) ([]MemberEntry, error) {
		m := MemberEntry{Sign: c.Sign, Box: c.Box[:], BoxSig: c.Sig, Role: role, AddedBy: admin.Public(), AddedIn: l.Epoch}
		if role != RoleViewer {
			used := map[uint32]bool{}
			for _, x := range ms {
				used[x.Slot] = true
			}
			for s := uint32(SubkeyRepoFirst); s < SubkeyRepoFirst+MaxRepos && m.Slot == 0; s++ {
				if !used[s] {
					m.Slot = s
				}
			}
			if m.Slot == 0 {
				return nil, ErrFull
			}
		}
		return append(ms, m), nil
	}, map[string][]byte{string(c.Sign): name}, nil)
}

// Remove returns the next version without the member whose signing key
// is sign, in the next epoch, signed by admin. Removing the last admin
// fails.
func (l *Membership) Remove(admin MemberKey, sign []byte) (*Membership, error) {
	if _, ok := l.Member(sign); !ok {
		return nil, fmt.Errorf("%w: %x is not a member", ErrBadMembership, sign[:min(4, len(sign))])
	}
	return l.Change(admin, func(ms []MemberEntry) ([]MemberEntry, error) {
		return slices.DeleteFunc(ms, func(m MemberEntry) bool { return bytes.Equal(m.Sign, sign) }), nil
	})
}

// SetRole returns the next version with the member's role changed, signed
// by admin. A viewer made a writer, or a writer made a viewer, is refused:
// a repo slot is given when a member is added (remove and add instead).
func (l *Membership) SetRole(admin MemberKey, sign []byte, role Role) (*Membership, error) {
	m, ok := l.Member(sign)
	if !ok {
		return nil, fmt.Errorf("%w: %x is not a member", ErrBadMembership, sign[:min(4, len(sign))])
	}
	if (m.Role == RoleViewer) != (role == RoleViewer) {
		return nil, fmt.Errorf("%w: %v to %v changes whether the member has a repo: remove and add it instead", ErrBadMembership, m.Role, role)
	}
	return l.Change(admin, func(ms []MemberEntry) ([]MemberEntry, error) {
		for i := range ms {
			if bytes.Equal(ms[i].Sign, sign) {
				ms[i].Role = role
			}
		}
		return ms, nil
	})
}
