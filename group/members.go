package group

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/uri"
	"github.com/fxamacker/cbor/v2"
)

// A membership-checked group (docs/trust.md) is a record of the schema
// MembershipSchema: subkey 0 holds the membership list (Membership), in
// the clear but for its sealed parts, signed by an admin at seq = the
// list's version; repo slots 1..64 hold each writer's data repo key,
// sealed under the epoch key and signed by the member the list gives the
// slot. No invite carries a key that can sign: the record's owner key
// signs the descriptor once, at creation, and is dropped.

// SubkeyMembership is the subkey of the membership list.
const SubkeyMembership = 0

// Errors of membership-checked groups.
var (
	// ErrNotInvited: the list names no entry for this member key, so the
	// invite was made for someone else (or not made yet).
	ErrNotInvited = errors.New("group: this member key is not in the group's membership list (the invite was made for another key)")
	// ErrRemoved: the newest list no longer names this member.
	ErrRemoved = errors.New("group: this member was removed from the group")
	// ErrViewer: a viewer has no repo and writes nothing.
	ErrViewer = errors.New("group: a viewer has no repo slot and writes nothing")
	// ErrNotChecked: the operation needs a membership-checked group.
	ErrNotChecked = errors.New("group: not a membership-checked group (an invite of format 1)")
)

// listState is what a member of a membership-checked group holds: the
// list version it accepted, the keys it opened from it and from every
// list it accepted before, and whether the list still names it.
type listState struct {
	list    *Membership
	ring    *Keyring
	removed bool
	// member is the key this device is in the list as: its own member
	// key, or a bearer invite's until an admin hands the slot over
	// (device then holds the device's own key).
	member MemberKey
	device *MemberKey
}

// held is the list state every handle on one group shares, and a lock
// that serialises this node's list changes.
type held struct {
	mu    sync.Mutex
	state atomic.Pointer[listState]
}

// ringSealer seals with the group's current keyring.
type ringSealer struct{ h *held }

func (s ringSealer) Seal(k key.RecordKey, subkey uint32, pt []byte) ([]byte, error) {
	return s.h.state.Load().ring.Seal(k, subkey, pt)
}

func (s ringSealer) Open(k key.RecordKey, subkey uint32, sealed []byte) ([]byte, error) {
	return s.h.state.Load().ring.Open(k, subkey, sealed)
}

func newChecked(recs datarepo.Records, desc *record.Descriptor, mk MemberKey, l *Membership, ring *Keyring) *Group {
	g := &Group{desc: desc, recs: recs, member: &mk, held: &held{}}
	g.SetLogger(nil)
	g.keys = ringSealer{g.held}
	g.held.state.Store(&listState{list: l, ring: ring, member: mk})
	return g
}

// me is the key this device is in the list as.
func (g *Group) me() MemberKey { return g.held.state.Load().member }

// CreateChecked makes a new membership-checked group with mk's device as
// its first admin: a descriptor signed by a throwaway owner key, and list
// version 0 (name at most MaxNameLen bytes of UTF-8, the creator's
// display name at most MaxMemberName bytes) written to the DHT.
func CreateChecked(ctx context.Context, recs datarepo.Records, mk MemberKey, name, memberName string) (*Group, error) {
	if name == "" || len(name) > MaxNameLen || !utf8.ValidString(name) {
		return nil, fmt.Errorf("%w: %q (1..%d bytes of UTF-8)", ErrBadName, name, MaxNameLen)
	}
	desc, err := record.NewDescriptor(key.NewKeypair(), MembershipSchema(mk.Public()))
	if err != nil {
		return nil, err
	}
	meta, err := encodeMeta(Meta{Name: name, CreatedAt: time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return nil, err
	}
	l, err := NewMembership(desc.Key(), mk, []byte(memberName), meta)
	if err != nil {
		return nil, fmt.Errorf("create group %q: %w", name, err)
	}
	ring, err := l.OpenKeys(mk)
	if err != nil {
		return nil, err
	}
	g := newChecked(recs, desc, mk, l, ring)
	if err := g.publish(ctx, l); err != nil {
		return nil, fmt.Errorf("create group %q: %w", name, err)
	}
	return g, nil
}

// Anchor is what an invite tells a joiner to trust: the list version it
// was made at and the BLAKE3 hash of that version's encoding.
type Anchor struct {
	Version uint64
	Hash    [32]byte
}

// JoinChecked opens membership-checked group k as member mk, from the
// list the DHT holds. The list must be the anchored version itself, or a
// later one signed by one of its own admins (a joiner has no history to
// check it against; docs/trust.md says what that leaves open), and it
// must name mk: a list that does not gives ErrNotInvited (a sealed
// invite used with another key). It returns the group and its metadata.
func JoinChecked(ctx context.Context, recs datarepo.Records, k key.RecordKey, mk MemberKey, a Anchor) (*Group, Meta, error) {
	desc, v, err := recs.Get(ctx, k, SubkeyMembership)
	switch {
	case errors.Is(err, dht.ErrNotFound) || (err == nil && v == nil):
		return nil, Meta{}, fmt.Errorf("%w: %s", ErrNoGroupMeta, k)
	case err != nil:
		return nil, Meta{}, fmt.Errorf("join group %s: %w", k, err)
	case desc.Key() != k || !desc.Schema.MembershipChecked():
		return nil, Meta{}, fmt.Errorf("join group %s: %w", k, ErrNotChecked)
	}
	l, err := DecodeMembership(v.Data)
	if err != nil {
		return nil, Meta{}, fmt.Errorf("join group %s: %w", k, err)
	}
	if err := checkFirst(k, desc, l, v.Writer, a); err != nil {
		return nil, Meta{}, fmt.Errorf("join group %s: %w", k, err)
	}
	ring, err := l.OpenKeys(mk)
	if err != nil {
		if errors.Is(err, ErrNoEpochKey) {
			return nil, Meta{}, fmt.Errorf("join group %s: %w", k, ErrNotInvited)
		}
		return nil, Meta{}, fmt.Errorf("join group %s: %w", k, err)
	}
	g := newChecked(recs, desc, mk, l, ring)
	m, err := g.heldMeta()
	if err != nil {
		return nil, Meta{}, err
	}
	return g, m, nil
}

// checkFirst is a joiner's check of the first list it sees.
func checkFirst(k key.RecordKey, desc *record.Descriptor, l *Membership, writer []byte, a Anchor) error {
	if !bytes.Equal(writer, l.Signer) {
		return fmt.Errorf("%w: the list's value is not signed by its signer", ErrBadMembership)
	}
	if l.Version == 0 {
		if err := l.CheckGenesis(k, desc.Schema.Membership.FirstAdmin); err != nil {
			return err
		}
	}
	switch {
	case l.Version < a.Version:
		return fmt.Errorf("%w: the DHT holds list version %d, older than the invite's %d (try again once it has spread)", ErrBadMembership, l.Version, a.Version)
	case l.Version == a.Version:
		if h, err := l.Hash(); err != nil || h != a.Hash {
			return fmt.Errorf("%w: list version %d is not the one the invite names", ErrBadMembership, l.Version)
		}
	default:
		if m, ok := l.Member(l.Signer); !ok || m.Role != RoleAdmin {
			return fmt.Errorf("%w: list version %d is not signed by one of its admins", ErrBadMembership, l.Version)
		}
	}
	return nil
}

// SavedChecked is what a member keeps of a membership-checked group to
// reopen it without the network: the descriptor, the list it accepted
// and its keyring. It holds secrets (the keys): keep it in the protected
// store.
type SavedChecked struct {
	Desc []byte `cbor:"1,keyasint"`
	List []byte `cbor:"2,keyasint"`
	Keys []byte `cbor:"3,keyasint"`
	// Invite is the bearer invite's member key this device is in the
	// list as, until an admin hands its slot over to the device's key.
	Invite []byte `cbor:"4,keyasint,omitempty"`
}

// Save returns what OpenChecked needs to reopen g, encoded.
func (g *Group) Save() ([]byte, error) {
	if g.member == nil {
		return nil, ErrNotChecked
	}
	st := g.held.state.Load()
	var s SavedChecked
	var err error
	if s.Desc, err = record.EncodeDescriptor(g.desc); err != nil {
		return nil, err
	}
	if s.List, err = st.list.Encode(); err != nil {
		return nil, err
	}
	if s.Keys, err = st.ring.MarshalBinary(); err != nil {
		return nil, err
	}
	if st.device != nil {
		s.Invite = st.member.Bytes()
	}
	return memEnc.Marshal(s)
}

// OpenChecked reopens a membership-checked group from Save's bytes, as
// member mk, without the network.
func OpenChecked(recs datarepo.Records, mk MemberKey, saved []byte) (*Group, error) {
	var s SavedChecked
	if err := cbor.Unmarshal(saved, &s); err != nil {
		return nil, fmt.Errorf("open group: saved state: %w", err)
	}
	desc, err := record.DecodeDescriptor(s.Desc)
	if err != nil {
		return nil, fmt.Errorf("open group: %w", err)
	}
	l, err := DecodeMembership(s.List)
	if err != nil {
		return nil, fmt.Errorf("open group %s: %w", desc.Key(), err)
	}
	ring, err := UnmarshalKeyring(s.Keys)
	if err != nil {
		return nil, fmt.Errorf("open group %s: %w", desc.Key(), err)
	}
	st := &listState{list: l, ring: ring, member: mk}
	if s.Invite != nil {
		im, err := ParseMemberKey(s.Invite)
		if err != nil {
			return nil, fmt.Errorf("open group %s: %w", desc.Key(), err)
		}
		st.member, st.device = im, &mk
	}
	g := newChecked(recs, desc, mk, l, ring)
	_, ok := l.Member(st.member.Public())
	st.removed = !ok
	g.held.state.Store(st)
	return g, nil
}

// Checked reports whether g is a membership-checked group.
func (g *Group) Checked() bool { return g.member != nil }

// Membership returns the list this member holds (nil for a group of the
// first invite's format). Callers must not change it.
func (g *Group) Membership() *Membership {
	if g.member == nil {
		return nil
	}
	return g.held.state.Load().list
}

// Keyring returns the epoch keys this member holds (nil for a group of
// the first invite's format).
func (g *Group) Keyring() *Keyring {
	if g.member == nil {
		return nil
	}
	return g.held.state.Load().ring
}

// Removed reports whether the newest list this member accepted no longer
// names it.
func (g *Group) Removed() bool { return g.member != nil && g.held.state.Load().removed }

// CanWrite says whether this member may write its repo: nil in a group
// of the first format; in a membership-checked group ErrRemoved after a
// removal and ErrViewer for a viewer (holders refuse their slot writes
// anyway: this says so before anything is stored).
func (g *Group) CanWrite() error {
	if g.member == nil {
		return nil
	}
	st := g.held.state.Load()
	if st.removed {
		return ErrRemoved
	}
	if m, ok := st.list.Member(st.member.Public()); !ok || m.Role == RoleViewer {
		return ErrViewer
	}
	return nil
}

// TunnelSecret is the secret the group's tunnel pre-shared key derives
// from: the group secret, or the current epoch's key, so that a removed
// member's handshakes fail once the others hold the new epoch.
func (g *Group) TunnelSecret() key.Secret {
	if g.member == nil {
		return g.secret
	}
	return g.held.state.Load().ring.Current()
}

// publish writes l as the list, at seq = its version, signed by this
// member.
func (g *Group) publish(ctx context.Context, l *Membership) error {
	b, err := l.Encode()
	if err != nil {
		return err
	}
	me := g.me()
	v, err := me.SignValue(g.Key(), SubkeyMembership, l.Version, b)
	if err != nil {
		return err
	}
	if err := g.recs.Set(ctx, g.desc, SubkeyMembership, v); err != nil {
		return fmt.Errorf("publish membership list version %d of group %s: %w", l.Version, g.Key(), err)
	}
	return nil
}

// accept makes next the held list, if it may follow the held one: the
// next version must pass CheckNext, a later one (versions missed) be
// signed by an admin of the held list. It opens next's keys, keeping the
// ones held; a list that no longer names this member marks it removed.
// It reports whether the held list changed.
func (g *Group) accept(next *Membership, writer []byte) (bool, error) {
	cur := g.held.state.Load()
	if !bytes.Equal(writer, next.Signer) {
		return false, fmt.Errorf("%w: the list's value is not signed by its signer", ErrBadMembership)
	}
	switch {
	case next.Version <= cur.list.Version:
		return false, nil
	case next.Version == cur.list.Version+1:
		if err := cur.list.CheckNext(next); err != nil {
			return false, err
		}
	default:
		if m, ok := cur.list.Member(next.Signer); !ok || m.Role != RoleAdmin || !bytes.Equal(next.Group, cur.list.Group) {
			return false, fmt.Errorf("%w: version %d is not signed by an admin of the held version %d", ErrBadMembership, next.Version, cur.list.Version)
		}
	}
	st := &listState{list: next, ring: cur.ring, member: cur.member, device: cur.device}
	if _, ok := next.Member(cur.member.Public()); !ok && cur.device != nil {
		if _, ok := next.Member(cur.device.Public()); ok {
			// An admin handed the invite's slot over to this device's key.
			st.member, st.device = *cur.device, nil
		}
	}
	ring, err := next.OpenKeys(st.member)
	switch {
	case errors.Is(err, ErrNoEpochKey):
		st.removed = true
	case err != nil:
		return false, err
	default:
		st.ring = cur.ring.With(ring)
	}
	g.held.state.Store(st)
	return true, nil
}

// Refresh reads the list from the DHT and accepts it if it follows the
// held one (accept). It reports whether the held list changed; a list
// that does not follow is refused with an error wrapping
// ErrBadMembership and the held one kept. Removed reports whether the
// new list still names this member.
func (g *Group) Refresh(ctx context.Context) (bool, error) {
	if g.member == nil {
		return false, ErrNotChecked
	}
	g.held.mu.Lock()
	defer g.held.mu.Unlock()
	return g.refresh(ctx)
}

func (g *Group) refresh(ctx context.Context) (bool, error) {
	_, v, err := g.recs.Get(ctx, g.Key(), SubkeyMembership)
	if err != nil {
		if errors.Is(err, dht.ErrNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("refresh group %s: %w", g.Key(), err)
	}
	if v == nil {
		return false, nil
	}
	next, err := DecodeMembership(v.Data)
	if err != nil {
		return false, fmt.Errorf("refresh group %s: %w", g.Key(), err)
	}
	return g.accept(next, v.Writer)
}

// change refreshes the list, applies edit to it as this member (an
// admin), publishes the result and holds it.
func (g *Group) change(ctx context.Context, edit func(l *Membership, admin MemberKey) (*Membership, error)) (*Membership, error) {
	if g.member == nil {
		return nil, ErrNotChecked
	}
	g.held.mu.Lock()
	defer g.held.mu.Unlock()
	if _, err := g.refresh(ctx); err != nil {
		return nil, err
	}
	if g.held.state.Load().removed {
		return nil, ErrRemoved
	}
	next, err := edit(g.held.state.Load().list, g.me())
	if err != nil {
		return nil, err
	}
	if err := g.publish(ctx, next); err != nil {
		return nil, err
	}
	if _, err := g.accept(next, next.Signer); err != nil {
		return nil, err
	}
	return next, nil
}

// AddMember adds contact c in role, with display name name, and
// publishes the list: c's device can now join with an invite anchored
// at the returned list (sealed to c: only c's member key opens the
// epoch key). This member must be an admin.
func (g *Group) AddMember(ctx context.Context, c uri.Contact, role Role, name string) (*Membership, error) {
	return g.change(ctx, func(l *Membership, admin MemberKey) (*Membership, error) {
		return l.Add(admin, c, role, []byte(name))
	})
}

// RemoveMember removes the member whose signing key is sign and
// publishes the list of the next epoch: a fresh key sealed to the others
// only. This member must be an admin; the last admin cannot go.
func (g *Group) RemoveMember(ctx context.Context, sign ed25519.PublicKey) (*Membership, error) {
	return g.change(ctx, func(l *Membership, admin MemberKey) (*Membership, error) {
		return l.Remove(admin, sign)
	})
}

// SetMemberRole changes a member's role and publishes the list. This
// member must be an admin.
func (g *Group) SetMemberRole(ctx context.Context, sign ed25519.PublicKey, role Role) (*Membership, error) {
	return g.change(ctx, func(l *Membership, admin MemberKey) (*Membership, error) {
		return l.SetRole(admin, sign, role)
	})
}

// Rename sets the group's name (1..MaxNameLen bytes of UTF-8) and
// publishes the list. This member must be an admin.
func (g *Group) Rename(ctx context.Context, name string) error {
	if name == "" || len(name) > MaxNameLen || !utf8.ValidString(name) {
		return fmt.Errorf("%w: %q (1..%d bytes of UTF-8)", ErrBadName, name, MaxNameLen)
	}
	_, err := g.change(ctx, func(l *Membership, admin MemberKey) (*Membership, error) {
		m, err := g.heldMeta()
		if err != nil {
			return nil, err
		}
		m.Name = name
		b, err := encodeMeta(m)
		if err != nil {
			return nil, err
		}
		return l.SetMeta(admin, b)
	})
	return err
}

// MemberInfo is one member as a member reads the list: its keys, role,
// repo slot and display name.
type MemberInfo struct {
	Contact uri.Contact // its member key
	Role    Role
	Slot    uint32 // repo subkey; 0 for a viewer
	Name    string // display name; "" if none or unreadable
	AddedIn uint64 // epoch
	Self    bool   // this device
}

// Members lists the held list's members, sorted by signing key.
func (g *Group) Members() ([]MemberInfo, error) {
	if g.member == nil {
		return nil, ErrNotChecked
	}
	st := g.held.state.Load()
	self := st.member.Public()
	out := make([]MemberInfo, 0, len(st.list.Members))
	for _, m := range st.list.Members {
		name, err := st.list.MemberName(st.ring, m)
		if err != nil {
			g.log.Warn("group: a member name that does not open", "group", g.Key().String(), "err", err)
		}
		out = append(out, MemberInfo{Contact: m.Contact(), Role: m.Role, Slot: m.Slot, Name: name, AddedIn: m.AddedIn, Self: bytes.Equal(m.Sign, self)})
	}
	return out, nil
}

// heldMeta is the metadata of the held list.
func (g *Group) heldMeta() (Meta, error) {
	st := g.held.state.Load()
	b, err := st.list.OpenMeta(st.ring)
	if err != nil {
		return Meta{}, fmt.Errorf("group %s: %w", g.Key(), err)
	}
	if b == nil {
		return Meta{}, fmt.Errorf("%w: %s", ErrNoGroupMeta, g.Key())
	}
	return decodeMeta(b)
}

// claimChecked writes repo into the slot the list gives this member.
func (g *Group) claimChecked(ctx context.Context, repo key.RecordKey) (uint32, error) {
	st := g.held.state.Load()
	if st.removed {
		return 0, ErrRemoved
	}
	m, ok := st.list.Member(st.member.Public())
	if !ok {
		return 0, ErrNotInvited
	}
	if m.Role == RoleViewer {
		return 0, ErrViewer
	}
	value := repo[:]
	if m.Invite() && st.device != nil {
		value = claimValue(repo, st.device.Contact())
	}
	if _, v, err := g.recs.Get(ctx, g.Key(), m.Slot); err == nil && v != nil && bytes.Equal(v.Writer, m.Sign) {
		pt, err := g.keys.Open(g.Key(), m.Slot, v.Data)
		if err == nil && bytes.Equal(pt, value) {
			if e, _ := epochOf(v.Data); e == st.ring.Epoch() {
				return m.Slot, nil
			}
		} else if m.Invite() {
			// Another joiner holds this use of the invite.
			return 0, fmt.Errorf("claim repo slot %d of group %s: %w", m.Slot, g.Key(), ErrSlotTaken)
		}
	}
	writer := key.Keypair{Private: st.member.sign}
	if m.Invite() {
		err := datarepo.CreateSealed(ctx, g.recs, g.desc, m.Slot, writer, g.keys, value)
		if errors.Is(err, datarepo.ErrTaken) {
			return 0, fmt.Errorf("claim repo slot %d of group %s: %w", m.Slot, g.Key(), ErrSlotTaken)
		}
		if err != nil {
			return 0, fmt.Errorf("claim repo slot %d of group %s: %w", m.Slot, g.Key(), err)
		}
		return m.Slot, nil
	}
	if _, err := datarepo.WriteSealed(ctx, g.recs, g.desc, m.Slot, writer, g.keys, value); err != nil {
		return 0, fmt.Errorf("claim repo slot %d of group %s: %w", m.Slot, g.Key(), err)
	}
	return m.Slot, nil
}

// checkedSlots reads the repo slots of the list's writers, in slot
// order; a slot whose value is not signed by its member, or does not
// open, is skipped and logged.
func (g *Group) checkedSlots(ctx context.Context) ([]repoSlot, error) {
	st := g.held.state.Load()
	writers := slices.DeleteFunc(slices.Clone(st.list.Members), func(m MemberEntry) bool { return m.Role == RoleViewer })
	slices.SortFunc(writers, func(a, b MemberEntry) int { return int(a.Slot) - int(b.Slot) })
	var slots []repoSlot
	for _, m := range writers {
		_, v, err := g.recs.Get(ctx, g.Key(), m.Slot)
		switch {
		case errors.Is(err, dht.ErrNotFound) || (err == nil && v == nil):
			continue // a member that has not joined yet
		case err != nil:
			return nil, fmt.Errorf("group %s: %w", g.Key(), err)
		case !bytes.Equal(v.Writer, m.Sign) && (m.From == nil || !bytes.Equal(v.Writer, m.From)):
			g.log.Warn("group: skipped a repo slot not written by its member", "group", g.Key().String(), "subkey", m.Slot)
			continue
		}
		pt, err := g.keys.Open(g.Key(), m.Slot, v.Data)
		rk, _, ok := parseSlotValue(pt)
		if err != nil || !ok {
			g.log.Warn("group: skipped a repo slot that does not open", "group", g.Key().String(), "subkey", m.Slot, "bytes", len(pt), "err", err)
			continue
		}
		slots = append(slots, repoSlot{subkey: m.Slot, repo: rk})
	}
	return slots, nil
}

// AddInvite adds bearer invite seed to the list (Membership.AddInvite:
// uses entries in role, each with a slot, usable until expires) and
// publishes it; a viewer is invited sealed (AddMember), since a viewer
// has no slot to claim a use with. This member must be an admin.
func (g *Group) AddInvite(ctx context.Context, seed [32]byte, role Role, uses int, expires time.Time) (*Membership, error) {
	if role == RoleViewer {
		return nil, fmt.Errorf("%w: a bearer invite is for members or admins (invite a viewer with its contact code)", ErrBadMembership)
	}
	return g.change(ctx, func(l *Membership, admin MemberKey) (*Membership, error) {
		return l.AddInvite(admin, seed, role, uses, expires)
	})
}

// RevokeInvite removes the unused entries of bearer invite seed and
// publishes the list (a new epoch). This member must be an admin.
func (g *Group) RevokeInvite(ctx context.Context, seed [32]byte) (*Membership, error) {
	return g.change(ctx, func(l *Membership, admin MemberKey) (*Membership, error) {
		return l.RevokeInvite(admin, seed)
	})
}

// HandOver is an admin's pass over the bearer invites of the list: each
// use whose slot a joiner claimed is handed over to the contact written
// there, and each use nobody claimed is dropped once no DHT holder would
// take a claim by it any more (its expiry plus expiryGrace, the rule of
// checkInviteWrite), in one new list version (a new epoch). Until then a
// claim written near the expiry still finds its entry, and a joiner still
// reads that the invite expired (ErrInviteExpired) rather than that it is
// gone (ErrInviteUsed). It reports how many entries it changed; 0 and no
// new version when there was nothing to do.
func (g *Group) HandOver(ctx context.Context) (int, error) {
	return g.handOver(ctx, time.Now())
}

// handOver is HandOver at time now.
func (g *Group) handOver(ctx context.Context, now time.Time) (int, error) {
	if g.member == nil {
		return 0, ErrNotChecked
	}
	st := g.held.state.Load()
	if m, ok := st.list.Member(st.member.Public()); !ok || m.Role != RoleAdmin {
		return 0, nil
	}
	repl := map[string]uri.Contact{}
	var drop [][]byte
	for _, m := range st.list.Members {
		if !m.Invite() || m.Slot == 0 {
			continue
		}
		_, v, err := g.recs.Get(ctx, g.Key(), m.Slot)
		if err != nil && !errors.Is(err, dht.ErrNotFound) {
			return 0, fmt.Errorf("hand over invite slot %d of group %s: %w", m.Slot, g.Key(), err)
		}
		if v == nil || !bytes.Equal(v.Writer, m.Sign) {
			if checkInviteWrite(m, now) != nil {
				drop = append(drop, m.Sign)
			}
			continue
		}
		pt, err := g.keys.Open(g.Key(), m.Slot, v.Data)
		if _, c, ok := parseSlotValue(pt); err == nil && ok && c != nil {
			if _, dup := st.list.Member(c.Sign); !dup {
				repl[string(m.Sign)] = *c
			}
		}
	}
	if len(repl) == 0 && len(drop) == 0 {
		return 0, nil
	}
	_, err := g.change(ctx, func(l *Membership, admin MemberKey) (*Membership, error) {
		return l.replaceAll(admin, repl, drop)
	})
	if err != nil {
		return 0, err
	}
	return len(repl) + len(drop), nil
}

// JoinBearer opens membership-checked group k with bearer invite seed
// (anchored as JoinChecked), as the first use from index from on whose
// entry is in the list, not expired and whose slot nobody claimed yet;
// device is this device's own member key, which an admin will hand the
// slot over to (HandOver). It returns the group, its metadata and the use
// taken; ClaimRepo then claims the slot, and a joiner that loses the race
// for it (ErrSlotTaken) tries again from the next use. ErrInviteExpired,
// ErrInviteUsed when no use is left (or the invite was revoked).
func JoinBearer(ctx context.Context, recs datarepo.Records, k key.RecordKey, seed [32]byte, a Anchor, device MemberKey, from int) (*Group, Meta, int, error) {
	desc, v, err := recs.Get(ctx, k, SubkeyMembership)
	switch {
	case errors.Is(err, dht.ErrNotFound) || (err == nil && v == nil):
		return nil, Meta{}, 0, fmt.Errorf("%w: %s", ErrNoGroupMeta, k)
	case err != nil:
		return nil, Meta{}, 0, fmt.Errorf("join group %s: %w", k, err)
	case desc.Key() != k || !desc.Schema.MembershipChecked():
		return nil, Meta{}, 0, fmt.Errorf("join group %s: %w", k, ErrNotChecked)
	}
	l, err := DecodeMembership(v.Data)
	if err != nil {
		return nil, Meta{}, 0, fmt.Errorf("join group %s: %w", k, err)
	}
	if err := checkFirst(k, desc, l, v.Writer, a); err != nil {
		return nil, Meta{}, 0, fmt.Errorf("join group %s: %w", k, err)
	}
	expired := false
	for i := from; i < MaxInviteUses; i++ {
		mk := InviteMemberKey(seed, i)
		m, ok := l.Member(mk.Public())
		if !ok || !m.Invite() {
			continue
		}
		if time.Now().After(time.Unix(m.Expires, 0)) {
			expired = true
			continue
		}
		if _, sv, err := recs.Get(ctx, k, m.Slot); err == nil && sv != nil && bytes.Equal(sv.Writer, m.Sign) {
			continue // claimed by another joiner
		}
		ring, err := l.OpenKeys(mk)
		if err != nil {
			return nil, Meta{}, 0, fmt.Errorf("join group %s: %w", k, err)
		}
		g := newChecked(recs, desc, device, l, ring)
		g.held.state.Store(&listState{list: l, ring: ring, member: mk, device: &device})
		meta, err := g.heldMeta()
		if err != nil {
			return nil, Meta{}, 0, err
		}
		return g, meta, i, nil
	}
	if expired {
		return nil, Meta{}, 0, fmt.Errorf("join group %s: %w", k, ErrInviteExpired)
	}
	return nil, Meta{}, 0, fmt.Errorf("join group %s: %w", k, ErrInviteUsed)
}

// ReplaceMember hands the entry of the member whose signing key is old
// over to contact c (Membership.Replace: same slot, role and name, a new
// epoch) and publishes the list: a member's new device, which then joins
// with an invite sealed to c and takes the repo over (InheritedRepo); the
// old device can no longer write the slot or read anything new. This
// member must be an admin.
func (g *Group) ReplaceMember(ctx context.Context, old ed25519.PublicKey, c uri.Contact) (*Membership, error) {
	return g.change(ctx, func(l *Membership, admin MemberKey) (*Membership, error) {
		return l.Replace(admin, old, c)
	})
}

// InheritedRepo reads the repo this member's slot still lists from the
// entry it replaced (Replace's From), if the slot's value was written by
// that key: the repo a new device takes over. ok is false when there is
// none.
func (g *Group) InheritedRepo(ctx context.Context) (key.RecordKey, bool, error) {
	if g.member == nil {
		return key.RecordKey{}, false, ErrNotChecked
	}
	st := g.held.state.Load()
	m, ok := st.list.Member(st.member.Public())
	if !ok || m.From == nil || m.Slot == 0 {
		return key.RecordKey{}, false, nil
	}
	_, v, err := g.recs.Get(ctx, g.Key(), m.Slot)
	if errors.Is(err, dht.ErrNotFound) || (err == nil && (v == nil || !bytes.Equal(v.Writer, m.From))) {
		return key.RecordKey{}, false, nil
	}
	if err != nil {
		return key.RecordKey{}, false, fmt.Errorf("group %s: %w", g.Key(), err)
	}
	pt, err := g.keys.Open(g.Key(), m.Slot, v.Data)
	if err != nil {
		return key.RecordKey{}, false, fmt.Errorf("group %s: the replaced member's slot: %w", g.Key(), err)
	}
	rk, _, ok := parseSlotValue(pt)
	return rk, ok, nil
}
