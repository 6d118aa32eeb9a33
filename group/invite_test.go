package group_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/testnet"
)

func newSeed(t *testing.T) [32]byte {
	t.Helper()
	var s [32]byte
	if _, err := rand.Read(s[:]); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBearerInvite: four real nodes on loopback. ana makes a two-use
// bearer invite; bo and carol each take a use with it and claim a slot,
// dave finds it used up; ana's hand-over gives the two slots to bo's and
// carol's own keys (a new epoch), after which the invite's keys open
// nothing new and bo and carol go on as members with their own keys. An
// expired invite and a revoked one cannot be used.
func TestBearerInvite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	net := testnet.NewWith(t, 4, testnet.Options{Membership: group.NewHolders()})
	ks := memberKeys(t, 4)
	ana, bo, carol, dave := ks[0], ks[1], ks[2], ks[3]
	ga, err := group.CreateChecked(ctx, net[0].DHT, ana, "newsroom", "Ana")
	if err != nil {
		t.Fatal(err)
	}
	seed := newSeed(t)
	if _, err := ga.AddInvite(ctx, seed, group.RoleViewer, 1, time.Now().Add(time.Hour)); !errors.Is(err, group.ErrBadMembership) {
		t.Fatalf("a bearer invite for viewers: %v", err)
	}
	l, err := ga.AddInvite(ctx, seed, group.RoleMember, 2, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a := anchorOf(t, l)
	joined := map[string]*group.Group{}
	repos := map[string]key.RecordKey{}
	for i, m := range []struct {
		name string
		k    group.MemberKey
	}{{"bo", bo}, {"carol", carol}} {
		g, meta, use, err := group.JoinBearer(ctx, net[i+1].DHT, ga.Key(), seed, a, m.k, 0)
		if err != nil || meta.Name != "newsroom" || use != i {
			t.Fatalf("%s joins: use %d, %q, %v", m.name, use, meta.Name, err)
		}
		var racer *group.Group
		if m.name == "carol" {
			// dave reads the same free use before carol claims it.
			var use2 int
			racer, _, use2, err = group.JoinBearer(ctx, net[3].DHT, ga.Key(), seed, a, dave, 0)
			if err != nil || use2 != 1 {
				t.Fatalf("dave's racing join: use %d, %v", use2, err)
			}
		}
		r, _, err := datarepo.Create(ctx, net[i+1].DHT, openTestBlobs(t, net[i+1]), g.Keys(), m.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.ClaimRepo(ctx, r.Key()); err != nil {
			t.Fatalf("%s claims: %v", m.name, err)
		}
		joined[m.name] = g
		repos[m.name] = r.Key()
		if racer != nil {
			if _, err := racer.ClaimRepo(ctx, key.RecordKey{7}); !errors.Is(err, group.ErrSlotTaken) {
				t.Fatalf("a claim over another joiner's: %v", err)
			}
		}
	}
	if _, _, _, err := group.JoinBearer(ctx, net[3].DHT, ga.Key(), seed, a, dave, 0); !errors.Is(err, group.ErrInviteUsed) {
		t.Fatalf("a third use of a two-use invite: %v", err)
	}
	n, err := ga.HandOver(ctx)
	if err != nil || n != 2 {
		t.Fatalf("hand-over: %d, %v", n, err)
	}
	if ga.Keyring().Epoch() != 1 {
		t.Fatalf("hand-over in epoch %d", ga.Keyring().Epoch())
	}
	for name, g := range joined {
		if _, err := g.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		ms, _ := g.Members()
		self := 0
		for _, m := range ms {
			if m.Self && m.Contact.Sign.Equal(map[string]group.MemberKey{"bo": bo, "carol": carol}[name].Public()) {
				self++
			}
		}
		if g.Removed() || self != 1 || g.Keyring().Epoch() != 1 {
			t.Fatalf("%s after the hand-over: removed %v, self entries %d, epoch %d", name, g.Removed(), self, g.Keyring().Epoch())
		}
		if err := g.CanWrite(); err != nil {
			t.Fatalf("%s cannot write: %v", name, err)
		}
		// The slot holds the claim the invite key signed: written again
		// with the member's own key (core does it on the new epoch).
		if _, err := g.ClaimRepo(ctx, repos[name]); err != nil {
			t.Fatalf("%s claims with its own key: %v", name, err)
		}
	}
	if _, err := ga.Membership().OpenKeys(group.InviteMemberKey(seed, 0)); !errors.Is(err, group.ErrNoEpochKey) {
		t.Fatalf("the used invite's key opens the new epoch: %v", err)
	}
	keys, err := ga.RepoKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("ana lists %d repos, %v", len(keys), err)
	}

	// Expired: usable for one second.
	seed2 := newSeed(t)
	l, err = ga.AddInvite(ctx, seed2, group.RoleMember, 1, time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, _, _, err := group.JoinBearer(ctx, net[3].DHT, ga.Key(), seed2, anchorOf(t, l), dave, 0); !errors.Is(err, group.ErrInviteExpired) {
		t.Fatalf("an expired invite: %v", err)
	}
	// The unclaimed use stays listed while a holder would still take a
	// claim by it (the grace for clocks), so a joiner still reads that
	// the invite expired; past the grace it is dropped.
	if n, err := ga.HandOver(ctx); err != nil || n != 0 {
		t.Fatalf("the expired use was dropped within the grace: %d, %v", n, err)
	}
	if _, _, _, err := group.JoinBearer(ctx, net[3].DHT, ga.Key(), seed2, anchorOf(t, l), dave, 0); !errors.Is(err, group.ErrInviteExpired) {
		t.Fatalf("an expired invite after a hand-over pass: %v", err)
	}
	if n, err := ga.HandOverAt(ctx, time.Now().Add(6*time.Minute)); err != nil || n != 1 {
		t.Fatalf("the expired use was not dropped past the grace: %d, %v", n, err)
	}
	if _, ok := ga.Membership().Member(group.InviteMemberKey(seed2, 0).Public()); ok {
		t.Fatal("the dropped use is still listed")
	}

	// Revoked.
	seed3 := newSeed(t)
	if _, err := ga.AddInvite(ctx, seed3, group.RoleMember, 1, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	l, err = ga.RevokeInvite(ctx, seed3)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := group.JoinBearer(ctx, net[3].DHT, ga.Key(), seed3, anchorOf(t, l), dave, 0); !errors.Is(err, group.ErrInviteUsed) {
		t.Fatalf("a revoked invite: %v", err)
	}
}

// TestInviteExpiryAtHolders: a holder refuses a slot write by an invite
// key once its expiry (with a few minutes' grace for clocks) has passed.
func TestInviteExpiryAtHolders(t *testing.T) {
	ks := memberKeys(t, 1)
	seed := newSeed(t)
	l, err := group.NewMembership(key.RecordKey{5}, ks[0], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	if l, err = l.AddInvite(ks[0], seed, group.RoleMember, 1, exp); err != nil {
		t.Fatal(err)
	}
	use := group.InviteMemberKey(seed, 0)
	m, _ := l.Member(use.Public())
	if err := group.CheckInviteWrite(m, exp.Add(time.Minute)); err != nil {
		t.Fatalf("within the grace: %v", err)
	}
	if err := group.CheckInviteWrite(m, exp.Add(6*time.Minute)); !errors.Is(err, group.ErrInviteExpired) {
		t.Fatalf("past the grace: %v", err)
	}
	if _, err := l.AddInvite(ks[0], newSeed(t), group.RoleMember, group.MaxInviteUses+1, exp); !errors.Is(err, group.ErrBadMembership) {
		t.Fatalf("too many uses: %v", err)
	}
	if _, err := l.AddInvite(ks[0], newSeed(t), group.RoleMember, 1, time.Now().Add(group.MaxInviteLifetime+time.Hour)); !errors.Is(err, group.ErrBadMembership) {
		t.Fatalf("too long a lifetime: %v", err)
	}
}
