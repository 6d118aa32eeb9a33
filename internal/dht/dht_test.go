package dht

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newRecord(t *testing.T, subkeys uint32) (key.Keypair, *record.Descriptor) {
	t.Helper()
	owner := key.NewKeypair()
	desc, err := record.NewDescriptor(owner, record.Schema{OwnerSubkeys: subkeys})
	if err != nil {
		t.Fatal(err)
	}
	return owner, desc
}

func newValue(t *testing.T, desc *record.Descriptor, subkey uint32, seq uint64, data string, w key.Keypair) *record.Value {
	t.Helper()
	v, err := record.NewValue(desc.Key(), subkey, seq, []byte(data), w)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sameValue(a, b *record.Value) bool {
	return a != nil && b != nil && !record.Better(a, b) && !record.Better(b, a)
}

// rawStore sends a STORE from node from to node to, bypassing Set's checks.
func rawStore(t *testing.T, from, to *testNode, k key.RecordKey, desc *record.Descriptor, subkey uint32, v *record.Value) *response {
	t.Helper()
	de, err := record.EncodeDescriptor(desc)
	if err != nil {
		t.Fatal(err)
	}
	ve, err := record.EncodeValue(v)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := from.dht.call(testCtx(t), to.dht.Self(), &request{Op: opStore, Target: k[:], Subkey: subkey, Desc: de, Value: ve})
	if err != nil {
		t.Fatalf("raw STORE: %v", err)
	}
	return resp
}

// nearest returns the nodes that are the R nearest to k.
func nearest(nodes []*testNode, k key.RecordKey, r int) []*testNode {
	var cs []Contact
	by := map[key.NodeID]*testNode{}
	for _, n := range nodes {
		cs = append(cs, n.dht.Self())
		by[n.dht.Self().ID] = n
	}
	sortByDistance(k, cs)
	var out []*testNode
	for _, c := range cs[:min(r, len(cs))] {
		out = append(out, by[c.ID])
	}
	return out
}

func TestNetwork(t *testing.T) {
	nodes := newTestNet(t, 20)
	for i, n := range nodes {
		if got := len(n.dht.Contacts()); got < 10 {
			t.Errorf("node %d knows %d contacts after bootstrap", i, got)
		}
	}

	t.Run("SetThenEveryNodeGets", func(t *testing.T) {
		ctx := testCtx(t)
		owner, desc := newRecord(t, 2)
		v := newValue(t, desc, 0, 1, "hello group", owner)
		if err := nodes[5].dht.Set(ctx, desc, 0, v); err != nil {
			t.Fatalf("Set: %v", err)
		}
		held := 0
		for _, n := range nearest(nodes, desc.Key(), DefaultR) {
			if lv := localValueOf(t, n, desc.Key(), 0); sameValue(lv, v) {
				held++
			}
		}
		if held < DefaultR-1 { // the writer may be one of the R nearest
			t.Fatalf("only %d of the %d nearest nodes hold the value", held, DefaultR)
		}
		for i, n := range nodes {
			gd, gv, err := n.dht.Get(ctx, desc.Key(), 0)
			if err != nil {
				t.Fatalf("node %d Get: %v", i, err)
			}
			if gd.Key() != desc.Key() || !sameValue(gv, v) {
				t.Fatalf("node %d got %+v", i, gv)
			}
			_, unset, err := n.dht.Get(ctx, desc.Key(), 1)
			if err != nil || unset != nil {
				t.Fatalf("node %d Get of unwritten subkey = %v, %v; want nil, nil", i, unset, err)
			}
		}
	})

	t.Run("UnknownKeyNotFound", func(t *testing.T) {
		var k key.RecordKey
		copy(k[:], bytes.Repeat([]byte{7}, 32))
		_, _, err := nodes[3].dht.Get(testCtx(t), k, 0)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get unknown: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("ForgedStoreRefused", func(t *testing.T) {
		owner, desc := newRecord(t, 1)
		k := desc.Key()
		from, to := nodes[1], nodes[2]
		forged := newValue(t, desc, 0, 1, "real", owner)
		forged.Data = []byte("forged") // signature no longer covers the data
		resp := rawStore(t, from, to, k, desc, 0, forged)
		err := &RemoteError{Code: resp.Code, Msg: resp.Msg}
		if !errors.Is(err, record.ErrBadSignature) {
			t.Fatalf("forged value: response %d %q, want bad signature", resp.Code, resp.Msg)
		}
		stranger := newValue(t, desc, 0, 1, "not mine", key.NewKeypair())
		if resp := rawStore(t, from, to, k, desc, 0, stranger); !errors.Is(&RemoteError{Code: resp.Code}, record.ErrNotWriter) {
			t.Fatalf("wrong writer: response %d %q", resp.Code, resp.Msg)
		}
		var wrongKey key.RecordKey
		if resp := rawStore(t, from, to, wrongKey, desc, 0, newValue(t, desc, 0, 1, "x", owner)); !errors.Is(&RemoteError{Code: resp.Code}, ErrKeyMismatch) {
			t.Fatalf("wrong key: response %d %q", resp.Code, resp.Msg)
		}
		if d := localDescOf(t, to, k); d != nil {
			t.Fatal("descriptor stored despite refused value")
		}
		if v := localValueOf(t, to, k, 0); v != nil {
			t.Fatal("forged value stored")
		}
		// Set refuses it locally too, before sending anything.
		if err := from.dht.Set(testCtx(t), desc, 0, forged); !errors.Is(err, record.ErrBadSignature) {
			t.Fatalf("Set forged: err = %v", err)
		}
	})

	t.Run("LowerSeqRefused", func(t *testing.T) {
		ctx := testCtx(t)
		owner, desc := newRecord(t, 1)
		k := desc.Key()
		v2 := newValue(t, desc, 0, 2, "newer", owner)
		v1 := newValue(t, desc, 0, 1, "older", owner)
		if err := nodes[7].dht.Set(ctx, desc, 0, v2); err != nil {
			t.Fatalf("Set seq 2: %v", err)
		}
		holder := nearest(nodes, k, 1)[0]
		if holder == nodes[7] {
			holder = nearest(nodes, k, 2)[1]
		}
		resp := rawStore(t, nodes[7], holder, k, desc, 0, v1)
		if !errors.Is(&RemoteError{Code: resp.Code}, ErrStale) {
			t.Fatalf("raw STORE seq 1: response %d %q, want stale", resp.Code, resp.Msg)
		}
		if cur, err := record.DecodeValue(resp.Value); err != nil || !sameValue(cur, v2) {
			t.Fatalf("stale response carries %v, %v; want seq 2", cur, err)
		}
		err := nodes[11].dht.Set(ctx, desc, 0, v1)
		var se *StaleError
		if !errors.Is(err, ErrStale) || !errors.As(err, &se) || !sameValue(se.Current, v2) {
			t.Fatalf("Set seq 1: err = %v, want *StaleError with seq 2", err)
		}
		for i, n := range nodes {
			_, gv, err := n.dht.Get(ctx, k, 0)
			if err != nil || !sameValue(gv, v2) {
				t.Fatalf("node %d Get = %v, %v; want seq 2", i, gv, err)
			}
		}
	})

	t.Run("EqualSeqConverges", func(t *testing.T) {
		ctx := testCtx(t)
		owner, desc := newRecord(t, 1)
		k := desc.Key()
		a := newValue(t, desc, 0, 5, "version A", owner)
		b := newValue(t, desc, 0, 5, "version B", owner)
		win, lose := a, b
		if record.Better(b, a) {
			win, lose = b, a
		}
		if err := nodes[4].dht.Set(ctx, desc, 0, a); err != nil {
			t.Fatalf("Set A: %v", err)
		}
		err := nodes[9].dht.Set(ctx, desc, 0, b)
		if win == b && err != nil {
			t.Fatalf("Set B (the winner): %v", err)
		}
		var se *StaleError
		if win == a && (!errors.As(err, &se) || !sameValue(se.Current, a)) {
			t.Fatalf("Set B (the loser): err = %v, want *StaleError carrying A", err)
		}
		for _, n := range nearest(nodes, k, DefaultR) {
			lv := localValueOf(t, n, k, 0)
			if n != nodes[4] && n != nodes[9] && !sameValue(lv, win) {
				t.Fatalf("holder %s has %q, want the winner %q", n.dht.Self().ID, lv.Data, win.Data)
			}
		}
		for i, n := range nodes {
			_, gv, err := n.dht.Get(ctx, k, 0)
			if err != nil || !sameValue(gv, win) {
				t.Fatalf("node %d Get = %v, %v; want the winner", i, gv, err)
			}
			if lv := localValueOf(t, n, k, 0); !sameValue(lv, win) {
				t.Fatalf("node %d keeps %q after Get", i, lv.Data)
			}
		}
		// The loser is now refused everywhere.
		if err := nodes[13].dht.Set(ctx, desc, 0, lose); !errors.Is(err, ErrStale) {
			t.Fatalf("Set loser again: err = %v, want ErrStale", err)
		}
	})
}

func TestRestartKeepsRecords(t *testing.T) {
	ctx := testCtx(t)
	nodes := newTestNet(t, 5)
	owner, desc := newRecord(t, 1)
	k := desc.Key()
	v := newValue(t, desc, 0, 3, "persisted", owner)
	if err := nodes[1].dht.Set(ctx, desc, 0, v); err != nil {
		t.Fatalf("Set: %v", err)
	}
	// Restart a holder other than node 0, the bootstrap node.
	var h *testNode
	for _, n := range nearest(nodes, k, len(nodes)) {
		if n != nodes[0] {
			if lv := localValueOf(t, n, k, 0); sameValue(lv, v) {
				h = n
				break
			}
		}
	}
	if h == nil {
		t.Fatal("no holder besides node 0")
	}
	id := h.dht.Self().ID
	h2 := h.restart([]Contact{nodes[0].dht.Self()})
	if h2.dht.Self().ID != id {
		t.Fatal("restarted with another identity")
	}
	resp, err := nodes[0].dht.call(ctx, h2.dht.Self(), &request{Op: opGet, Target: k[:], Subkey: 0, WantDesc: true})
	if err != nil || resp.Code != codeOK {
		t.Fatalf("GET from restarted node: %v %+v", err, resp)
	}
	gd, err := record.DecodeDescriptor(resp.Desc)
	if err != nil || gd.Key() != k {
		t.Fatalf("restarted node serves descriptor %v, %v", gd, err)
	}
	gv, err := record.DecodeValue(resp.Value)
	if err != nil || !sameValue(gv, v) {
		t.Fatalf("restarted node serves value %v, %v", gv, err)
	}
	_, lv, err := h2.dht.Get(ctx, k, 0)
	if err != nil || !sameValue(lv, v) {
		t.Fatalf("restarted node Get = %v, %v", lv, err)
	}
}

func TestSingleNodeAndBootstrapFailure(t *testing.T) {
	ctx := testCtx(t)
	n := newTestNet(t, 1)[0]
	if err := n.dht.Bootstrap(ctx); !errors.Is(err, ErrNoPeers) {
		t.Fatalf("Bootstrap with no contacts: err = %v", err)
	}
	owner, desc := newRecord(t, 1)
	v := newValue(t, desc, 0, 1, "alone", owner)
	if err := n.dht.Set(ctx, desc, 0, v); err != nil {
		t.Fatalf("Set on a lone node: %v", err)
	}
	if _, gv, err := n.dht.Get(ctx, desc.Key(), 0); err != nil || !sameValue(gv, v) {
		t.Fatalf("Get on a lone node: %v, %v", gv, err)
	}
	// A bootstrap contact that is not there.
	dead := Contact{ID: key.NewKeypair().ID(), Addr: n.dht.Self().Addr}
	dead.Addr = netip.AddrPortFrom(dead.Addr.Addr(), 1)
	n.dht.AddContacts(dead)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := n.dht.Bootstrap(sctx); !errors.Is(err, ErrNoPeers) {
		t.Fatalf("Bootstrap via a dead contact: err = %v", err)
	}
}

// TestBootstrapLookupReachedNone: a bootstrap contact that answers the
// first FIND_NODE and then refuses this node's requests (its rate limit:
// one request, then none for a long while) leaves the self-lookup with no
// node: Bootstrap fails with ErrNoPeers instead of reporting a join that
// no node learned of, so that its caller tries again.
func TestBootstrapLookupReachedNone(t *testing.T) {
	ctx := testCtx(t)
	base := t.TempDir()
	boot, err := launch(t, filepath.Join(base, "boot"), key.NewKeypair(), "", nil, func(o *Options) {
		o.RequestRate, o.RequestBurst = 0.001, 1
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := launch(t, filepath.Join(base, "n"), key.NewKeypair(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.dht.AddContacts(boot.dht.Self())
	err = n.dht.Bootstrap(ctx)
	if !errors.Is(err, ErrNoPeers) || !strings.Contains(err.Error(), "1 of 1 contacts answered") {
		t.Fatalf("Bootstrap through a contact that refuses the lookup: err = %v", err)
	}
}

func TestContactText(t *testing.T) {
	c := Contact{ID: key.NewKeypair().ID()}
	c.Addr = mustAddrPort(t, "127.0.0.1:4242")
	got, err := ParseContact(c.String())
	if err != nil || got != c {
		t.Fatalf("ParseContact(%q) = %v, %v", c.String(), got, err)
	}
	c6 := Contact{ID: c.ID, Addr: mustAddrPort(t, "[::1]:9")}
	if got, err := ParseContact(c6.String()); err != nil || got != c6 {
		t.Fatalf("IPv6 round trip: %v, %v", got, err)
	}
	for _, s := range []string{"", "x", c.ID.String(), c.ID.String() + "@", c.ID.String() + "@localhost:1", "abc@127.0.0.1:1", c.ID.String() + "@127.0.0.1:0", c.ID.String() + "@0.0.0.0:5"} {
		if _, err := ParseContact(s); err == nil {
			t.Errorf("ParseContact(%q) accepted", s)
		}
	}
}

func TestWireErrorCodes(t *testing.T) {
	for _, cs := range codeSentinels {
		if got := codeErr(errCode(cs.err)); !errors.Is(&RemoteError{Code: errCode(cs.err)}, got) {
			t.Errorf("code %d does not map back", cs.code)
		}
	}
	if !errors.Is(&RemoteError{Code: errCode(&StaleError{})}, ErrStale) {
		t.Error("StaleError does not map to ErrStale")
	}
	if errCode(errors.New("disk on fire")) != codeInternal || !errors.Is(&RemoteError{Code: 999}, ErrRemote) {
		t.Error("unknown errors do not map to internal/remote")
	}
}

func TestRoutingTable(t *testing.T) {
	self := key.NewKeypair().ID()
	tb := newTable(self, 2)
	addr := mustAddrPort(t, "127.0.0.1:1000")
	// Three contacts in the same bucket (same first bit as the complement of self).
	var cs []Contact
	for i := 0; len(cs) < 3; i++ {
		id := key.NewKeypair().ID()
		if bucketIndex(self, id) == 0 {
			cs = append(cs, Contact{ID: id, Addr: addr})
		}
	}
	if !tb.seen(cs[0]) || !tb.seen(cs[1]) || tb.seen(cs[2]) {
		t.Fatal("bucket of 2 should take two contacts and drop the third")
	}
	if tb.seen(Contact{ID: self, Addr: addr}) {
		t.Fatal("table took self")
	}
	tb.remove(cs[0].ID)
	if !tb.seen(cs[2]) {
		t.Fatal("no room after remove")
	}
	moved := cs[1]
	moved.Addr = mustAddrPort(t, "127.0.0.1:2000")
	tb.seen(moved)
	all := tb.all()
	if len(all) != 2 || all[1] != moved {
		t.Fatalf("seen should move to tail with new address: %v", all)
	}
	got := tb.closest(cs[2].ID, 5, key.NodeID{})
	if got[0].ID != cs[2].ID {
		t.Fatal("closest to an ID should start with that ID")
	}
}

// TestReplacementCache follows one bucket of two through newcomers while
// it is full, failures with and without a replacement, and a stale
// contact's return (Kademlia §2.2, §4.1).
func TestReplacementCache(t *testing.T) {
	self := key.NewKeypair().ID()
	tb := newTable(self, 2)
	addr := mustAddrPort(t, "127.0.0.1:1000")
	var cs []Contact
	for len(cs) < 5 {
		if id := key.NewKeypair().ID(); bucketIndex(self, id) == 0 {
			cs = append(cs, Contact{ID: id, Addr: addr})
		}
	}
	a, b, c, d, e := cs[0], cs[1], cs[2], cs[3], cs[4]
	has := func(want ...Contact) {
		t.Helper()
		got := tb.all()
		if len(got) != len(want) {
			t.Fatalf("bucket %v, want %v", got, want)
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Fatalf("bucket %v lacks %v", got, w)
			}
		}
	}
	tb.seen(a)
	tb.seen(b)
	if tb.seen(c) || tb.seen(d) {
		t.Fatal("a full bucket took a newcomer")
	}
	has(a, b)
	// d was seen last: it replaces a at a's first failure.
	if !tb.failed(a.ID) {
		t.Fatal("a failed contact with replacements known was not evicted")
	}
	has(b, d)
	if !tb.failed(b.ID) {
		t.Fatal("second failure, c still cached: b not evicted")
	}
	has(d, c)
	// The cache is empty: d stays, stale, out of closest and size.
	if tb.failed(d.ID) {
		t.Fatal("a contact without replacement left at its first failure")
	}
	has(d, c)
	if tb.size() != 1 || slices.ContainsFunc(tb.closest(d.ID, 5, key.NodeID{}), func(x Contact) bool { return x.ID == d.ID }) {
		t.Fatalf("a stale contact is counted (size %d) or given out", tb.size())
	}
	// A message from d makes it fresh again.
	tb.seen(d)
	if tb.size() != 2 {
		t.Fatalf("size %d after the stale contact was heard from", tb.size())
	}
	// A stale contact makes room for a newcomer at once.
	tb.failed(c.ID)
	if !tb.seen(e) {
		t.Fatal("a newcomer did not take a stale contact's place")
	}
	has(d, e)
	// Without replacements, maxFails failures in a row evict.
	for i := 1; i < maxFails; i++ {
		if tb.failed(e.ID) {
			t.Fatalf("evicted after %d failures, want %d", i, maxFails)
		}
	}
	if !tb.failed(e.ID) {
		t.Fatalf("not evicted after %d failures", maxFails)
	}
	has(d)
}

// TestLookupSkipsNewlyDead: candidates that become known dead while a
// lookup runs (another request to them failed) are not asked, and the
// next candidates take their places among the n nearest: the lookup
// still returns n nodes that answered.
func TestLookupSkipsNewlyDead(t *testing.T) {
	n, err := launch(t, t.TempDir(), key.NewKeypair(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := n.dht
	var target [32]byte
	rand.Read(target[:])
	universe := make([]Contact, 30)
	for i := range universe {
		universe[i] = Contact{ID: key.NewKeypair().ID(), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(20000+i))}
	}
	sortByDistance(target, universe)
	d.AddContacts(universe...)
	var mu sync.Mutex
	asked := map[key.NodeID]bool{}
	// While the lookup's first query runs, 6 and 7 shut down; no other
	// query answers before that, so the lookup (in rounds or adaptive, 3
	// in flight) has not chosen 6 or 7 yet.
	shut := make(chan struct{})
	got, err := d.lookup(context.Background(), "test", target, 8, func(ctx context.Context, c Contact) ([]Contact, error) {
		if c.ID == universe[0].ID {
			d.PeerShutdown(universe[6].ID)
			d.PeerShutdown(universe[7].ID)
			close(shut)
		} else {
			<-shut
		}
		mu.Lock()
		defer mu.Unlock()
		asked[c.ID] = true
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if asked[universe[6].ID] || asked[universe[7].ID] {
		t.Fatal("the lookup asked candidates known dead")
	}
	want := append(append([]Contact(nil), universe[:6]...), universe[8:10]...)
	if len(got) != len(want) {
		t.Fatalf("lookup returned %d nodes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID {
			t.Fatalf("node %d of the result is not the %d-th nearest live one", i, i)
		}
	}
}
