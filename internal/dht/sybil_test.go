package dht

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/dwebkit/dweb/internal/transport/rcmgr/rcmgrtest"
	"github.com/quic-go/quic-go"
)

// sybil is a fresh node ID with its own QUIC endpoint on listen: all an
// attacker needs to speak to a node, with no DHT or store of its own.
func sybil(t *testing.T, listen string) *transport.Endpoint {
	t.Helper()
	ep, err := transport.Listen(transport.Options{Identity: key.NewKeypair(), ListenAddr: listen})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	return ep
}

// sendRequest sends one DHT request from ep to c and returns the response.
func sendRequest(t *testing.T, ep *transport.Endpoint, c Contact, req *request) *response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := ep.OpenStream(ctx, c.ID, c.Addr, transport.ProtoDHT)
	if err != nil {
		t.Fatal(err)
	}
	defer s.CancelRead(0)
	s.SetDeadline(time.Now().Add(5 * time.Second))
	// A node that refuses at once (rate limit) answers without reading
	// the request and stops reading: the write may fail, the answer is
	// still there to read (as roundTrip reads it).
	if err := transport.WriteMsg(s, req); err != nil {
		var se *quic.StreamError
		if !errors.As(err, &se) || !se.Remote {
			t.Fatal(err)
		}
	}
	s.Close()
	var resp response
	if err := transport.ReadMsg(s, MaxMessageSize, &resp); err != nil {
		t.Fatal(err)
	}
	return &resp
}

func storeReq(t *testing.T) *request {
	t.Helper()
	owner, desc := newRecord(t, 1)
	de, err := record.EncodeDescriptor(desc)
	if err != nil {
		t.Fatal(err)
	}
	ve, err := record.EncodeValue(newValue(t, desc, 0, 1, "sybil", owner))
	if err != nil {
		t.Fatal(err)
	}
	k := desc.Key()
	return &request{Op: opStore, Target: k[:], Desc: de, Value: ve}
}

// TestSybilRecordQuota: 25 fresh node IDs from one address store no more
// than the per-IP record quota, 25 from one /24 (25 addresses) no more
// than the per-prefix quota, and another /24 is not affected; every
// refusal is counted, by scope, in the resource manager's metrics and in
// dweb_dht_refused_total{reason="quota"}.
func TestSybilRecordQuota(t *testing.T) {
	const perPeer, perIP, perPrefix = 4, 6, 10
	rm := rcmgr.New(rcmgr.Limits{LocalAddrs: true})
	m := NewMetrics()
	victim, err := launch(t, t.TempDir(), key.NewKeypair(), "", nil, func(o *Options) {
		scaleOpts(o)
		o.MaxRecordsPerPeer, o.MaxRecordsPerIP, o.MaxRecordsPerPrefix = perPeer, perIP, perPrefix
		o.Resources, o.Metrics = rm, m
	})
	if err != nil {
		t.Fatal(err)
	}
	to := victim.dht.Self()
	storeAll := func(listen func(i int) string) (stored int) {
		for i := range 25 {
			ep := sybil(t, listen(i))
			for range 2 {
				resp := sendRequest(t, ep, to, storeReq(t))
				switch err := (&RemoteError{Code: resp.Code, Msg: resp.Msg}); {
				case resp.Code == codeOK:
					stored++
				case !errors.Is(err, ErrQuota):
					t.Fatalf("STORE refused with %d %q, want ok or quota", resp.Code, resp.Msg)
				}
			}
		}
		return stored
	}
	if n := storeAll(func(int) string { return "127.0.11.1:0" }); n != perIP {
		t.Errorf("25 IDs on one address stored %d records, want the per-IP quota %d", n, perIP)
	}
	if n := storeAll(func(i int) string { return fmt.Sprintf("127.0.12.%d:0", i+1) }); n != perPrefix {
		t.Errorf("25 IDs on one /24 stored %d records, want the per-prefix quota %d", n, perPrefix)
	}
	if n := storeAll(func(i int) string { return fmt.Sprintf("127.0.%d.1:0", 100+i) }); n != 50 {
		t.Errorf("25 IDs on 25 /24s stored %d records, want all 50", n)
	}
	if got, want := rcmgrtest.Refused(t, rm, rcmgr.ScopeIP, KindRecord), float64(50-perIP); got != want {
		t.Errorf("refused{ip,dht_record} = %v, want %v", got, want)
	}
	if got, want := rcmgrtest.Refused(t, rm, rcmgr.ScopePrefix, KindRecord), float64(50-perPrefix); got != want {
		t.Errorf("refused{prefix,dht_record} = %v, want %v", got, want)
	}
	if got, want := refusedCount(t, m, ReasonQuota), float64(100-perIP-perPrefix); got != want {
		t.Errorf("dweb_dht_refused_total{quota} = %v, want %v", got, want)
	}
}

// TestSybilRequestRate: fresh node IDs of one /24 share its request rate.
func TestSybilRequestRate(t *testing.T) {
	rm := rcmgr.New(rcmgr.Limits{LocalAddrs: true})
	victim, err := launch(t, t.TempDir(), key.NewKeypair(), "", nil, func(o *Options) {
		scaleOpts(o)
		o.PrefixRequestRate, o.PrefixRequestBurst = 1, 5
		o.Resources = rm
	})
	if err != nil {
		t.Fatal(err)
	}
	ok, limited := 0, 0
	for i := range 10 {
		resp := sendRequest(t, sybil(t, fmt.Sprintf("127.0.13.%d:0", i+1)), victim.dht.Self(), &request{Op: opPing})
		switch resp.Code {
		case codeOK:
			ok++
		case codeRateLimited:
			limited++
		default:
			t.Fatalf("ping: %d %q", resp.Code, resp.Msg)
		}
	}
	if ok != 5 || limited != 5 {
		t.Fatalf("10 fresh IDs of one /24: %d served, %d limited; want 5 and 5", ok, limited)
	}
	if resp := sendRequest(t, sybil(t, "127.0.14.1:0"), victim.dht.Self(), &request{Op: opPing}); resp.Code != codeOK {
		t.Fatalf("another /24 limited: %q", resp.Msg)
	}
	if got := rcmgrtest.Refused(t, rm, rcmgr.ScopePrefix, KindRequest); got != 5 {
		t.Fatalf("refused{prefix,dht_request} = %v, want 5", got)
	}
}
