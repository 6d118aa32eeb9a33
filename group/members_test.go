package group_test

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/testnet"
)

func anchorOf(t *testing.T, l *group.Membership) group.Anchor {
	t.Helper()
	h, err := l.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return group.Anchor{Version: l.Version, Hash: h}
}

func openTestBlobs(t *testing.T, n *testnet.Node) *blobsync.Store {
	t.Helper()
	b, err := blobsync.OpenStore(n.Store, filepath.Join(n.Dir, "blobs"), blobsync.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheckedGroupRemoval: four real nodes on loopback, each a member of
// one membership-checked group: ana (admin) adds bo and carol (members)
// and dave (viewer), each joins with its own key from an anchored
// invite; a key the invite was not made for cannot join; the viewer
// cannot claim a repo and its forged slot write is refused by the
// holders. ana removes carol: bo and dave move to epoch 1 on their next
// refresh, carol learns she was removed, cannot open bo's new repo
// values, and her slot disappears from listings, while she still opens
// what she read before. A list or slot value at seq 2^64-1 is refused
// and the group goes on.
func TestCheckedGroupRemoval(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	net := testnet.NewWith(t, 4, testnet.Options{Membership: group.NewHolders()})
	ks := memberKeys(t, 5)
	ana, bo, carol, dave, eve := ks[0], ks[1], ks[2], ks[3], ks[4]

	ga, err := group.CreateChecked(ctx, net[0].DHT, ana, "newsroom", "Ana")
	if err != nil {
		t.Fatal(err)
	}
	joined := map[string]*group.Group{}
	for i, m := range []struct {
		name string
		k    group.MemberKey
		role group.Role
	}{{"bo", bo, group.RoleMember}, {"carol", carol, group.RoleMember}, {"dave", dave, group.RoleViewer}} {
		l, err := ga.AddMember(ctx, m.k.Contact(), m.role, m.name)
		if err != nil {
			t.Fatal(err)
		}
		if m.name == "bo" {
			// eve holds bo's invite, not bo's key.
			if _, _, err := group.JoinChecked(ctx, net[3].DHT, ga.Key(), eve, anchorOf(t, l)); !errors.Is(err, group.ErrNotInvited) {
				t.Fatalf("a sealed invite used by another key: %v", err)
			}
		}
		g, meta, err := group.JoinChecked(ctx, net[i+1].DHT, ga.Key(), m.k, anchorOf(t, l))
		if err != nil {
			t.Fatalf("%s joins: %v", m.name, err)
		}
		if meta.Name != "newsroom" {
			t.Fatalf("%s reads the group name %q", m.name, meta.Name)
		}
		joined[m.name] = g
	}
	gb, gc, gd := joined["bo"], joined["carol"], joined["dave"]

	// Repos: ana, bo and carol claim their slots; dave cannot.
	repos := map[string]*datarepo.Repo{}
	for i, m := range []struct {
		name string
		g    *group.Group
	}{{"ana", ga}, {"bo", gb}, {"carol", gc}} {
		r, _, err := datarepo.Create(ctx, net[i].DHT, openTestBlobs(t, net[i]), m.g.Keys(), m.name+"'s phone")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.g.ClaimRepo(ctx, r.Key()); err != nil {
			t.Fatalf("%s claims: %v", m.name, err)
		}
		repos[m.name] = r
	}
	if _, err := gd.ClaimRepo(ctx, key.RecordKey{9}); !errors.Is(err, group.ErrViewer) {
		t.Fatalf("a viewer claimed a repo: %v", err)
	}
	desc, _, err := net[3].DHT.Get(ctx, ga.Key(), group.SubkeyMembership)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := dave.SignValue(ga.Key(), 10, 0, []byte("dave's"))
	if err != nil {
		t.Fatal(err)
	}
	if err := net[3].DHT.Set(ctx, desc, 10, forged); err == nil {
		t.Fatal("a viewer's write to a free slot was taken")
	}
	keys, err := gd.RepoKeys(ctx)
	if err != nil || len(keys) != 3 {
		t.Fatalf("dave lists %d repos, %v", len(keys), err)
	}

	// carol reads bo's repo name, written in epoch 0.
	boAtCarol, err := datarepo.OpenKey(ctx, net[2].DHT, nil, gc.Keys(), repos["bo"].Key())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := boAtCarol.Name(ctx); err != nil || n != "bo's phone" {
		t.Fatalf("carol reads bo's name: %q %v", n, err)
	}
	_, oldValue, err := net[2].DHT.Get(ctx, repos["bo"].Key(), datarepo.SubkeyName)
	if err != nil {
		t.Fatal(err)
	}

	// ana removes carol.
	start := time.Now()
	l, err := ga.RemoveMember(ctx, carol.Public())
	if err != nil {
		t.Fatal(err)
	}
	if l.Epoch != 1 || ga.Keyring().Epoch() != 1 {
		t.Fatalf("removal: list epoch %d, ana's keyring %d", l.Epoch, ga.Keyring().Epoch())
	}
	for name, g := range map[string]*group.Group{"bo": gb, "dave": gd, "carol": gc} {
		if changed, err := g.Refresh(ctx); err != nil || !changed {
			t.Fatalf("%s refresh: %v %v", name, changed, err)
		}
	}
	t.Logf("removal to every member refreshed: %v", time.Since(start))
	if !gc.Removed() || gb.Removed() || gd.Removed() {
		t.Fatalf("removed: carol %v bo %v dave %v", gc.Removed(), gb.Removed(), gd.Removed())
	}
	if gb.Keyring().Epoch() != 1 || gd.Keyring().Current() != gb.Keyring().Current() {
		t.Fatal("the remaining members hold different epoch keys")
	}
	if gc.TunnelSecret() == gb.TunnelSecret() {
		t.Fatal("the removed member derives the new tunnel key")
	}

	// Saved and reopened without the network, each keeps what it held.
	for name, g := range map[string]*group.Group{"bo": gb, "carol": gc} {
		b, err := g.Save()
		if err != nil {
			t.Fatal(err)
		}
		k := map[string]group.MemberKey{"bo": bo, "carol": carol}[name]
		again, err := group.OpenChecked(net[1].DHT, k, b)
		if err != nil {
			t.Fatal(err)
		}
		if again.Removed() != g.Removed() || again.Keyring().Epoch() != g.Keyring().Epoch() || len(again.Keyring().Epochs()) != len(g.Keyring().Epochs()) {
			t.Fatalf("%s reopened: removed %v, epoch %d, %d keys", name, again.Removed(), again.Keyring().Epoch(), len(again.Keyring().Epochs()))
		}
	}
	if _, err := group.OpenChecked(net[1].DHT, bo, []byte("garbage")); err == nil {
		t.Fatal("garbage reopened")
	}

	// bo renames his repo in epoch 1: dave and ana read it, carol cannot.
	if err := repos["bo"].SetName(ctx, "bo's new phone"); err != nil {
		t.Fatal(err)
	}
	boAtDave, err := datarepo.OpenKey(ctx, net[3].DHT, nil, gd.Keys(), repos["bo"].Key())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := boAtDave.Name(ctx); err != nil || n != "bo's new phone" {
		t.Fatalf("dave reads bo's new name: %q %v", n, err)
	}
	if _, err := boAtCarol.Name(ctx); !errors.Is(err, record.ErrDecrypt) {
		t.Fatalf("carol read bo's value of epoch 1: %v", err)
	}
	if pt, err := gc.Keys().Open(repos["bo"].Key(), datarepo.SubkeyName, oldValue.Data); err != nil || len(pt) == 0 {
		t.Fatalf("carol lost what she could read before: %v", err)
	}
	// Reseal moves bo's older values (his collection) to epoch 1 too.
	if _, ok, err := boAtCarol.CollectionHash(ctx); err != nil || !ok {
		t.Fatalf("before the reseal carol reads bo's epoch-0 collection value: %v", err)
	}
	if err := repos["bo"].Reseal(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := boAtCarol.CollectionHash(ctx); !errors.Is(err, record.ErrDecrypt) {
		t.Fatalf("after the reseal carol still reads bo's collection value: %v", err)
	}
	if _, ok, err := boAtDave.CollectionHash(ctx); err != nil || !ok {
		t.Fatalf("dave after the reseal: %v", err)
	}
	if _, err := gc.RemoveMember(ctx, bo.Public()); !errors.Is(err, group.ErrRemoved) {
		t.Fatalf("a removed member changed the list: %v", err)
	}
	if _, err := gc.ClaimRepo(ctx, repos["carol"].Key()); !errors.Is(err, group.ErrRemoved) {
		t.Fatalf("a removed member claimed: %v", err)
	}
	keys, err = gb.RepoKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("bo lists %d repos after carol's removal, %v", len(keys), err)
	}
	for _, k := range keys {
		if k == repos["carol"].Key() {
			t.Fatal("carol's repo still listed")
		}
	}

	// Hostile seqs: a value at 2^64-1 cannot even be signed here (holders
	// refuse one made elsewhere: seq_test.go), and the group goes on.
	if _, err := bo.SignValue(ga.Key(), 2, math.MaxUint64, []byte("x")); !errors.Is(err, record.ErrSeqRange) {
		t.Fatalf("a slot value at seq 2^64-1: %v", err)
	}
	if _, err := ga.AddMember(ctx, eve.Contact(), group.RoleViewer, "eve"); err != nil {
		t.Fatalf("the group broke after hostile seqs: %v", err)
	}
	if _, err := gb.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ms, err := gb.Members(); err != nil || len(ms) != 4 {
		t.Fatalf("bo after the next change: %d members, %v", len(ms), err)
	}
}

// TestCatchUpAcrossEpochs: bo is offline while ana removes carol and then
// dave (two epochs, three list versions); on his next refresh he takes
// the newest list (signed by an admin of the one he held), holds the keys
// of every epoch he missed through its chain, and reads a value written
// in the epoch between.
func TestCatchUpAcrossEpochs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	net := testnet.NewWith(t, 3, testnet.Options{Membership: group.NewHolders()})
	ks := memberKeys(t, 4)
	ana, bo, carol, dave := ks[0], ks[1], ks[2], ks[3]
	ga, err := group.CreateChecked(ctx, net[0].DHT, ana, "g", "")
	if err != nil {
		t.Fatal(err)
	}
	var l *group.Membership
	for _, k := range []group.MemberKey{bo, carol, dave} {
		if l, err = ga.AddMember(ctx, k.Contact(), group.RoleMember, ""); err != nil {
			t.Fatal(err)
		}
	}
	gb, _, err := group.JoinChecked(ctx, net[1].DHT, ga.Key(), bo, anchorOf(t, l))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ga.RemoveMember(ctx, carol.Public()); err != nil {
		t.Fatal(err)
	}
	rk := key.RecordKey{4}
	between, err := ga.Keys().Seal(rk, 1, []byte("epoch 1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ga.RemoveMember(ctx, dave.Public()); err != nil {
		t.Fatal(err)
	}
	if gb.Keyring().Epoch() != 0 {
		t.Fatal("bo moved on while offline")
	}
	if changed, err := gb.Refresh(ctx); err != nil || !changed {
		t.Fatalf("bo's refresh: %v %v", changed, err)
	}
	if r := gb.Keyring(); r.Epoch() != 2 || len(r.Epochs()) != 3 {
		t.Fatalf("bo holds epoch %d, keys %v", r.Epoch(), r.Epochs())
	}
	if pt, err := gb.Keys().Open(rk, 1, between); err != nil || string(pt) != "epoch 1" {
		t.Fatalf("bo reads the epoch he missed: %q %v", pt, err)
	}
}
