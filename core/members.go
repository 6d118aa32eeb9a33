package core

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/uri"
)

// Members of membership-checked groups (docs/trust.md): core keeps the
// list group/ accepted in the protected store, re-seals this node's repo
// after a key rotation, and names members for the surfaces. The rules
// (who may change what, epochs, keys) are group's.

// ErrNotChecked: the group is of the first invite's format, with no
// members or roles (create it with GroupOptions.Checked).
var ErrNotChecked = group.ErrNotChecked

// ErrInviteForOne: Invite was asked for a membership-checked group,
// whose invites are made for one person each (InviteMember).
var ErrInviteForOne = errors.New("a membership-checked group has no standing invite: make one for a person's contact code, or a bearer invite with uses and an expiry")

// MemberInfo is one member of a membership-checked group, as the surfaces
// show it.
type MemberInfo struct {
	Key     string `json:"key"`     // the member's signing key, base64url (43 characters)
	Contact string `json:"contact"` // its contact code (dweb-contact:1:...)
	Role    string `json:"role"`    // admin, member or viewer
	Slot    uint32 `json:"slot"`    // repo subkey; 0 for a viewer
	Name    string `json:"name"`    // display name, "" if none
	AddedIn uint64 `json:"added_in_epoch"`
	Self    bool   `json:"self"` // this device
}

// MembershipInfo is a group's membership list as this node holds it.
type MembershipInfo struct {
	Group   key.RecordKey `json:"group"`
	Version uint64        `json:"version"`
	Epoch   uint64        `json:"epoch"`
	Removed bool          `json:"removed"` // this device is no longer a member
	Members []MemberInfo  `json:"members"`
}

func memberKeyText(k ed25519.PublicKey) string { return base64.RawURLEncoding.EncodeToString(k) }

// checkedGroup returns gs of group k, which must be membership-checked.
func (b *Backend) checkedGroup(k key.RecordKey) (*groupState, error) {
	gs, err := b.group(k)
	if err != nil {
		return nil, err
	}
	if !gs.g.Checked() {
		return nil, badInput(fmt.Errorf("group %s: %w", k, ErrNotChecked))
	}
	return gs, nil
}

// writableGroup returns gs of group k if this node may write its repo
// there: not a viewer or a removed member of a membership-checked group
// (a *BadInputError naming why).
func (b *Backend) writableGroup(k key.RecordKey) (*groupState, error) {
	gs, err := b.group(k)
	if err != nil {
		return nil, err
	}
	if err := gs.g.CanWrite(); err != nil {
		return nil, badInput(fmt.Errorf("group %s: %w", gs.info.Name, err))
	}
	return gs, nil
}

// Members refreshes group k's membership list from the DHT (the held one
// answers when the network does not) and lists it.
func (b *Backend) Members(ctx context.Context, k key.RecordKey) (MembershipInfo, error) {
	gs, err := b.checkedGroup(k)
	if err != nil {
		return MembershipInfo{}, err
	}
	b.refreshMembership(ctx, gs, gs.g)
	return membershipInfo(gs)
}

func membershipInfo(gs *groupState) (MembershipInfo, error) {
	ms, err := gs.g.Members()
	if err != nil {
		return MembershipInfo{}, err
	}
	l := gs.g.Membership()
	out := MembershipInfo{Group: gs.info.ID, Version: l.Version, Epoch: l.Epoch, Removed: gs.g.Removed(), Members: make([]MemberInfo, 0, len(ms))}
	for _, m := range ms {
		out.Members = append(out.Members, MemberInfo{
			Key: memberKeyText(m.Contact.Sign), Contact: m.Contact.String(), Role: m.Role.String(),
			Slot: m.Slot, Name: m.Name, AddedIn: m.AddedIn, Self: m.Self,
		})
	}
	return out, nil
}

// InviteMember adds the person whose contact code is contact to group k
// in role ("admin", "member" or "viewer"; "" is "member"), with display
// name name, and returns an invite sealed to them: it names the group, the
// list version that added them and bootstrap hints, and carries no
// secret, so nobody else can use it. This node must be an admin. Bad
// input is a *BadInputError.
func (b *Backend) InviteMember(ctx context.Context, k key.RecordKey, contact, role, name string) (string, error) {
	c, err := uri.ParseContact(contact)
	if err != nil {
		return "", badInput(err)
	}
	if role == "" {
		role = group.RoleMember.String()
	}
	r, err := group.ParseRole(role)
	if err != nil {
		return "", badInput(err)
	}
	if len(name) > group.MaxMemberName {
		return "", badInput(fmt.Errorf("member name of %d bytes, limit %d", len(name), group.MaxMemberName))
	}
	gs, err := b.checkedGroup(k)
	if err != nil {
		return "", err
	}
	// Already a member: the invite is made again, anchored at the list
	// as it is now.
	b.refreshMembership(ctx, gs, gs.g)
	l := gs.g.Membership()
	if _, member := l.Member(c.Sign); !member {
		if l, err = gs.g.AddMember(ctx, c, r, name); err != nil {
			return "", memberErr(err)
		}
		b.saveMembership(gs)
	}
	h, err := l.Hash()
	if err != nil {
		return "", err
	}
	inv := uri.Invite{Version: 2, Group: k, For: c.Sign, ListVersion: l.Version, ListHash: h, Name: gs.info.Name}
	inv.Bootstrap = b.inviteHints()
	return inv.JoinCode(gs.info.Name), nil
}

// ReplaceMember hands the entry of a member of group k (named as for
// RemoveMember) over to the device whose contact code is contact, and
// returns an invite sealed to that device: a member moving to a new
// phone. The new device keeps the member's role, slot and name and takes
// its repo's files over when it joins; the old device can no longer
// write to the group or read anything new (a new epoch). This node must
// be an admin (a member moving itself asks an admin; an admin may move
// itself).
func (b *Backend) ReplaceMember(ctx context.Context, k key.RecordKey, who, contact string) (string, error) {
	c, err := uri.ParseContact(contact)
	if err != nil {
		return "", badInput(err)
	}
	gs, err := b.checkedGroup(k)
	if err != nil {
		return "", err
	}
	b.refreshMembership(ctx, gs, gs.g)
	old, err := resolveMember(gs.g, who)
	if err != nil {
		return "", err
	}
	l, err := gs.g.ReplaceMember(ctx, old, c)
	if err != nil {
		return "", memberErr(err)
	}
	b.saveMembership(gs)
	if gs.g.Removed() { // this device handed its own entry over
		b.log.Warn("this device handed its membership over to another device", "group", gs.info.ID)
	} else {
		b.resealOwn(ctx, gs)
	}
	h, err := l.Hash()
	if err != nil {
		return "", err
	}
	inv := uri.Invite{Version: 2, Group: k, For: c.Sign, ListVersion: l.Version, ListHash: h, Name: gs.info.Name, Bootstrap: b.inviteHints()}
	return inv.JoinCode(gs.info.Name), nil
}

// inheritedRepo is the repo g's slot lists from the member entry this
// device took over (ReplaceMember), if any.
func (b *Backend) inheritedRepo(ctx context.Context, g *group.Group) *key.RecordKey {
	if !g.Checked() {
		return nil
	}
	prev, ok, err := g.InheritedRepo(ctx)
	if err != nil {
		b.log.Warn("read the replaced device's repo", "group", g.Key(), "err", err)
	}
	if !ok {
		return nil
	}
	return &prev
}

// adoptInherited, on a device that took a member's entry over, publishes
// the old repo's collection (prev; nil: none) as its own repo's, so the
// member's files stay listed under its slot. Failures are logged: the
// device is a member either way.
func (b *Backend) adoptInherited(ctx context.Context, gs *groupState, prev *key.RecordKey) {
	if prev == nil || *prev == gs.info.Repo {
		return
	}
	_, _, c, err := b.repoCollection(ctx, gs, *prev, false)
	if err == nil {
		err = gs.repo.Adopt(ctx, c)
	}
	if err != nil {
		b.log.Warn("take the replaced device's files over", "group", gs.info.ID, "repo", *prev, "err", err)
		return
	}
	b.log.Info("took the replaced device's files over", "group", gs.info.ID, "from", *prev, "files", len(c.Entries))
}

// Bearer invite defaults and bounds (group.MaxInviteUses,
// group.MaxInviteLifetime).
const (
	DefaultInviteUses     = 1
	DefaultInviteLifetime = 7 * 24 * time.Hour
)

// InviteBearer makes a bearer invite to group k: whoever holds the URI
// can join, as role ("member" or "admin"; "" is "member"), up to uses
// times (1..16; 0 is 1), until lifetime from now (at most 90 days; 0 is 7
// days); an admin's node hands each use over to its joiner's own key. The
// URI carries no key that can sign the list or read the group once its
// uses are handed over. This node must be an admin.
func (b *Backend) InviteBearer(ctx context.Context, k key.RecordKey, role string, uses int, lifetime time.Duration) (string, error) {
	if role == "" {
		role = group.RoleMember.String()
	}
	r, err := group.ParseRole(role)
	if err != nil {
		return "", badInput(err)
	}
	if uses == 0 {
		uses = DefaultInviteUses
	}
	if lifetime == 0 {
		lifetime = DefaultInviteLifetime
	}
	gs, err := b.checkedGroup(k)
	if err != nil {
		return "", err
	}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return "", err
	}
	l, err := gs.g.AddInvite(ctx, seed, r, uses, time.Now().Add(lifetime))
	if err != nil {
		return "", memberErr(err)
	}
	b.saveMembership(gs)
	h, err := l.Hash()
	if err != nil {
		return "", err
	}
	ik, err := key.KeypairFromSeed(seed[:])
	if err != nil {
		return "", err
	}
	inv := uri.Invite{Version: 2, Group: k, InviteKey: ik, ListVersion: l.Version, ListHash: h, Name: gs.info.Name, Bootstrap: b.inviteHints()}
	return inv.JoinCode(gs.info.Name), nil
}

// RevokeInvite makes the bearer invite inviteURI of group k unusable: its
// uses not yet taken are removed from the list (a new epoch). This node
// must be an admin.
func (b *Backend) RevokeInvite(ctx context.Context, k key.RecordKey, inviteURI string) (MembershipInfo, error) {
	inv, err := uri.ParseInvite(inviteURI)
	if err != nil {
		return MembershipInfo{}, badInput(err)
	}
	if !inv.Bearer() || inv.Group != k {
		return MembershipInfo{}, badInput(fmt.Errorf("not a bearer invite of group %s", k))
	}
	gs, err := b.checkedGroup(k)
	if err != nil {
		return MembershipInfo{}, err
	}
	if _, err := gs.g.RevokeInvite(ctx, [32]byte(inv.InviteKey.Seed())); err != nil {
		return MembershipInfo{}, memberErr(err)
	}
	b.saveMembership(gs)
	b.resealOwn(ctx, gs)
	return membershipInfo(gs)
}

// RemoveMember removes a member of group k, named by who: its contact
// code, its member key (MemberInfo.Key) or its display name if no other
// member has it. The group moves to the next epoch: a new key, sealed to
// the others only; this node's repo is sealed again under it. This node
// must be an admin; the last admin cannot go.
func (b *Backend) RemoveMember(ctx context.Context, k key.RecordKey, who string) (MembershipInfo, error) {
	gs, err := b.checkedGroup(k)
	if err != nil {
		return MembershipInfo{}, err
	}
	b.refreshMembership(ctx, gs, gs.g)
	sign, err := resolveMember(gs.g, who)
	if err != nil {
		return MembershipInfo{}, err
	}
	if _, err := gs.g.RemoveMember(ctx, sign); err != nil {
		return MembershipInfo{}, memberErr(err)
	}
	b.saveMembership(gs)
	b.resealOwn(ctx, gs)
	return membershipInfo(gs)
}

// SetMemberRole gives a member of group k (named as for RemoveMember)
// role: "admin" or "member" for a writer, "viewer" stays "viewer". This
// node must be an admin.
func (b *Backend) SetMemberRole(ctx context.Context, k key.RecordKey, who, role string) (MembershipInfo, error) {
	r, err := group.ParseRole(role)
	if err != nil {
		return MembershipInfo{}, badInput(err)
	}
	gs, err := b.checkedGroup(k)
	if err != nil {
		return MembershipInfo{}, err
	}
	b.refreshMembership(ctx, gs, gs.g)
	sign, err := resolveMember(gs.g, who)
	if err != nil {
		return MembershipInfo{}, err
	}
	if _, err := gs.g.SetMemberRole(ctx, sign, r); err != nil {
		return MembershipInfo{}, memberErr(err)
	}
	b.saveMembership(gs)
	return membershipInfo(gs)
}

// memberErr makes a refused change (not an admin, the last admin, a
// role change the rules forbid) a *BadInputError; other errors pass.
func memberErr(err error) error {
	if errors.Is(err, group.ErrInviteUsed) || errors.Is(err, group.ErrInviteExpired) || errors.Is(err, group.ErrBadMembership) || errors.Is(err, group.ErrRemoved) || errors.Is(err, group.ErrNoEpochKey) || errors.Is(err, group.ErrFull) {
		return badInput(err)
	}
	return err
}

// resolveMember finds the signing key of the member who names.
func resolveMember(g *group.Group, who string) (ed25519.PublicKey, error) {
	who = strings.TrimSpace(who)
	if c, err := uri.ParseContact(who); err == nil {
		return c.Sign, nil
	}
	if b, err := base64.RawURLEncoding.DecodeString(who); err == nil && len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	ms, err := g.Members()
	if err != nil {
		return nil, err
	}
	var found []ed25519.PublicKey
	for _, m := range ms {
		if m.Name == who {
			found = append(found, m.Contact.Sign)
		}
	}
	switch len(found) {
	case 0:
		return nil, badInput(fmt.Errorf("no member named %q (give its contact code or key)", who))
	case 1:
		return found[0], nil
	}
	return nil, badInput(fmt.Errorf("%w: %d members are named %q; give the contact code or key", ErrAmbiguous, len(found), who))
}

// refreshMembership has g (a handle on gs's group) accept the newest list
// it can read, and acts on a change: the list saved, and after a key
// rotation this node's repo sealed again under the new key.
func (b *Backend) refreshMembership(ctx context.Context, gs *groupState, g *group.Group) {
	if !g.Checked() {
		return
	}
	before := g.Keyring().Epoch()
	changed, err := g.Refresh(ctx)
	if err != nil {
		b.log.Warn("membership list refused", "group", gs.info.ID, "err", err)
		return
	}
	if changed {
		b.saveMembership(gs)
	}
	if g.Removed() {
		if changed {
			b.log.Warn("this device was removed from the group", "group", gs.info.ID)
		}
		return
	}
	// An admin's node hands claimed bearer invite uses over (a slot write
	// changes the group record without changing the list).
	if n, err := g.HandOver(ctx); err != nil {
		b.log.Warn("hand bearer invites over", "group", gs.info.ID, "err", err)
	} else if n > 0 {
		b.log.Info("handed bearer invite uses over", "group", gs.info.ID, "entries", n)
		b.saveMembership(gs)
	}
	if g.Keyring().Epoch() != before {
		b.resealOwn(ctx, gs)
	}
}

// resealOwn writes this node's repo slot and repo values again under the
// group's current epoch key.
func (b *Backend) resealOwn(ctx context.Context, gs *groupState) {
	if _, err := gs.g.ClaimRepo(ctx, gs.info.Repo); err != nil {
		b.log.Warn("reseal repo slot", "group", gs.info.ID, "err", err)
	}
	if err := gs.repo.Reseal(ctx); err != nil {
		b.log.Warn("reseal repo", "group", gs.info.ID, "err", err)
	}
}

// saveMembership keeps the list and keys gs's group holds in the
// protected store, beside the repo keypair.
func (b *Backend) saveMembership(gs *groupState) {
	if err := b.saveMembershipErr(gs); err != nil {
		b.log.Error("save membership list", "group", gs.info.ID, "err", err)
	}
}

func (b *Backend) saveMembershipErr(gs *groupState) error {
	b.memberMu.Lock()
	defer b.memberMu.Unlock()
	raw, err := b.prot.Get(protGroupName(gs.info.ID))
	if err != nil {
		return err
	}
	var sec groupSecrets
	if err := transport.Unmarshal(raw, &sec); err != nil {
		return err
	}
	if sec.Checked, err = gs.g.Save(); err != nil {
		return err
	}
	if raw, err = transport.Marshal(sec); err != nil {
		return err
	}
	return b.prot.Put(protGroupName(gs.info.ID), raw)
}

// errBearer tells JoinGroupWith to take the bearer path (joinBearer).
var errBearer = errors.New("bearer invite")

// joinBearer joins with bearer invite inv: it takes the first free use,
// and the next when another joiner claims that one first.
func (b *Backend) joinBearer(ctx context.Context, inv uri.Invite, repoName string) (GroupInfo, error) {
	mk, err := b.memberKey()
	if err != nil {
		return GroupInfo{}, err
	}
	for from := 0; from < group.MaxInviteUses; {
		g, m, use, err := group.JoinBearer(ctx, records{b}, inv.Group, [32]byte(inv.InviteKey.Seed()), group.Anchor{Version: inv.ListVersion, Hash: inv.ListHash}, mk, from)
		if errors.Is(err, group.ErrInviteUsed) || errors.Is(err, group.ErrInviteExpired) {
			return GroupInfo{}, badInput(err)
		}
		if err != nil {
			return GroupInfo{}, err
		}
		gi, err := b.addGroup(ctx, g, m, repoName)
		if !errors.Is(err, group.ErrSlotTaken) {
			return gi, err
		}
		from = use + 1
	}
	return GroupInfo{}, badInput(group.ErrInviteUsed)
}

// joinChecked joins the membership-checked group of a sealed invite as
// this device's member key.
func (b *Backend) joinChecked(ctx context.Context, inv uri.Invite) (*group.Group, group.Meta, error) {
	mk, err := b.memberKey()
	if err != nil {
		return nil, group.Meta{}, err
	}
	if inv.Bearer() {
		return nil, group.Meta{}, errBearer
	}
	if !bytes.Equal(inv.For, mk.Public()) {
		return nil, group.Meta{}, badInput(fmt.Errorf("%w: this invite was made for member key %s, this device's is %s", group.ErrNotInvited, memberKeyText(inv.For), memberKeyText(mk.Public())))
	}
	g, m, err := group.JoinChecked(ctx, records{b}, inv.Group, mk, group.Anchor{Version: inv.ListVersion, Hash: inv.ListHash})
	if errors.Is(err, group.ErrNotInvited) {
		return nil, group.Meta{}, badInput(err)
	}
	return g, m, err
}
