package group

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/uri"
	"github.com/zeebo/blake3"
)

// Bearer invites and hand-overs (docs/trust.md, "Invites" and "Devices").
//
// A bearer invite is a 32-byte seed in the invite URI (uri.Invite's ik).
// From it derive `uses` member keys, InviteMemberKey(seed, 0..uses-1); the
// admin adds each to the list as an entry with an expiry, in a repo slot
// of its own, with the epoch key sealed to it like any member's. Whoever
// holds the URI opens the epoch key with the first key whose slot is still
// free and claims that slot with it, writing its repo key and its own
// contact code there: so the invite never carries a key that can sign the
// list, each use takes one slot, and an invite with no free slot left is
// used up. Every DHT holder refuses a slot write by an invite key past its
// expiry. An admin's node later hands each claimed slot over to the
// contact written in it (Replace: the invite key's entry removed, the
// contact's added in the same slot and role, a new epoch), after which the
// invite key reads nothing new; revoking removes the invite's unclaimed
// entries.

// Limits of bearer invites.
const (
	// MaxInviteUses is the most uses one bearer invite has (each reserves
	// a repo slot, or a viewer's entry, until used or revoked).
	MaxInviteUses = 16
	// MaxInviteLifetime is the longest an invite may stay usable.
	MaxInviteLifetime = 90 * 24 * time.Hour
	// expiryGrace is how far past an invite's expiry a holder still takes
	// a slot write by it: clocks of DHT nodes differ.
	expiryGrace = 5 * time.Minute
)

// Errors of bearer invites.
var (
	// ErrInviteUsed: every use of the invite was taken, or it was revoked.
	ErrInviteUsed = errors.New("group: the invite was used up or revoked")
	// ErrInviteExpired: the invite's expiry has passed.
	ErrInviteExpired = errors.New("group: the invite has expired")
	// ErrSlotTaken: another joiner claimed the same use of an invite first.
	ErrSlotTaken = errors.New("group: another joiner took this use of the invite first")
)

// InviteMemberKey is use i of the bearer invite whose seed is seed: an
// ed25519 key and an X25519 key, each BLAKE3 derive-key of seed || be32 i
// with its own context.
func InviteMemberKey(seed [32]byte, i int) MemberKey {
	in := binary.BigEndian.AppendUint32(append([]byte(nil), seed[:]...), uint32(i))
	var s, b [32]byte
	blake3.DeriveKey("dweb 2026 bearer invite sign", in, s[:])
	blake3.DeriveKey("dweb 2026 bearer invite box", in, b[:])
	box, err := ecdh.X25519().NewPrivateKey(b[:])
	if err != nil { // unreachable: any 32 bytes are an X25519 key
		panic("group: X25519 key: " + err.Error())
	}
	return MemberKey{sign: ed25519.NewKeyFromSeed(s[:]), box: box}
}

// AddInvite returns the next version with the uses entries of bearer
// invite seed (1..MaxInviteUses), each in role with a repo slot of its own
// (a viewer's none), usable until expires (at most MaxInviteLifetime
// away), signed by admin. ErrFull when the slots run out.
func (l *Membership) AddInvite(admin MemberKey, seed [32]byte, role Role, uses int, expires time.Time) (*Membership, error) {
	now := time.Now()
	switch {
	case uses < 1 || uses > MaxInviteUses:
		return nil, fmt.Errorf("%w: %d uses, want 1..%d", ErrBadMembership, uses, MaxInviteUses)
	case !expires.After(now) || expires.Sub(now) > MaxInviteLifetime:
		return nil, fmt.Errorf("%w: expiry %s, want within %s from now", ErrBadMembership, expires.UTC().Format(time.RFC3339), MaxInviteLifetime)
	}
	return l.change(admin, func(ms []MemberEntry) ([]MemberEntry, error) {
		for i := range uses {
			c := InviteMemberKey(seed, i).Contact()
			if _, ok := l.Member(c.Sign); ok {
				return nil, fmt.Errorf("%w: this invite is already in the list", ErrBadMembership)
			}
			m := MemberEntry{Sign: c.Sign, Box: c.Box[:], BoxSig: c.Sig, Role: role, AddedBy: admin.Public(), AddedIn: l.Epoch, Expires: expires.Unix()}
			if role != RoleViewer {
				if m.Slot = freeSlot(ms); m.Slot == 0 {
					return nil, ErrFull
				}
			}
			ms = append(ms, m)
		}
		return ms, nil
	}, nil, nil)
}

// freeSlot is the first repo slot no entry of ms holds; 0 if none.
func freeSlot(ms []MemberEntry) uint32 {
	used := map[uint32]bool{}
	for _, m := range ms {
		used[m.Slot] = true
	}
	for s := uint32(SubkeyRepoFirst); s < SubkeyRepoFirst+MaxRepos; s++ {
		if !used[s] {
			return s
		}
	}
	return 0
}

// Replace returns the next version in which the entry of signing key old
// is handed over to contact c, with the same role, repo slot and display
// name: a used invite taken over by its joiner's own key, or a member
// moving to a new device. old's entry is removed, so it starts the next
// epoch. Signed by admin.
func (l *Membership) Replace(admin MemberKey, old []byte, c uri.Contact) (*Membership, error) {
	return l.replaceAll(admin, map[string]uri.Contact{string(old): c}, nil)
}

// replaceAll hands each entry of repl's keys over to its contact, and
// drops the entries of drop, in one version.
func (l *Membership) replaceAll(admin MemberKey, repl map[string]uri.Contact, drop [][]byte) (*Membership, error) {
	ring, err := l.OpenKeys(admin)
	if err != nil {
		return nil, err
	}
	names := map[string][]byte{}
	for old, c := range repl {
		m, ok := l.Member([]byte(old))
		if !ok {
			return nil, fmt.Errorf("%w: %x is not a member", ErrBadMembership, []byte(old)[:min(4, len(old))])
		}
		if err := c.Verify(); err != nil {
			return nil, err
		}
		if _, ok := l.Member(c.Sign); ok {
			return nil, fmt.Errorf("%w: %x is already a member", ErrBadMembership, []byte(c.Sign[:4]))
		}
		n, _ := l.MemberName(ring, m)
		names[string(c.Sign)] = []byte(n)
	}
	return l.change(admin, func(ms []MemberEntry) ([]MemberEntry, error) {
		epoch := l.Epoch + 1 // a removal
		out := ms[:0]
		for _, m := range ms {
			if slices.ContainsFunc(drop, func(d []byte) bool { return bytes.Equal(d, m.Sign) }) {
				continue
			}
			c, ok := repl[string(m.Sign)]
			if !ok {
				out = append(out, m)
				continue
			}
			out = append(out, MemberEntry{Sign: c.Sign, Box: c.Box[:], BoxSig: c.Sig, Role: m.Role, Slot: m.Slot, AddedBy: admin.Public(), AddedIn: epoch, From: m.Sign})
		}
		return out, nil
	}, names, nil)
}

// RevokeInvite returns the next version without the entries of bearer
// invite seed that are still invite entries (uses not yet handed over),
// signed by admin: from then on no one can use the invite, and every
// holder refuses a slot write by its keys. ErrInviteUsed if none is left.
func (l *Membership) RevokeInvite(admin MemberKey, seed [32]byte) (*Membership, error) {
	var drop [][]byte
	for i := range MaxInviteUses {
		if m, ok := l.Member(InviteMemberKey(seed, i).Public()); ok && m.Invite() {
			drop = append(drop, m.Sign)
		}
	}
	if len(drop) == 0 {
		return nil, ErrInviteUsed
	}
	return l.replaceAll(admin, nil, drop)
}

// checkInviteWrite refuses a slot write by an invite entry past its
// expiry (with expiryGrace for clocks that differ).
func checkInviteWrite(m MemberEntry, now time.Time) error {
	if m.Invite() && now.After(time.Unix(m.Expires, 0).Add(expiryGrace)) {
		return fmt.Errorf("%w: %w at %s", ErrBadMembership, ErrInviteExpired, time.Unix(m.Expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// claimValue is what a joiner writes in an invite's slot: its repo key,
// then its own contact code, which an admin hands the slot over to.
func claimValue(repo key.RecordKey, c uri.Contact) []byte {
	return append(append([]byte(nil), repo[:]...), c.String()...)
}

// parseSlotValue reads a repo slot's value: a repo key, or in an invite's
// slot a repo key and the joiner's contact code.
func parseSlotValue(b []byte) (key.RecordKey, *uri.Contact, bool) {
	switch {
	case len(b) == key.Size:
		return key.RecordKey(b), nil, true
	case len(b) > key.Size && len(b) <= key.Size+uri.MaxContactLen:
		c, err := uri.ParseContact(string(b[key.Size:]))
		if err != nil {
			return key.RecordKey{}, nil, false
		}
		return key.RecordKey(b[:key.Size]), &c, true
	}
	return key.RecordKey{}, nil, false
}
