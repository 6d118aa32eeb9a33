package dht

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	dto "github.com/prometheus/client_model/go"
)

// requestCount reads dweb_dht_requests_total{op} of m.
func requestCount(t *testing.T, m *Metrics, op string) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Requests.WithLabelValues(op).Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetCounter().GetValue()
}

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// knownBy lists the nodes whose routing table holds id.
func knownBy(nodes []*testNode, id key.NodeID) []int {
	var out []int
	for i, n := range nodes {
		for _, c := range n.dht.Contacts() {
			if c.ID == id {
				out = append(out, i)
			}
		}
	}
	return out
}

// TestClientMode: a node in client mode joins a loopback network, writes,
// reads and watches through it, and yet appears in no routing table and no
// lookup result, is sent no STORE, INSPECT or HANDOFF, and is never dialled
// (its endpoint accepts no connection): watch pushes reach it over the
// connections it opened, and after those are gone its renewal recovers the
// change it missed. A server node that turns client mode on leaves the
// tables; turning it off brings it back.
func TestClientMode(t *testing.T) {
	servers := newNet(t, 10, scaleOpts)
	boot := []Contact{servers[0].dht.Self()}
	cm := NewMetrics()
	client, err := launch(t, filepath.Join(t.TempDir(), "client"), key.NewKeypair(), "", boot, func(o *Options) {
		scaleOpts(o)
		o.Client = true
		o.Metrics = cm
	})
	if err != nil {
		t.Fatal(err)
	}
	cid := client.dht.Self().ID
	ctx := testCtx(t)
	if !client.dht.Client() {
		t.Fatal("Options.Client did not start the node in client mode")
	}
	if got := len(client.dht.Contacts()); got < 5 {
		t.Fatalf("the client knows %d contacts after bootstrap", got)
	}

	// The client writes; its R holders are servers (it is not one).
	owner, desc := newRecord(t, 2)
	v1 := newValue(t, desc, 0, 1, "from the client", owner)
	if err := client.dht.Set(ctx, desc, 0, v1); err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, n := range nearest(servers, desc.Key(), DefaultR) {
		if lv := localValueOf(t, n, desc.Key(), 0); sameValue(lv, v1) {
			held++
		}
	}
	if held < DefaultR-1 { // one RPC may time out on a loaded machine
		t.Fatalf("%d of the %d nearest servers hold the client's write", held, DefaultR)
	}
	// Servers read it; the client reads a server's write.
	if _, gv, err := servers[3].dht.Get(ctx, desc.Key(), 0); err != nil || !sameValue(gv, v1) {
		t.Fatalf("server Get = %v, %v", gv, err)
	}
	v2 := newValue(t, desc, 1, 1, "from a server", owner)
	if err := servers[6].dht.Set(ctx, desc, 1, v2); err != nil {
		t.Fatal(err)
	}
	if _, gv, err := client.dht.Get(ctx, desc.Key(), 1); err != nil || !sameValue(gv, v2) {
		t.Fatalf("client Get = %v, %v", gv, err)
	}

	// The client watches subkey 0; a server's write is pushed to it.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := client.dht.Watch(wctx, desc.Key(), []uint32{0})
	if err != nil {
		t.Fatal(err)
	}
	holders := nearest(servers, desc.Key(), DefaultR)
	eventually(t, 5*time.Second, "every holder serving the watch", func() bool {
		for _, h := range holders {
			h.dht.watchMu.Lock()
			n := len(h.dht.watches[desc.Key()])
			h.dht.watchMu.Unlock()
			if n == 0 {
				return false
			}
		}
		return true
	})
	for _, h := range holders {
		h.dht.watchMu.Lock()
		for ref, s := range h.dht.watches[desc.Key()] {
			if ref.peer == cid && s.to.Addr.IsValid() {
				t.Errorf("holder %s would push to the client at %s: it must use the client's connection only", h.dht.Self().ID, s.to.Addr)
			}
		}
		h.dht.watchMu.Unlock()
	}
	expect := func(v *record.Value, within time.Duration) {
		t.Helper()
		select {
		case c := <-ch:
			if !sameValue(c.Value, v) {
				t.Fatalf("change seq %d, want seq %d", c.Value.Seq, v.Seq)
			}
		case <-time.After(within):
			t.Fatalf("no change within %v of the write of seq %d", within, v.Seq)
		}
	}
	v3 := newValue(t, desc, 0, 3, "pushed", owner)
	if err := servers[2].dht.Set(ctx, desc, 0, v3); err != nil {
		t.Fatal(err)
	}
	expect(v3, 3*time.Second)

	// The connections between the client and every server go away (a NAT
	// mapping expired). A write's pushes cannot reach the client and the
	// holders do not dial it; the client's next renewal re-connects,
	// sees the newer seq and re-reads it.
	for _, s := range servers {
		client.ep.Disconnect(s.dht.Self().ID)
	}
	v4 := newValue(t, desc, 0, 4, "missed push", owner)
	if err := servers[5].dht.Set(ctx, desc, 0, v4); err != nil {
		t.Fatal(err)
	}
	expect(v4, 5*time.Second)
	cancel()
	for range ch {
	}

	// Replication sweeps and lookups from every server leave the client out.
	for _, s := range servers {
		if err := s.dht.Replicate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range servers {
		for _, target := range [][32]byte{cid, desc.Key(), s.dht.Self().ID} {
			cs, err := s.dht.Closest(ctx, target, DefaultK)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				if c.ID == cid {
					t.Fatalf("server %d's lookup of %x returned the client", i, target[:4])
				}
			}
		}
	}
	if by := knownBy(servers, cid); len(by) > 0 {
		t.Fatalf("servers %v hold the client in their routing tables", by)
	}
	for _, op := range []string{"store", "inspect", "handoff", "find_node", "get"} {
		if n := requestCount(t, cm, op); n != 0 {
			t.Errorf("the client served %v %s requests, want none", n, op)
		}
	}
	if n := requestCount(t, cm, "value_changed"); n < 1 {
		t.Errorf("the client served %v pushes, want at least one", n)
	}
	if st := client.ep.Stats(); st.Accepted != 0 {
		t.Fatalf("the client accepted %d connections: something dialled it", st.Accepted)
	}

	// A server turning client mode on leaves every table; off, it is back.
	s9 := servers[9]
	id9 := s9.dht.Self().ID
	if len(knownBy(servers, id9)) == 0 {
		t.Fatal("server 9 is in no routing table to start with")
	}
	s9.dht.SetClient(true)
	eventually(t, 5*time.Second, "server 9 leaving the tables", func() bool {
		// Lookups by others reach it and learn it from its answers too.
		for _, s := range servers[:9] {
			s.dht.Closest(ctx, id9, DefaultK)
		}
		return len(knownBy(servers, id9)) == 0
	})
	s9.dht.SetClient(false)
	eventually(t, 5*time.Second, "server 9 back in the tables", func() bool {
		return len(knownBy(servers, id9)) > 0
	})
}
