package group_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/testnet"
)

// TestHostileSeqRefused: a member (who holds the group's owner key, as
// every invite gives it) sends a repo subkey of the group record at
// seq 2^64-1 and 2^62+1 straight to every holder. Every holder refuses
// it; the group still lists its repos from any node, and the owner can
// still write the subkey and claim new ones.
func TestHostileSeqRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := testnet.New(t, 4) // every node is among the R = 8 holders
	g, err := group.Create(ctx, net[0].DHT, "newsroom")
	if err != nil {
		t.Fatal(err)
	}
	r0, r1 := key.RecordKey{1}, key.RecordKey{2}
	if sk, err := g.ClaimRepo(ctx, r0); err != nil || sk != 1 {
		t.Fatalf("claim = %d, %v", sk, err)
	}
	member, _, err := group.Join(ctx, net[3].DHT, g.Key(), g.Secret(), g.Owner())
	if err != nil {
		t.Fatal(err)
	}
	desc, err := record.NewDescriptor(member.Owner(), group.Schema)
	if err != nil {
		t.Fatal(err)
	}
	hostileRepo := key.RecordKey{0xee}
	sealed, err := record.Seal(member.Secret(), g.Key(), group.SubkeyRepoFirst, hostileRepo[:])
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{1<<64 - 1, record.MaxSeq + 1} {
		v := testnet.SignValue(g.Key(), group.SubkeyRepoFirst, seq, sealed, member.Owner())
		for i, n := range net[:3] {
			code, msg, err := testnet.RawStore(ctx, net[3], n.Contact(), desc, group.SubkeyRepoFirst, v)
			if err != nil {
				t.Fatal(err)
			}
			if code != 13 || !strings.Contains(msg, "MaxSeq") {
				t.Errorf("seq %d: node %d answered %d %q, want 13 (seq range)", seq, i, code, msg)
			}
		}
		// The member's own node refuses it too.
		if err := net[3].DHT.Set(ctx, desc, group.SubkeyRepoFirst, v); err == nil {
			t.Errorf("seq %d: the member's own node stored it", seq)
		}
	}
	for i, n := range net {
		_, v, err := n.DHT.GetLocal(ctx, g.Key(), group.SubkeyRepoFirst)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if v != nil && v.Seq > record.MaxSeq {
			t.Fatalf("node %d holds seq %d", i, v.Seq)
		}
	}
	for i, n := range net {
		other, _, err := group.Join(ctx, n.DHT, g.Key(), g.Secret(), g.Owner())
		if err != nil {
			t.Fatalf("node %d: join: %v", i, err)
		}
		if keys, err := other.RepoKeys(ctx); err != nil || len(keys) != 1 || keys[0] != r0 {
			t.Fatalf("node %d lists %v, %v; want [r0]", i, keys, err)
		}
	}
	// The owner still writes: subkey 1 again, and a new claim.
	if seq, err := datarepo.WriteSealed(ctx, net[0].DHT, desc, group.SubkeyRepoFirst, g.Owner(), g.Keys(), r0[:]); err != nil || seq != 1 {
		t.Fatalf("owner rewrites subkey 1: seq %d, %v", seq, err)
	}
	if sk, err := g.ClaimRepo(ctx, r1); err != nil || sk != 2 {
		t.Fatalf("claim after the attack = %d, %v", sk, err)
	}
	if keys, err := member.RepoKeys(ctx); err != nil || len(keys) != 2 || keys[0] != r0 || keys[1] != r1 {
		t.Fatalf("member lists %v, %v", keys, err)
	}
}
