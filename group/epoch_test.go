package group_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

func openKeys(t *testing.T, l *group.Membership, k group.MemberKey) *group.Keyring {
	t.Helper()
	r, err := reencode(t, l).OpenKeys(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestEpochKeys: the epoch key is sealed to every member and to no one
// else; a removal starts an epoch whose key the removed member cannot
// open, while the others (and members added later) still open what was
// written before; names and metadata follow the rotation.
func TestEpochKeys(t *testing.T) {
	ks := memberKeys(t, 4)
	ana, bo, carol, dave := ks[0], ks[1], ks[2], ks[3]
	g := key.RecordKey{9}
	v0, err := group.NewMembership(g, ana, []byte("Ana"), []byte(`{"name":"newsroom"}`))
	if err != nil {
		t.Fatal(err)
	}
	v1, err := v0.Add(ana, bo.Contact(), group.RoleMember, []byte("Bo"))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := v1.Add(ana, carol.Contact(), group.RoleMember, []byte("Carol"))
	if err != nil {
		t.Fatal(err)
	}
	anaR, boR, carolR := openKeys(t, v2, ana), openKeys(t, v2, bo), openKeys(t, v2, carol)
	if anaR.Epoch() != 0 || anaR.Current() != boR.Current() || boR.Current() != carolR.Current() {
		t.Fatal("members of epoch 0 hold different keys")
	}
	if _, err := v2.OpenKeys(dave); !errors.Is(err, group.ErrNoEpochKey) {
		t.Fatalf("a stranger opened the epoch key: %v", err)
	}
	if m, _ := v2.Member(signKey(ana)); func() string { n, _ := v2.MemberName(boR, m); return n }() != "Ana" {
		t.Fatal("bo cannot read ana's name")
	}

	// carol writes in epoch 0, then is removed: epoch 1.
	rk := key.RecordKey{1, 2, 3}
	old, err := carolR.Seal(rk, 1, []byte("written before"))
	if err != nil {
		t.Fatal(err)
	}
	v3, err := v2.Remove(ana, signKey(carol))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reencode(t, v3).OpenKeys(carol); !errors.Is(err, group.ErrNoEpochKey) {
		t.Fatalf("the removed member opened the new epoch's key: %v", err)
	}
	boR3 := openKeys(t, v3, bo)
	if boR3.Epoch() != 1 || boR3.Current() == boR.Current() {
		t.Fatal("the removal did not start an epoch with a fresh key")
	}
	if pt, err := boR3.Open(rk, 1, old); err != nil || string(pt) != "written before" {
		t.Fatalf("a remaining member cannot read epoch 0: %q %v", pt, err)
	}
	fresh, err := boR3.Seal(rk, 1, []byte("written after"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carolR.Open(rk, 1, fresh); !errors.Is(err, group.ErrNoEpochKey) || !errors.Is(err, record.ErrDecrypt) {
		t.Fatalf("the removed member opened a value of the new epoch: %v", err)
	}
	if _, err := boR3.Open(rk, 2, fresh); !errors.Is(err, record.ErrDecrypt) {
		t.Fatalf("a value opened at another subkey: %v", err)
	}
	meta, err := v3.OpenMeta(boR3)
	if err != nil || string(meta) != `{"name":"newsroom"}` {
		t.Fatalf("metadata after rotation: %q %v", meta, err)
	}
	if m, _ := v3.Member(signKey(bo)); func() string { n, _ := v3.MemberName(boR3, m); return n }() != "Bo" {
		t.Fatal("names not sealed again under the new epoch")
	}
	if _, err := v3.OpenMeta(carolR); !errors.Is(err, group.ErrNoEpochKey) {
		t.Fatalf("the removed member read the new metadata: %v", err)
	}

	// dave, added in epoch 1, reads epoch 0 through the chain.
	v4, err := v3.Add(ana, dave.Contact(), group.RoleMember, nil)
	if err != nil {
		t.Fatal(err)
	}
	daveR := openKeys(t, v4, dave)
	if pt, err := daveR.Open(rk, 1, old); err != nil || string(pt) != "written before" {
		t.Fatalf("a later member cannot read epoch 0: %v", err)
	}
	v5, err := v4.SetMeta(ana, []byte(`{"name":"renamed"}`))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := v5.OpenMeta(daveR); string(m) != `{"name":"renamed"}` {
		t.Fatalf("SetMeta: %q", m)
	}

	// A changed byte anywhere in the sealed parts breaks the signature.
	b, _ := v5.Encode()
	for _, part := range [][]byte{v5.Chain, v5.Meta, v5.Members[0].Key} {
		i := bytes.Index(b, part)
		if i < 0 {
			t.Fatal("sealed part not in the encoding")
		}
		c := bytes.Clone(b)
		c[i+len(part)/2] ^= 1
		if _, err := group.DecodeMembership(c); !errors.Is(err, group.ErrBadMembership) {
			t.Fatalf("tampered sealed part accepted: %v", err)
		}
	}
}

// TestEpochChainBounded: after more than MaxEpochChain removals a list
// still fits its value and carries the last MaxEpochChain keys.
func TestEpochChainBounded(t *testing.T) {
	ks := memberKeys(t, 2)
	admin := ks[0]
	l, err := group.NewMembership(key.RecordKey{4}, admin, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rk := key.RecordKey{5}
	first, err := openKeys(t, l, admin).Seal(rk, 1, []byte("epoch 0"))
	if err != nil {
		t.Fatal(err)
	}
	var last []byte
	for i := range group.MaxEpochChain + 3 {
		tmp := memberKeys(t, 1)[0]
		if l, err = l.Add(admin, tmp.Contact(), group.RoleViewer, nil); err != nil {
			t.Fatal(i, err)
		}
		if i == 5 { // epoch 5: within the last MaxEpochChain
			last, _ = openKeys(t, l, admin).Seal(rk, 1, []byte("epoch 5"))
		}
		if l, err = l.Remove(admin, signKey(tmp)); err != nil {
			t.Fatal(i, err)
		}
	}
	r := openKeys(t, l, admin)
	if r.Epoch() != group.MaxEpochChain+3 || len(r.Epochs()) != group.MaxEpochChain+1 {
		t.Fatalf("epoch %d, %d keys held", r.Epoch(), len(r.Epochs()))
	}
	if _, err := r.Open(rk, 1, first); !errors.Is(err, group.ErrNoEpochKey) {
		t.Fatalf("a key older than the chain: %v", err)
	}
	if pt, err := r.Open(rk, 1, last); err != nil || string(pt) != "epoch 5" {
		t.Fatalf("a key within the chain: %v", err)
	}
}
