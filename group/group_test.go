package group_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/testnet"
)

func TestCreateJoinClaim(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := testnet.New(t, 3)
	g, err := group.Create(ctx, net[0].DHT, "newsroom")
	if err != nil {
		t.Fatal(err)
	}
	r0 := key.RecordKey{1}
	r1 := key.RecordKey{2}
	if sk, err := g.ClaimRepo(ctx, r0); err != nil || sk != 1 {
		t.Fatalf("first claim = %d, %v", sk, err)
	}

	joined, meta, err := group.Join(ctx, net[2].DHT, g.Key(), g.Secret(), g.Owner())
	if err != nil {
		t.Fatal(err)
	}
	if meta.Name != "newsroom" || meta.CreatedAt.IsZero() {
		t.Fatalf("meta = %+v", meta)
	}
	if sk, err := joined.ClaimRepo(ctx, r1); err != nil || sk != 2 {
		t.Fatalf("second claim = %d, %v", sk, err)
	}
	if sk, err := joined.ClaimRepo(ctx, r1); err != nil || sk != 2 {
		t.Fatalf("claim again = %d, %v (want the same subkey)", sk, err)
	}
	keys, err := g.RepoKeys(ctx)
	if err != nil || len(keys) != 2 || keys[0] != r0 || keys[1] != r1 {
		t.Fatalf("RepoKeys = %v, %v", keys, err)
	}

	if _, _, err := group.Join(ctx, net[1].DHT, g.Key(), g.Secret(), key.NewKeypair()); !errors.Is(err, group.ErrWrongOwner) {
		t.Fatalf("join with the wrong owner key: %v", err)
	}
	if _, _, err := group.Join(ctx, net[1].DHT, g.Key(), key.NewSecret(), g.Owner()); !errors.Is(err, record.ErrDecrypt) {
		t.Fatalf("join with the wrong secret: %v", err)
	}
	if _, err := group.Create(ctx, net[0].DHT, ""); !errors.Is(err, group.ErrBadName) {
		t.Fatalf("empty name: %v", err)
	}
}

func TestProvidersPreferredFirstWithoutSelf(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := testnet.New(t, 2)
	d := net[0].DHT
	g, err := group.Create(ctx, d, "g")
	if err != nil {
		t.Fatal(err)
	}
	self, other, third := key.NewKeypair().ID(), key.NewKeypair().ID(), key.NewKeypair().ID()
	blobs, err := blobsync.OpenStore(net[0].Store, filepath.Join(net[0].Dir, "blobs"), blobsync.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var repos []key.RecordKey
	for _, node := range []key.NodeID{self, other, third} {
		r, _, err := datarepo.Create(ctx, d, blobs, g.Keys(), "r")
		if err != nil {
			t.Fatal(err)
		}
		if err := r.SetTunnel(ctx, 0, datarepo.TunnelDescriptor{Node: node, Static: [32]byte{1}, Addrs: []string{"127.0.0.1:9"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := g.ClaimRepo(ctx, r.Key()); err != nil {
			t.Fatal(err)
		}
		repos = append(repos, r.Key())
	}
	ms, err := g.Providers(ctx, []key.RecordKey{repos[2]}, self)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Tunnel.Node != third || ms[0].Repo != repos[2] || ms[1].Tunnel.Node != other {
		t.Fatalf("Providers = %+v, want [third other]", ms)
	}
	ms, err = g.Providers(ctx, nil, self)
	if err != nil || len(ms) != 2 || ms[0].Tunnel.Node != other {
		t.Fatalf("Providers without preference = %+v, %v", ms, err)
	}
}

// TestConcurrentClaims has six members on six real nodes join and claim a
// repo slot at once: every claim succeeds, each repo ends in a slot of its
// own, and no claim evicted another (all six are listed).
func TestConcurrentClaims(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	net := testnet.New(t, 6)
	g, err := group.Create(ctx, net[0].DHT, "crowd")
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	subkeys := make([]uint32, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m, _, err := group.Join(ctx, net[i].DHT, g.Key(), g.Secret(), g.Owner())
			if err == nil {
				subkeys[i], err = m.ClaimRepo(ctx, key.RecordKey{byte(i + 1)})
			}
			errs[i] = err
		})
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		if seen[subkeys[i]] {
			t.Fatalf("subkeys %v: two members claimed one slot", subkeys)
		}
		seen[subkeys[i]] = true
	}
	keys, err := g.RepoKeys(ctx)
	if err != nil || len(keys) != n {
		t.Fatalf("RepoKeys = %v, %v: want all %d repos", keys, err, n)
	}
	for i, sk := range subkeys {
		if keys[sk-group.SubkeyRepoFirst] != (key.RecordKey{byte(i + 1)}) {
			t.Fatalf("slot %d holds %v, not member %d's repo", sk, keys[sk-group.SubkeyRepoFirst], i)
		}
	}
}
