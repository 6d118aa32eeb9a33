package dht

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/wireio"
	dto "github.com/prometheus/client_model/go"
)

// refusedCount reads dweb_dht_refused_total{reason} of m.
func refusedCount(t *testing.T, m *Metrics, reason string) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Refused.WithLabelValues(reason).Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetCounter().GetValue()
}

// rawFrame sends one frame of raw bytes on a DHT stream from one node to
// another and returns the response.
func rawFrame(t *testing.T, from, to *testNode, frame []byte) *response {
	t.Helper()
	ctx := testCtx(t)
	s, err := from.ep.OpenStream(ctx, to.dht.Self().ID, to.dht.Self().Addr, transport.ProtoDHT)
	if err != nil {
		t.Fatal(err)
	}
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write(frame); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var resp response
	if err := transport.ReadMsg(s, MaxMessageSize, &resp); err != nil {
		t.Fatalf("read response: %v", err)
	}
	return &resp
}

// TestRefusals sends each kind of bad input to a node and checks that it is
// refused with its typed error, counted in dweb_dht_refused_total, and that
// the node keeps serving.
func TestRefusals(t *testing.T) {
	m := NewMetrics()
	nodes := newNet(t, 3, func(o *Options) {
		scaleOpts(o)
		o.MaxRecordsPerPeer = 2
		o.Metrics = m
	})
	from, to := nodes[1], nodes[2]
	alive := func() {
		t.Helper()
		if err := from.dht.Ping(testCtx(t), to.dht.Self()); err != nil {
			t.Fatalf("node stopped serving: %v", err)
		}
	}
	check := func(reason string, before float64, resp *response, want error) {
		t.Helper()
		if err := (&RemoteError{Code: resp.Code, Msg: resp.Msg}); !errors.Is(err, want) {
			t.Errorf("%s: response %d %q, want %v", reason, resp.Code, resp.Msg, want)
		}
		if got := refusedCount(t, m, reason); got <= before {
			t.Errorf("%s: metric %v, was %v", reason, got, before)
		}
		alive()
	}

	t.Run("Malformed", func(t *testing.T) {
		b := refusedCount(t, m, ReasonMalformed)
		var f bytes.Buffer
		transport.WriteFrame(&f, []byte{0xff, 0x00, 0x13})
		check(ReasonMalformed, b, rawFrame(t, from, to, f.Bytes()), ErrBadRequest)
		b = refusedCount(t, m, ReasonMalformed)
		resp, err := from.dht.call(testCtx(t), to.dht.Self(), &request{Op: opGet, Target: []byte{1, 2, 3}})
		if err != nil {
			t.Fatal(err)
		}
		check(ReasonMalformed, b, resp, ErrBadRequest)
	})

	t.Run("OversizedFrame", func(t *testing.T) {
		b := refusedCount(t, m, ReasonOversized)
		hdr := binary.BigEndian.AppendUint32(nil, MaxMessageSize+1)
		check(ReasonOversized, b, rawFrame(t, from, to, hdr), record.ErrTooLarge)
	})

	t.Run("OversizedValue", func(t *testing.T) {
		b := refusedCount(t, m, ReasonOversized)
		owner, desc := newRecord(t, 1)
		v := newValue(t, desc, 0, 1, "x", owner)
		v.Data = make([]byte, record.MaxValueSize+1)
		check(ReasonOversized, b, rawStore(t, from, to, desc.Key(), desc, 0, v), record.ErrTooLarge)
		// Set refuses it locally with the typed error.
		err := from.dht.Set(testCtx(t), desc, 0, v)
		var le *record.LimitError
		if !errors.As(err, &le) {
			t.Errorf("Set of oversized value: %v, want *record.LimitError", err)
		}
	})

	t.Run("BadSignature", func(t *testing.T) {
		b := refusedCount(t, m, ReasonBadSignature)
		owner, desc := newRecord(t, 1)
		v := newValue(t, desc, 0, 1, "signed", owner)
		v.Data = []byte("altered")
		check(ReasonBadSignature, b, rawStore(t, from, to, desc.Key(), desc, 0, v), record.ErrBadSignature)
	})

	t.Run("NotWriter", func(t *testing.T) {
		b := refusedCount(t, m, ReasonNotWriter)
		owner := key.NewKeypair()
		member := key.NewKeypair()
		desc, err := record.NewDescriptor(owner, record.Schema{OwnerSubkeys: 1, Members: []record.MemberRange{{Key: member.Public(), Count: 2}}})
		if err != nil {
			t.Fatal(err)
		}
		// The member may write its subkeys, not the owner's, and the owner
		// not the member's.
		if resp := rawStore(t, from, to, desc.Key(), desc, 1, newValue(t, desc, 1, 1, "mine", member)); resp.Code != codeOK {
			t.Fatalf("member's own subkey refused: %d %q", resp.Code, resp.Msg)
		}
		check(ReasonNotWriter, b, rawStore(t, from, to, desc.Key(), desc, 0, newValue(t, desc, 0, 1, "not mine", member)), record.ErrNotWriter)
		b = refusedCount(t, m, ReasonNotWriter)
		check(ReasonNotWriter, b, rawStore(t, from, to, desc.Key(), desc, 2, newValue(t, desc, 2, 1, "owner", owner)), record.ErrNotWriter)
	})

	t.Run("SeqRange", func(t *testing.T) {
		owner, desc := newRecord(t, 1)
		k := desc.Key()
		if err := desc.VerifyValue(0, signedAt(k, 0, 1, []byte("x"), owner)); err != nil {
			t.Fatalf("signedAt makes no valid signature: %v", err)
		}
		if resp := rawStore(t, from, to, k, desc, 0, newValue(t, desc, 0, 7, "honest", owner)); resp.Code != codeOK {
			t.Fatalf("honest value refused: %d %q", resp.Code, resp.Msg)
		}
		for _, seq := range []uint64{record.MaxSeq + 1, 1<<64 - 1} {
			b := refusedCount(t, m, ReasonSeqRange)
			v := signedAt(k, 0, seq, []byte("hostile"), owner)
			check(ReasonSeqRange, b, rawStore(t, from, to, k, desc, 0, v), record.ErrSeqRange)
			if err := from.dht.Set(testCtx(t), desc, 0, v); !errors.Is(err, record.ErrSeqRange) {
				t.Errorf("Set of seq %d: %v, want record.ErrSeqRange", seq, err)
			}
		}
		if v := localValueOf(t, to, k, 0); v == nil || v.Seq != 7 {
			t.Fatalf("holder's value after the refusals: %+v", v)
		}
	})

	t.Run("RecordQuota", func(t *testing.T) {
		// Fresh peer identity, so earlier subtests' records do not count.
		q, err := launch(t, t.TempDir(), key.NewKeypair(), "", []Contact{nodes[0].dht.Self()}, scaleOpts)
		if err != nil {
			t.Fatal(err)
		}
		b := refusedCount(t, m, ReasonQuota)
		for i := range 3 {
			owner, desc := newRecord(t, 1)
			resp := rawStore(t, q, to, desc.Key(), desc, 0, newValue(t, desc, 0, 1, "r", owner))
			if i < 2 && resp.Code != codeOK {
				t.Fatalf("record %d refused: %q", i, resp.Msg)
			}
			if i == 2 {
				check(ReasonQuota, b, resp, ErrQuota)
			}
		}
	})
}

func TestRateLimit(t *testing.T) {
	m := NewMetrics()
	// Two nodes that do not bootstrap: a join's requests would spend the
	// five tokens before the pings below, and a Bootstrap whose lookup
	// is refused fails.
	base := t.TempDir()
	nodes := make([]*testNode, 2)
	for i := range nodes {
		n, err := launch(t, filepath.Join(base, strconv.Itoa(i)), key.NewKeypair(), "", nil, func(o *Options) {
			scaleOpts(o)
			o.RequestRate = 10
			o.RequestBurst = 5
			o.Metrics = m
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
	}
	ctx := testCtx(t)
	limited := 0
	for range 20 {
		err := nodes[1].dht.Ping(ctx, nodes[0].dht.Self())
		if errors.Is(err, ErrRateLimited) {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited == 0 || refusedCount(t, m, ReasonRateLimited) < float64(limited) {
		t.Fatalf("%d of 20 pings limited, metric %v", limited, refusedCount(t, m, ReasonRateLimited))
	}
	time.Sleep(300 * time.Millisecond) // three tokens back
	if err := nodes[1].dht.Ping(ctx, nodes[0].dht.Self()); err != nil {
		t.Fatalf("ping after waiting: %v", err)
	}
}

func TestIPDiversity(t *testing.T) {
	self := key.NewKeypair().ID()
	inBucket0 := func(addr string) Contact {
		for {
			id := key.NewKeypair().ID()
			if bucketIndex(self, id) == 0 {
				return Contact{ID: id, Addr: netip.MustParseAddrPort(addr)}
			}
		}
	}
	refused := 0
	tb := newTable(self, 20)
	tb.perBucket, tb.perTable, tb.refused = 2, 3, func() { refused++ }
	// Global addresses in one /24: two per bucket.
	if !tb.seen(inBucket0("8.8.8.1:1")) || !tb.seen(inBucket0("8.8.8.2:1")) {
		t.Fatal("first two of a /24 refused")
	}
	if tb.seen(inBucket0("8.8.8.3:1")) || refused != 1 {
		t.Fatal("third of a /24 in one bucket accepted")
	}
	if !tb.seen(inBucket0("8.8.9.1:1")) {
		t.Fatal("another /24 refused")
	}
	// Loopback is exempt unless allAddrs.
	for i := range 5 {
		if !tb.seen(inBucket0(fmt.Sprintf("127.0.0.1:%d", i+1))) {
			t.Fatal("loopback contact refused by default")
		}
	}
	tb2 := newTable(self, 20)
	tb2.perBucket, tb2.allAddrs = 2, true
	tb2.seen(inBucket0("127.0.0.1:1"))
	tb2.seen(inBucket0("127.0.0.1:2"))
	if tb2.seen(inBucket0("127.0.0.1:3")) {
		t.Fatal("DiversityAllAddrs: third loopback contact accepted")
	}
	// The table-wide limit: 3 of one /48 in all buckets.
	tb3 := newTable(self, 20)
	tb3.perTable = 3
	n := 0
	for range 10 {
		c := Contact{ID: key.NewKeypair().ID(), Addr: netip.MustParseAddrPort("[2001:db8:1::5]:7")}
		if tb3.seen(c) {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("table took %d contacts of one /48, want 3", n)
	}
}

// TestOfflineWrites: a Set made while no node is reachable is kept across a
// restart and sent when the network is back; OnWrite hears it queued, then
// sent.
func TestOfflineWrites(t *testing.T) {
	ctx := testCtx(t)
	opts := func(o *Options) {
		scaleOpts(o)
		o.QueueRetry = 200 * time.Millisecond
	}
	nodes := newNet(t, 6, opts)
	var mu sync.Mutex
	var writes []WriteEvent
	xopts := func(o *Options) {
		opts(o)
		o.OnWrite = func(w WriteEvent) {
			mu.Lock()
			writes = append(writes, w)
			mu.Unlock()
		}
	}
	heard := func() []WriteEvent {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(writes)
	}
	dir, kp := t.TempDir(), key.NewKeypair()
	x, err := launch(t, dir, kp, "", nil, xopts)
	if err != nil {
		t.Fatal(err)
	}
	owner, desc := newRecord(t, 1)
	v := newValue(t, desc, 0, 1, "written offline", owner)
	if err := x.dht.Set(ctx, desc, 0, v); err != nil {
		t.Fatalf("offline Set: %v", err)
	}
	if n := x.dht.Pending(); n != 1 {
		t.Fatalf("Pending = %d, want 1", n)
	}
	if got, want := heard(), []WriteEvent{{desc.Key(), 0, 1, WriteQueued}}; !slices.Equal(got, want) {
		t.Fatalf("OnWrite heard %v, want %v", got, want)
	}
	x = x.restart(nil)
	if n := x.dht.Pending(); n != 1 {
		t.Fatalf("after restart Pending = %d, want 1", n)
	}
	// The network comes back: the node learns a contact and joins.
	x.dht.AddContacts(nodes[0].dht.Self())
	if err := x.dht.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	// The queue drops the write, then tells OnWrite: wait for both.
	for x.dht.Pending() > 0 || len(heard()) < 2 {
		if ctx.Err() != nil {
			t.Fatalf("queue not sent: %d pending, OnWrite heard %v", x.dht.Pending(), heard())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, want := heard(), []WriteEvent{{desc.Key(), 0, 1, WriteQueued}, {desc.Key(), 0, 1, WriteSent}}; !slices.Equal(got, want) {
		t.Fatalf("OnWrite heard %v, want %v", got, want)
	}
	held := 0
	for _, h := range nearest(nodes, desc.Key(), DefaultR) {
		if lv := localValueOf(t, h, desc.Key(), 0); sameValue(lv, v) {
			held++
		}
	}
	if held < len(nodes)-1 {
		t.Fatalf("%d of %d nodes hold the queued write", held, len(nodes))
	}
	if _, gv, err := nodes[4].dht.Get(ctx, desc.Key(), 0); err != nil || !sameValue(gv, v) {
		t.Fatalf("Get of queued write: %v, %v", gv, err)
	}
	// Online, a write is sent at once.
	if err := x.dht.Set(ctx, desc, 0, newValue(t, desc, 0, 2, "written online", owner)); err != nil {
		t.Fatal(err)
	}
	if got := heard(); got[len(got)-1] != (WriteEvent{desc.Key(), 0, 2, WriteSent}) {
		t.Fatalf("OnWrite heard %v, want a sent seq 2 last", got)
	}
}

// TestStoredValueAboveMaxSeq: a value above record.MaxSeq that a holder
// stored before the limit existed reads as absent, is not reported by
// INSPECT, and is replaced by the next valid write.
func TestStoredValueAboveMaxSeq(t *testing.T) {
	nodes := newNet(t, 2, scaleOpts)
	n := nodes[0]
	owner, desc := newRecord(t, 2)
	k := desc.Key()
	if err := n.dht.accept(k, desc, 0, nil); err != nil {
		t.Fatal(err)
	}
	enc, err := record.EncodeValue(signedAt(k, 1, 1<<64-1, []byte("old hostile"), owner))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.db.Set(valueKey(k, 1), enc, true); err != nil {
		t.Fatal(err)
	}
	if _, v, err := n.dht.GetLocal(testCtx(t), k, 1); err != nil || v != nil {
		t.Fatalf("GetLocal = %+v, %v; want no value", v, err)
	}
	resp := n.dht.handle(request{Op: opInspect, Target: k[:]}, nodes[1].dht.Self().ID)
	if resp.Code != codeOK || !resp.Has || len(resp.Seqs) != 0 {
		t.Fatalf("INSPECT = %+v, want the descriptor and no seqs", resp)
	}
	if err := nodes[1].dht.Set(testCtx(t), desc, 1, newValue(t, desc, 1, 0, "repair", owner)); err != nil {
		t.Fatalf("repair: %v", err)
	}
	if v := localValueOf(t, n, k, 1); v == nil || string(v.Data) != "repair" {
		t.Fatalf("value after the repair: %+v", v)
	}
}

// TestRequestBufferGrowsWithBytes: the frame reader of every DHT request
// and answer (transport.ReadMsg at MaxMessageSize) spends memory on the
// bytes a peer sent, not on the length it announced. A request that
// announces MaxMessageSize and sends ten bytes ends with
// io.ErrUnexpectedEOF and costs a few KiB, not 98.
func TestRequestBufferGrowsWithBytes(t *testing.T) {
	frame := binary.BigEndian.AppendUint32(nil, MaxMessageSize)
	frame = append(frame, "ten bytes!"...)
	read := func() {
		var req request
		if err := transport.ReadMsg(bytes.NewReader(frame), MaxMessageSize, &req); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	}
	const runs = 50
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	read()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		read()
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 2*wireio.FirstChunk {
		t.Fatalf("%d bytes allocated per request that announced %d and sent 10", per, MaxMessageSize)
	}
}
