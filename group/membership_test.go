package group_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/uri"
)

func memberKeys(t testing.TB, n int) []group.MemberKey {
	t.Helper()
	ks := make([]group.MemberKey, n)
	for i := range ks {
		k, err := group.NewMemberKey()
		if err != nil {
			t.Fatal(err)
		}
		ks[i] = k
	}
	return ks
}

func signKey(k group.MemberKey) ed25519.PublicKey { return k.Contact().Sign }

// reencode checks that l survives its encoding and returns the decoded copy.
func reencode(t *testing.T, l *group.Membership) *group.Membership {
	t.Helper()
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := group.DecodeMembership(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := d.Encode()
	if !bytes.Equal(again, b) {
		t.Fatal("encoding changed through decode")
	}
	return d
}

// TestMembershipLifecycle walks a group's list through adds, a role
// change and removals, each version checked against the one before as a
// member who holds it would: removals start a new epoch, adds do not, and
// slots are given and kept.
func TestMembershipLifecycle(t *testing.T) {
	ks := memberKeys(t, 4)
	ana, bo, carol, srv := ks[0], ks[1], ks[2], ks[3]
	g := key.RecordKey{7}
	v0, err := group.NewMembership(g, ana, []byte("ana"), []byte(`{"name":"newsroom"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := reencode(t, v0).CheckGenesis(g, signKey(ana)); err != nil {
		t.Fatal(err)
	}
	if err := v0.CheckGenesis(g, signKey(bo)); !errors.Is(err, group.ErrBadMembership) {
		t.Fatalf("genesis checked against another first admin: %v", err)
	}

	v1, err := v0.Add(ana, bo.Contact(), group.RoleMember, nil)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := v1.Add(ana, carol.Contact(), group.RoleMember, nil)
	if err != nil {
		t.Fatal(err)
	}
	v3, err := v2.Add(ana, srv.Contact(), group.RoleViewer, nil)
	if err != nil {
		t.Fatal(err)
	}
	prev := v0
	for _, v := range []*group.Membership{v1, v2, v3} {
		if err := prev.CheckNext(reencode(t, v)); err != nil {
			t.Fatal(err)
		}
		if v.Epoch != 0 {
			t.Fatalf("version %d: epoch %d after adds only", v.Version, v.Epoch)
		}
		prev = v
	}
	slots := map[uint32]bool{}
	for _, k := range []group.MemberKey{ana, bo, carol} {
		m, ok := v3.Member(signKey(k))
		if !ok || m.Slot == 0 || slots[m.Slot] {
			t.Fatalf("writer %v: %+v", k, m)
		}
		slots[m.Slot] = true
	}
	if m, _ := v3.Member(signKey(srv)); m.Role != group.RoleViewer || m.Slot != 0 {
		t.Fatalf("viewer entry %+v", m)
	}
	if _, err := v3.Add(ana, bo.Contact(), group.RoleMember, nil); !errors.Is(err, group.ErrBadMembership) {
		t.Fatalf("a member added twice: %v", err)
	}

	// bo becomes an admin and removes carol: the next epoch.
	v4, err := v3.SetRole(ana, signKey(bo), group.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	v5, err := v4.Remove(bo, signKey(carol))
	if err != nil {
		t.Fatal(err)
	}
	if err := v4.CheckNext(v5); err != nil || v5.Epoch != 1 {
		t.Fatalf("removal: epoch %d, %v", v5.Epoch, err)
	}
	if _, ok := v5.Member(signKey(carol)); ok {
		t.Fatal("carol still listed after her removal")
	}
	// carol, no longer a member, cannot sign a change (she does not even
	// hold the epoch's key); nor can a viewer.
	if _, err := v5.Add(carol, carol.Contact(), group.RoleAdmin, nil); !errors.Is(err, group.ErrNoEpochKey) {
		t.Fatalf("a removed member re-added herself: %v", err)
	}
	if _, err := v5.Remove(srv, signKey(ana)); !errors.Is(err, group.ErrBadMembership) {
		t.Fatalf("a viewer removed an admin: %v", err)
	}
	// Removing both admins in turn: the last one cannot go.
	v6, err := v5.Remove(bo, signKey(ana))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v6.Remove(bo, signKey(bo)); err == nil || !strings.Contains(err.Error(), "no admin") {
		t.Fatalf("the last admin removed itself: %v", err)
	}
	if _, err := v6.SetRole(bo, signKey(bo), group.RoleMember); err == nil || !strings.Contains(err.Error(), "no admin") {
		t.Fatalf("the last admin gave up the role: %v", err)
	}
	if _, err := v6.SetRole(bo, signKey(srv), group.RoleMember); !errors.Is(err, group.ErrBadMembership) {
		t.Fatalf("a viewer made a writer without a slot: %v", err)
	}
}

// TestCheckNextRefuses: versions that do not follow, forged or edited
// lists are refused.
func TestCheckNextRefuses(t *testing.T) {
	ks := memberKeys(t, 3)
	ana, bo, eve := ks[0], ks[1], ks[2]
	v0, _ := group.NewMembership(key.RecordKey{1}, ana, nil, nil)
	v1, err := v0.Add(ana, bo.Contact(), group.RoleMember, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A list eve made on her own, claiming to be the group's.
	forged, _ := group.NewMembership(key.RecordKey{1}, eve, nil, nil)
	if err := v0.CheckNext(forged); !errors.Is(err, group.ErrBadMembership) {
		t.Fatalf("a stranger's list accepted: %v", err)
	}
	if err := forged.CheckGenesis(key.RecordKey{1}, signKey(ana)); !errors.Is(err, group.ErrBadMembership) {
		t.Fatalf("a stranger's first list accepted: %v", err)
	}
	// v1 again as next of v1 (no progress), and v0 after v1 (rollback).
	if err := v1.CheckNext(v1); !errors.Is(err, group.ErrBadMembership) {
		t.Fatalf("a replayed version accepted: %v", err)
	}
	if err := v1.CheckNext(v0); !errors.Is(err, group.ErrBadMembership) {
		t.Fatalf("a rollback accepted: %v", err)
	}
	// Any bit changed after signing fails the shape, the signature or
	// the chain.
	b, _ := v1.Encode()
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 1
		if d, err := group.DecodeMembership(c); err == nil {
			if err := v0.CheckNext(d); err == nil {
				t.Fatalf("byte %d flipped and the list still follows v0", i)
			}
		}
	}
}

// FuzzDecodeMembership: no input panics; an accepted list checks,
// re-encodes to the same bytes, and its Member lookup finds each entry.
func FuzzDecodeMembership(f *testing.F) {
	ks := memberKeys(f, 3)
	v0, _ := group.NewMembership(key.RecordKey{3}, ks[0], []byte("n"), []byte(`{"name":"g"}`))
	v1, _ := v0.Add(ks[0], ks[1].Contact(), group.RoleMember, nil)
	v2, _ := v1.Add(ks[0], ks[2].Contact(), group.RoleViewer, nil)
	v3, _ := v2.Remove(ks[0], signKey(ks[1]))
	v4, _ := v3.AddInvite(ks[0], [32]byte{1}, group.RoleMember, 2, time.Now().Add(time.Hour))
	for _, v := range []*group.Membership{v0, v1, v2, v3, v4} {
		b, _ := v.Encode()
		fuzzcorpus.Add(f, b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := group.DecodeMembership(b)
		if err != nil {
			if !errors.Is(err, group.ErrBadMembership) {
				t.Fatalf("error %v does not wrap ErrBadMembership", err)
			}
			return
		}
		if err := l.Check(); err != nil {
			t.Fatal(err)
		}
		again, err := l.Encode()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical encoding: %v", err)
		}
		for _, m := range l.Members {
			if _, ok := l.Member(m.Sign); !ok {
				t.Fatalf("member %x not found", m.Sign)
			}
			if _, err := uri.ParseContact(m.Contact().String()); err != nil {
				t.Fatal(err)
			}
		}
		// The sealed parts open for the seeds' members or fail cleanly.
		for _, k := range ks {
			r, err := l.OpenKeys(k)
			if err != nil {
				if !errors.Is(err, group.ErrNoEpochKey) && !errors.Is(err, group.ErrBadMembership) {
					t.Fatalf("OpenKeys: %v", err)
				}
				continue
			}
			if _, err := l.OpenMeta(r); err != nil && !errors.Is(err, record.ErrDecrypt) {
				t.Fatalf("OpenMeta: %v", err)
			}
		}
	})
}

// FuzzKeyringOpen: a value that is not an epoch-sealed value of a key
// held, or was moved to another place, fails with record.ErrDecrypt and
// never panics; a sealed value opens to its plaintext.
func FuzzKeyringOpen(f *testing.F) {
	ks := memberKeys(f, 2)
	v0, _ := group.NewMembership(key.RecordKey{3}, ks[0], nil, nil)
	v1, _ := v0.Add(ks[0], ks[1].Contact(), group.RoleMember, nil)
	v2, _ := v1.Remove(ks[0], signKey(ks[1]))
	r0, _ := v0.OpenKeys(ks[0])
	r2, _ := v2.OpenKeys(ks[0])
	rk := key.RecordKey{8}
	for _, r := range []*group.Keyring{r0, r2} {
		b, _ := r.Seal(rk, 1, []byte("value"))
		fuzzcorpus.Add(f, uint32(1), b)
	}
	f.Add(uint32(0), []byte{0xff})
	f.Fuzz(func(t *testing.T, subkey uint32, b []byte) {
		pt, err := r2.Open(rk, subkey, b)
		if err != nil {
			if !errors.Is(err, record.ErrDecrypt) {
				t.Fatalf("error %v does not wrap record.ErrDecrypt", err)
			}
			return
		}
		again, err := r2.Seal(rk, subkey, pt)
		if err != nil {
			t.Fatal(err)
		}
		if pt2, err := r2.Open(rk, subkey, again); err != nil || !bytes.Equal(pt, pt2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
