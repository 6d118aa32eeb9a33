package group

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/zeebo/blake3"
)

// MembershipSchema is the schema of a membership-checked group record
// (docs/trust.md, "Member keys and the membership list"): subkey 0 the
// membership list, unsealed so that holders read roles and slots (the
// entries' names are sealed by the caller), and repo slots
// SubkeyRepoFirst..MaxRepos, each written by the member the list assigns
// it. The record key commits to firstAdmin, who signs list version 0.
func MembershipSchema(firstAdmin ed25519.PublicKey) record.Schema {
	return record.Schema{Membership: &record.MembershipSchema{FirstAdmin: firstAdmin, Slots: MaxRepos}}
}

// SignValue returns data as the value of subkey of record k at seq,
// signed by the member key: how a member writes its repo slot and an
// admin the list.
func (m MemberKey) SignValue(k key.RecordKey, subkey uint32, seq uint64, data []byte) (*record.Value, error) {
	return record.NewValue(k, subkey, seq, data, key.Keypair{Private: m.sign})
}

// SlotMember returns the member the list assigns repo slot slot to; a
// viewer has none, so no slot is a viewer's.
func (l *Membership) SlotMember(slot uint32) (MemberEntry, bool) {
	for _, m := range l.Members {
		if m.Role != RoleViewer && m.Slot == slot {
			return m, true
		}
	}
	return MemberEntry{}, false
}

// CheckHeld checks next as the list to replace held, the list a DHT
// holder of group record k has (nil: none), where signer signed next's
// value and firstAdmin is the admin the record's schema commits to. This
// is the rule every holder applies at store time (docs/trust.md, "Checked
// at store time by every holder"):
//
//   - signer must be next's signer;
//   - with no list held: version 0 must pass CheckGenesis (signed by the
//     first admin); a later version, which a holder that joined late
//     cannot check against history, must be of group k and signed by one
//     of its own admins (the weakness docs/trust.md describes);
//   - with a list held: the next version must pass CheckNext; a version
//     further on (the holder missed some) must be of the same group and
//     signed by an admin of the held list; an earlier or equal version is
//     refused.
//
// Errors wrap ErrBadMembership.
func CheckHeld(k key.RecordKey, firstAdmin ed25519.PublicKey, held, next *Membership, signer ed25519.PublicKey) error {
	if !bytes.Equal(next.Signer, signer) {
		return fmt.Errorf("%w: the value is signed by %x, the list by %x", ErrBadMembership, signer[:min(4, len(signer))], next.Signer[:4])
	}
	if !bytes.Equal(next.Group, k[:]) {
		return fmt.Errorf("%w: a list of another group", ErrBadMembership)
	}
	if held == nil {
		if next.Version == 0 {
			return next.CheckGenesis(k, firstAdmin)
		}
		if m, ok := next.Member(next.Signer); !ok || m.Role != RoleAdmin {
			return fmt.Errorf("%w: version %d, and no list held, is not signed by one of its admins", ErrBadMembership, next.Version)
		}
		return nil
	}
	switch {
	case next.Version == held.Version+1:
		return held.CheckNext(next)
	case next.Version > held.Version+1:
		if m, ok := held.Member(next.Signer); !ok || m.Role != RoleAdmin {
			return fmt.Errorf("%w: version %d is signed by a key that is not an admin of the held version %d", ErrBadMembership, next.Version, held.Version)
		}
		return nil
	}
	return fmt.Errorf("%w: version %d does not come after the held version %d", ErrBadMembership, next.Version, held.Version)
}

// CheckSlotWriter checks that signer may write repo slot slot under l:
// l assigns the slot to signer's member entry, which, if a bearer
// invite's, has not expired (invite.go).
func (l *Membership) CheckSlotWriter(slot uint32, signer ed25519.PublicKey) error {
	m, ok := l.SlotMember(slot)
	switch {
	case !ok:
		return fmt.Errorf("%w: list version %d assigns slot %d to no member", ErrBadMembership, l.Version, slot)
	case !bytes.Equal(m.Sign, signer):
		return fmt.Errorf("%w: list version %d assigns slot %d to %x, not %x", ErrBadMembership, l.Version, slot, m.Sign[:4], signer[:min(4, len(signer))])
	}
	return checkInviteWrite(m, time.Now())
}

// maxHeldLists bounds the decoded lists a Holders keeps.
const maxHeldLists = 256

// Holders is the store-time check of membership-checked group records
// for a DHT (dht.Options.Membership): CheckHeld for lists,
// CheckSlotWriter for repo slots. It keeps the lists it decoded (at most
// 256, by BLAKE3 of their encoding), so a slot write does not verify the
// list's signatures again. Safe for concurrent use.
type Holders struct {
	mu    sync.Mutex
	lists map[[32]byte]*Membership
}

var _ dht.MembershipChecker = (*Holders)(nil)

// NewHolders returns an empty Holders.
func NewHolders() *Holders { return &Holders{lists: map[[32]byte]*Membership{}} }

func (h *Holders) decode(b []byte) (*Membership, error) {
	sum := blake3.Sum256(b)
	h.mu.Lock()
	l, ok := h.lists[sum]
	h.mu.Unlock()
	if ok {
		return l, nil
	}
	l, err := DecodeMembership(b)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.lists) >= maxHeldLists {
		clear(h.lists)
	}
	h.lists[sum] = l
	return l, nil
}

// CheckList implements dht.MembershipChecker with CheckHeld.
func (h *Holders) CheckList(k key.RecordKey, firstAdmin ed25519.PublicKey, held, list []byte, signer ed25519.PublicKey) error {
	next, err := h.decode(list)
	if err != nil {
		return err
	}
	var cur *Membership
	if held != nil {
		if cur, err = h.decode(held); err != nil {
			return fmt.Errorf("the held list: %w", err)
		}
	}
	return CheckHeld(k, firstAdmin, cur, next, signer)
}

// CheckSlot implements dht.MembershipChecker with CheckSlotWriter.
func (h *Holders) CheckSlot(k key.RecordKey, list []byte, slot uint32, signer ed25519.PublicKey) error {
	l, err := h.decode(list)
	if err != nil {
		return err
	}
	if !bytes.Equal(l.Group, k[:]) {
		return fmt.Errorf("%w: the held list is of another group", ErrBadMembership)
	}
	return l.CheckSlotWriter(slot, signer)
}
