package group_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/testnet"
)

// Wire codes of STORE refusals (docs/dht.md, "Wire messages").
const (
	codeNotWriter = 7
	codeBadList   = 15
)

// checkedGroup is a membership-checked group record on a test network,
// with helpers that write its list and read what each holder has.
type checkedGroup struct {
	t    *testing.T
	ctx  context.Context
	net  []*testnet.Node
	desc *record.Descriptor
	k    key.RecordKey
}

func newCheckedGroup(t *testing.T, ctx context.Context, net []*testnet.Node, admin group.MemberKey) *checkedGroup {
	t.Helper()
	desc, err := record.NewDescriptor(key.NewKeypair(), group.MembershipSchema(signKey(admin)))
	if err != nil {
		t.Fatal(err)
	}
	return &checkedGroup{t: t, ctx: ctx, net: net, desc: desc, k: desc.Key()}
}

// listValue is l as the value of subkey 0 at seq, signed by signer.
func (g *checkedGroup) listValue(l *group.Membership, seq uint64, signer group.MemberKey) *record.Value {
	g.t.Helper()
	b, err := l.Encode()
	if err != nil {
		g.t.Fatal(err)
	}
	v, err := signer.SignValue(g.k, 0, seq, b)
	if err != nil {
		g.t.Fatal(err)
	}
	return v
}

func (g *checkedGroup) slotValue(w group.MemberKey, slot uint32, seq uint64, data string) *record.Value {
	g.t.Helper()
	v, err := w.SignValue(g.k, slot, seq, []byte(data))
	if err != nil {
		g.t.Fatal(err)
	}
	return v
}

// set writes v through node i's DHT.Set.
func (g *checkedGroup) set(i int, subkey uint32, v *record.Value) error {
	return g.net[i].DHT.Set(g.ctx, g.desc, subkey, v)
}

// listVersion is the version of the list node i holds, -1 for none.
func (g *checkedGroup) listVersion(i int) int {
	g.t.Helper()
	_, v, err := g.net[i].DHT.GetLocal(g.ctx, g.k, 0)
	if errors.Is(err, dht.ErrNotFound) || (err == nil && v == nil) {
		return -1
	}
	if err != nil {
		g.t.Fatal(err)
	}
	l, err := group.DecodeMembership(v.Data)
	if err != nil {
		g.t.Fatalf("node %d holds a bad list: %v", i, err)
	}
	return int(l.Version)
}

// holds reports whether node i holds exactly v in subkey.
func (g *checkedGroup) holds(i int, subkey uint32, v *record.Value) bool {
	g.t.Helper()
	_, got, err := g.net[i].DHT.GetLocal(g.ctx, g.k, subkey)
	if errors.Is(err, dht.ErrNotFound) {
		return false
	}
	if err != nil {
		g.t.Fatal(err)
	}
	return got != nil && got.Seq == v.Seq && bytes.Equal(got.Data, v.Data) && bytes.Equal(got.Writer, v.Writer)
}

// refusedByAll sends v as subkey straight to every node (a raw STORE from
// the next node, past every check Set makes) and wants code from each,
// and each still without v.
func (g *checkedGroup) refusedByAll(what string, subkey uint32, v *record.Value, code uint16) {
	g.t.Helper()
	for i := range g.net {
		from := g.net[(i+1)%len(g.net)]
		got, msg, err := testnet.RawStore(g.ctx, from, g.net[i].Contact(), g.desc, subkey, v)
		if err != nil {
			g.t.Fatalf("%s: STORE to node %d: %v", what, i, err)
		}
		if got != code {
			g.t.Errorf("%s: node %d answered code %d (%s), want %d", what, i, got, msg, code)
		}
		if g.holds(i, subkey, v) {
			g.t.Errorf("%s: node %d holds it", what, i)
		}
	}
}

// TestHoldersCheckMembership: four real nodes hold a membership-checked
// group record. An admin writes the first list and adds bob (member) and
// carol (viewer); every holder takes bob's write to his slot and refuses
// carol's writes to any slot, bob's write to another's slot and a list
// bob signed; once the admin removes bob, every holder refuses his next
// write to his old slot.
func TestHoldersCheckMembership(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	net := testnet.NewWith(t, 4, testnet.Options{Membership: group.NewHolders()})
	ks := memberKeys(t, 3)
	admin, bob, carol := ks[0], ks[1], ks[2]
	g := newCheckedGroup(t, ctx, net, admin)

	v0, err := group.NewMembership(g.k, admin, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := v0.Add(admin, bob.Contact(), group.RoleMember, nil)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := v1.Add(admin, carol.Contact(), group.RoleViewer, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Before any list: a first list not signed by the admin the record
	// commits to.
	bobs, err := group.NewMembership(g.k, bob, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.refusedByAll("a first list bob made", 0, g.listValue(bobs, 0, bob), codeBadList)
	for seq, l := range []*group.Membership{v0, v1, v2} {
		if err := g.set(0, 0, g.listValue(l, uint64(seq), admin)); err != nil {
			t.Fatalf("write list version %d: %v", l.Version, err)
		}
	}
	for i := range net {
		if got := g.listVersion(i); got != 2 {
			t.Fatalf("node %d holds list version %d, want 2", i, got)
		}
	}
	adminSlot, _ := v2.Member(signKey(admin))
	bobSlot, _ := v2.Member(signKey(bob))

	// Bob writes his slot: every holder takes it.
	bobWrite := g.slotValue(bob, bobSlot.Slot, 1, "bob's repo")
	if err := g.set(1, bobSlot.Slot, bobWrite); err != nil {
		t.Fatalf("bob's write to his slot: %v", err)
	}
	for i := range net {
		if !g.holds(i, bobSlot.Slot, bobWrite) {
			t.Errorf("node %d does not hold bob's write to his slot", i)
		}
	}

	// Carol, a viewer, has no slot: her writes to the admin's, bob's and a
	// free slot are refused by every holder, and by her own node's Set.
	for _, slot := range []uint32{adminSlot.Slot, bobSlot.Slot, 30} {
		v := g.slotValue(carol, slot, 7, "carol's")
		g.refusedByAll("carol's write", slot, v, codeNotWriter)
		if err := g.set(2, slot, v); !errors.Is(err, record.ErrNotWriter) {
			t.Errorf("carol's Set of slot %d: %v, want ErrNotWriter", slot, err)
		}
	}
	// Bob writing the admin's slot.
	g.refusedByAll("bob's write to the admin's slot", adminSlot.Slot, g.slotValue(bob, adminSlot.Slot, 7, "bob's"), codeNotWriter)

	// A list bob, a member, signed, making himself an admin.
	members := slices.Clone(v2.Members)
	for i := range members {
		if bytes.Equal(members[i].Sign, signKey(bob)) {
			members[i].Role = group.RoleAdmin
		}
	}
	h, err := v2.Hash()
	if err != nil {
		t.Fatal(err)
	}
	forged := &group.Membership{Group: g.k[:], Version: 3, Epoch: v2.Epoch, Prev: h[:], Members: members}
	if err := forged.SignAs(bob); err != nil {
		t.Fatal(err)
	}
	g.refusedByAll("a list bob signed", 0, g.listValue(forged, 3, bob), codeBadList)
	// The admin's signature on the value does not make bob's list an
	// admin's, nor is the admin's list bob's to write.
	g.refusedByAll("bob's list in the admin's value", 0, g.listValue(forged, 3, admin), codeBadList)
	v3, err := v2.Remove(admin, signKey(bob))
	if err != nil {
		t.Fatal(err)
	}
	g.refusedByAll("the admin's list in bob's value", 0, g.listValue(v3, 3, bob), codeBadList)

	// The admin removes bob: his next write to his old slot is refused.
	if err := g.set(0, 0, g.listValue(v3, 3, admin)); err != nil {
		t.Fatalf("write list version 3: %v", err)
	}
	for i := range net {
		if got := g.listVersion(i); got != 3 {
			t.Fatalf("node %d holds list version %d, want 3", i, got)
		}
	}
	late := g.slotValue(bob, bobSlot.Slot, 2, "bob, removed")
	g.refusedByAll("removed bob's write", bobSlot.Slot, late, codeNotWriter)
	if err := g.set(1, bobSlot.Slot, late); !errors.Is(err, record.ErrNotWriter) {
		t.Errorf("removed bob's Set: %v, want ErrNotWriter", err)
	}
}

// TestSlotWritePushesListFirst: node 3 holds no list of the group when
// bob writes his slot. It refuses the slot (no list to check it against);
// bob's Set then sends it the list and the slot again, and it holds both.
// A node with no list that writes a slot reads the list first.
func TestSlotWritePushesListFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	net := testnet.NewWith(t, 4, testnet.Options{Membership: group.NewHolders()})
	ks := memberKeys(t, 3)
	admin, bob, carol := ks[0], ks[1], ks[2]
	g := newCheckedGroup(t, ctx, net, admin)
	v0, err := group.NewMembership(g.k, admin, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := v0.Add(admin, bob.Contact(), group.RoleMember, nil)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := v1.Add(admin, carol.Contact(), group.RoleMember, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The list reaches nodes 0..2 only.
	for i := 0; i < 3; i++ {
		for seq, l := range []*group.Membership{v0, v1, v2} {
			code, msg, err := testnet.RawStore(ctx, net[(i+1)%3], net[i].Contact(), g.desc, 0, g.listValue(l, uint64(seq), admin))
			if err != nil || code != 0 {
				t.Fatalf("list version %d to node %d: code %d (%s), %v", l.Version, i, code, msg, err)
			}
		}
	}
	if got := g.listVersion(3); got != -1 {
		t.Fatalf("node 3 holds list version %d before the test", got)
	}
	bobSlot, _ := v2.Member(signKey(bob))
	w := g.slotValue(bob, bobSlot.Slot, 1, "bob's repo")
	if err := g.set(1, bobSlot.Slot, w); err != nil {
		t.Fatalf("bob's write: %v", err)
	}
	if got := g.listVersion(3); got != 2 {
		t.Errorf("node 3 holds list version %d after bob's write, want 2", got)
	}
	for i := range net {
		if !g.holds(i, bobSlot.Slot, w) {
			t.Errorf("node %d does not hold bob's write", i)
		}
	}

	// A second group, whose list only nodes 0..2 hold, written by carol
	// from node 3, which has none: its Set reads the list, then writes.
	g2 := newCheckedGroup(t, ctx, net, admin)
	u0, err := group.NewMembership(g2.k, admin, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	u1, err := u0.Add(admin, carol.Contact(), group.RoleMember, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		for seq, l := range []*group.Membership{u0, u1} {
			if code, msg, err := testnet.RawStore(ctx, net[(i+1)%3], net[i].Contact(), g2.desc, 0, g2.listValue(l, uint64(seq), admin)); err != nil || code != 0 {
				t.Fatalf("list to node %d: code %d (%s), %v", i, code, msg, err)
			}
		}
	}
	carolSlot, _ := u1.Member(signKey(carol))
	cw := g2.slotValue(carol, carolSlot.Slot, 1, "carol's repo")
	if err := g2.set(3, carolSlot.Slot, cw); err != nil {
		t.Fatalf("carol's write from a node without the list: %v", err)
	}
	for i := range net {
		if !g2.holds(i, carolSlot.Slot, cw) {
			t.Errorf("node %d does not hold carol's write", i)
		}
	}
}
