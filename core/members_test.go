package core

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/tunnel"
)

// TestRemovedMemberGetsNothingNew: four real nodes on loopback share a
// membership-checked group: alice (admin) invites bob and carol as
// members and dave as a viewer, each with an invite sealed to its contact
// code (eve, holding carol's invite, cannot use it). Everyone gets
// alice's first file. alice removes carol: bob and dave reach the new
// epoch through their watches, bob adds a file, and alice and dave get it
// while carol gets 0 bytes of it, cannot list it, and her tunnel
// handshake to bob is refused; she keeps her copy of the first file.
func TestRemovedMemberGetsNothingNew(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 120*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob", "carol", "dave", "eve")
	alice, bob, carol, dave, eve := nodes[0], nodes[1], nodes[2], nodes[3], nodes[4]
	for _, n := range nodes {
		waitBootedT(t, n)
	}
	g, err := alice.CreateGroupWith(ctx, "newsroom", GroupOptions{Checked: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(g.ID); !errors.Is(err, ErrInviteForOne) {
		t.Fatalf("an invite for anyone to a checked group: %v", err)
	}
	invites := map[string]string{}
	for _, m := range []struct {
		b    *Backend
		role string
	}{{bob, "member"}, {carol, "member"}, {dave, "viewer"}} {
		c, err := m.b.MemberContact()
		if err != nil {
			t.Fatal(err)
		}
		inv, err := alice.InviteMember(ctx, g.ID, c.String(), m.role, m.b.DeviceName())
		if err != nil {
			t.Fatal(err)
		}
		invites[m.b.DeviceName()] = inv
	}
	var bad *BadInputError
	if _, err := eve.JoinGroup(ctx, invites["carol"]); !errors.As(err, &bad) {
		t.Fatalf("eve used carol's sealed invite: %v", err)
	}
	for _, m := range []*Backend{bob, carol, dave} {
		if _, err := m.JoinGroup(ctx, invites[m.DeviceName()]); err != nil {
			t.Fatalf("%s joins: %v", m.DeviceName(), err)
		}
	}
	p1, b1 := writeFile(t, tmp, "before.bin", 300<<10)
	if _, err := alice.AddFiles(ctx, g.ID, []string{p1}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Backend{bob, carol, dave} {
		waitListed(ctx, t, m, g.ID, "before.bin")
		getFile(ctx, t, m, g.ID, "before.bin", filepath.Join(tmp, m.DeviceName()+"-before.bin"), b1)
	}

	start := time.Now()
	carolContact, _ := carol.MemberContact()
	ms, err := alice.RemoveMember(ctx, g.ID, carolContact.String())
	if err != nil {
		t.Fatal(err)
	}
	if ms.Epoch != 1 || len(ms.Members) != 3 {
		t.Fatalf("after the removal: epoch %d, %d members", ms.Epoch, len(ms.Members))
	}
	epochOf := func(b *Backend) uint64 {
		gs, err := b.group(g.ID)
		if err != nil {
			t.Fatal(err)
		}
		return gs.g.Keyring().Epoch()
	}
	waitFor(t, "bob and dave in epoch 1", func() bool { return epochOf(bob) == 1 && epochOf(dave) == 1 })
	t.Logf("rotation: %v from the removal to every remaining member in epoch 1", time.Since(start))
	waitFor(t, "carol to learn of her removal", func() bool {
		gs, _ := carol.group(g.ID)
		return gs.g.Removed()
	})

	p2, b2 := writeFile(t, tmp, "after.bin", 300<<10)
	added, err := bob.AddFiles(ctx, g.ID, []string{p2})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Backend{alice, dave} {
		waitListed(ctx, t, m, g.ID, "after.bin")
		getFile(ctx, t, m, g.ID, "after.bin", filepath.Join(tmp, m.DeviceName()+"-after.bin"), b2)
	}
	out := filepath.Join(tmp, "carol-after.bin")
	if _, err := carol.GetFile(ctx, g.ID, key.RecordKey{}, "after.bin", out, nil); err == nil {
		t.Fatal("the removed member got a file added after her removal")
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the removed member's output exists: %v", err)
	}
	if ok, _ := carol.blobs.Has(added[0].Hash); ok {
		t.Fatal("the removed member holds bytes of the new file")
	}
	l, _ := carol.List(ctx, g.ID)
	for _, f := range l.Files {
		if f.Name == "after.bin" {
			t.Fatal("the removed member lists the new file")
		}
	}
	if got, err := os.ReadFile(filepath.Join(tmp, "carol-before.bin")); err != nil || len(got) != len(b1) {
		t.Fatalf("the removed member lost her copy: %v", err)
	}

	// carol's tunnel to bob: the handshake needs the new epoch's key.
	gi, err := bob.group(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	td, ok := descriptorOf(ctx, t, bob, gi.info)
	if !ok {
		t.Fatal("bob has no tunnel descriptor")
	}
	gc, err := carol.group(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.openTunnel(ctx, gc, td); !errors.Is(err, tunnel.ErrHandshake) {
		t.Fatalf("the removed member's tunnel to bob: %v, want a refused handshake", err)
	}
	// The same through PingMembers: carol's ping of bob (a descriptor she
	// read before) is refused; alice's is answered.
	pingOf := func(from *Backend, to *Backend) PingResult {
		ps, err := from.PingMembers(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Node == to.NodeID() {
				return p
			}
		}
		t.Fatalf("%s's ping lists no %s: %+v", from.DeviceName(), to.DeviceName(), ps)
		return PingResult{}
	}
	if p := pingOf(carol, bob); p.Result != PingRefused || !p.Stale {
		t.Fatalf("carol pings bob: %+v", p)
	}
	if p := pingOf(alice, bob); p.Result != PingOK || p.Stale {
		t.Fatalf("alice pings bob: %+v", p)
	}
	// Neither the viewer nor the removed member may add a file.
	for _, m := range []*Backend{dave, carol} {
		if _, err := m.AddFiles(ctx, g.ID, []string{p1}); !errors.As(err, &bad) {
			t.Fatalf("%s added a file: %v", m.DeviceName(), err)
		}
	}
	// A viewer cannot remove anyone.
	bobContact, _ := bob.MemberContact()
	if _, err := dave.RemoveMember(ctx, g.ID, bobContact.String()); !errors.As(err, &bad) {
		t.Fatalf("a viewer removed a member: %v", err)
	}
}

// TestBearerInviteHandOver: a two-use bearer invite through real nodes:
// bob and carol join with the same URI, eve finds it used up; alice's
// node hands both uses over to bob's and carol's own member keys through
// its watch, and bob then writes a file alice lists. An invite past its
// expiry and a revoked one are refused.
func TestBearerInviteHandOver(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 120*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob", "carol", "eve")
	alice, bob, carol, eve := nodes[0], nodes[1], nodes[2], nodes[3]
	for _, n := range nodes {
		waitBootedT(t, n)
	}
	g, err := alice.CreateGroupWith(ctx, "desk", GroupOptions{Checked: true})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := alice.InviteBearer(ctx, g.ID, "member", 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Backend{bob, carol} {
		if _, err := m.JoinGroup(ctx, inv); err != nil {
			t.Fatalf("%s joins with the bearer invite: %v", m.DeviceName(), err)
		}
	}
	var bad *BadInputError
	if _, err := eve.JoinGroup(ctx, inv); !errors.As(err, &bad) || !errors.Is(err, group.ErrInviteUsed) {
		t.Fatalf("a third use of a two-use invite: %v", err)
	}
	for _, m := range []*Backend{bob, carol} {
		c, _ := m.MemberContact()
		waitFor(t, m.DeviceName()+"'s use handed over to its own key", func() bool {
			mi, err := m.Members(ctx, g.ID)
			if err != nil {
				return false
			}
			for _, x := range mi.Members {
				if x.Self && x.Contact == c.String() {
					return true
				}
			}
			return false
		})
	}
	p, data := writeFile(t, tmp, "handed.bin", 64<<10)
	if _, err := bob.AddFiles(ctx, g.ID, []string{p}); err != nil {
		t.Fatal(err)
	}
	waitListed(ctx, t, alice, g.ID, "handed.bin")
	getFile(ctx, t, alice, g.ID, "handed.bin", filepath.Join(tmp, "alice-handed.bin"), data)

	short, err := alice.InviteBearer(ctx, g.ID, "", 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	// Eve may first read a membership version from before the invite
	// (the DHT is eventually consistent), which the invite's anchor
	// refuses as older. Once she reads the invite's version, its entry
	// says expired: alice's node, whose watch passes over the list on
	// every change, keeps an unclaimed use listed until the holders'
	// grace has passed, so eve is never told "used up or revoked".
	var last error
	waitFor(t, "an expired invite refused as expired", func() bool {
		_, last = eve.JoinGroup(ctx, short)
		switch {
		case last == nil:
			t.Fatal("eve joined with an expired invite")
		case errors.Is(last, group.ErrBadMembership) && strings.Contains(last.Error(), "older than the invite's"):
			return false
		case !errors.Is(last, group.ErrInviteExpired):
			t.Fatalf("an expired invite: %v", last)
		}
		return true
	})
	revoked, err := alice.InviteBearer(ctx, g.ID, "", 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.RevokeInvite(ctx, g.ID, revoked); err != nil {
		t.Fatal(err)
	}
	if _, err := eve.JoinGroup(ctx, revoked); !errors.Is(err, group.ErrInviteUsed) {
		t.Fatalf("a revoked invite: %v", err)
	}
}

// TestDeviceMigration: bob moves to a new phone, once alice holds a copy
// of his file. alice (admin) hands bob's
// entry over to the new phone's contact code; the new phone joins with
// the invite sealed to it, lists bob's files under its own repo and adds
// more, which alice gets; the old phone can no longer add a file, and a
// write to the slot signed by its key is refused by the holders.
func TestDeviceMigration(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 120*time.Second)
	nodes := startNodes(t, tmp, "alice", "bob", "bob2")
	alice, bob, bob2 := nodes[0], nodes[1], nodes[2]
	for _, n := range nodes {
		waitBootedT(t, n)
	}
	g, err := alice.CreateGroupWith(ctx, "family", GroupOptions{Checked: true})
	if err != nil {
		t.Fatal(err)
	}
	bc, _ := bob.MemberContact()
	inv, err := alice.InviteMember(ctx, g.ID, bc.String(), "member", "Bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinGroup(ctx, inv); err != nil {
		t.Fatal(err)
	}
	p1, b1 := writeFile(t, tmp, "old-phone.bin", 100<<10)
	if _, err := bob.AddFiles(ctx, g.ID, []string{p1}); err != nil {
		t.Fatal(err)
	}

	// alice holds a copy (as a backup server would): the old phone, once
	// handed over, serves no one.
	waitListed(ctx, t, alice, g.ID, "old-phone.bin")
	getFile(ctx, t, alice, g.ID, "old-phone.bin", filepath.Join(tmp, "alice-old.bin"), b1)

	nc, _ := bob2.MemberContact()
	transfer, err := alice.ReplaceMember(ctx, g.ID, "Bob", nc.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob2.JoinGroup(ctx, transfer); err != nil {
		t.Fatal(err)
	}
	ms, err := bob2.Members(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	var self *MemberInfo
	for i := range ms.Members {
		if ms.Members[i].Self {
			self = &ms.Members[i]
		}
	}
	if self == nil || self.Name != "Bob" || self.Role != "member" || ms.Epoch != 1 {
		t.Fatalf("the new phone's entry: %+v (epoch %d)", self, ms.Epoch)
	}
	mine, err := bob2.ListFiles(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range mine {
		found = found || (f.Name == "old-phone.bin" && f.Mine)
	}
	if !found {
		t.Fatalf("the new phone did not take the old phone's files over: %+v", mine)
	}
	getFile(ctx, t, bob2, g.ID, "old-phone.bin", filepath.Join(tmp, "bob2-old.bin"), b1)

	p2, b2 := writeFile(t, tmp, "new-phone.bin", 100<<10)
	if _, err := bob2.AddFiles(ctx, g.ID, []string{p2}); err != nil {
		t.Fatal(err)
	}
	waitListed(ctx, t, alice, g.ID, "new-phone.bin")
	getFile(ctx, t, alice, g.ID, "new-phone.bin", filepath.Join(tmp, "alice-new.bin"), b2)

	waitFor(t, "the old phone to learn it was handed over", func() bool {
		gs, _ := bob.group(g.ID)
		bob.refreshMembership(ctx, gs, gs.g)
		return gs.g.Removed()
	})
	var bad *BadInputError
	if _, err := bob.AddFiles(ctx, g.ID, []string{p2}); !errors.As(err, &bad) {
		t.Fatalf("the old phone added a file: %v", err)
	}
	gs, _ := bob.group(g.ID)
	if _, err := gs.g.ClaimRepo(ctx, gs.info.Repo); err == nil {
		t.Fatal("the old phone claimed its slot again")
	}
}

// waitListed waits until b's listing of group g shows a file named name.
func waitListed(ctx context.Context, t *testing.T, b *Backend, g key.RecordKey, name string) {
	t.Helper()
	waitFor(t, b.DeviceName()+" to list "+name, func() bool {
		l, _ := b.List(ctx, g)
		for _, f := range l.Files {
			if f.Name == name {
				return true
			}
		}
		return false
	})
}
