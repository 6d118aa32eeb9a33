package dht

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/quic-go/quic-go"
)

// offlineEndpoint is an Endpoint that cannot reach anyone, for driving the
// request handler without a network.
type offlineEndpoint struct{ id key.NodeID }

func (e offlineEndpoint) Handle(transport.Protocol, transport.Handler) {}
func (e offlineEndpoint) ID() key.NodeID                               { return e.id }
func (e offlineEndpoint) LocalAddr() netip.AddrPort {
	return netip.MustParseAddrPort("127.0.0.1:1")
}
func (e offlineEndpoint) OpenStream(context.Context, key.NodeID, netip.AddrPort, transport.Protocol) (*quic.Stream, error) {
	return nil, errors.New("offline")
}

// FuzzHandleRequest feeds arbitrary request bytes through the decoder and
// the handler of a node with a real store: nothing may panic, and nothing
// unverified may be stored.
func FuzzHandleRequest(f *testing.F) {
	db, err := store.Open(f.TempDir(), store.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	d, err := New(Options{Endpoint: offlineEndpoint{key.NewKeypair().ID()}, Store: db})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { d.Close() }) // before the store's (cleanups run last first): its loops read the store
	owner := key.NewKeypair()
	desc, err := record.NewDescriptor(owner, record.Schema{OwnerSubkeys: 2})
	if err != nil {
		f.Fatal(err)
	}
	k := desc.Key()
	v, err := record.NewValue(k, 1, 4, []byte("seed"), owner)
	if err != nil {
		f.Fatal(err)
	}
	de, err := record.EncodeDescriptor(desc)
	if err != nil {
		f.Fatal(err)
	}
	ve, err := record.EncodeValue(v)
	if err != nil {
		f.Fatal(err)
	}
	// A membership-checked record: this node has no MembershipChecker,
	// so it must store none of its values.
	admin := key.NewKeypair()
	cdesc, err := record.NewDescriptor(owner, record.Schema{Membership: &record.MembershipSchema{FirstAdmin: admin.Public(), Slots: 64}})
	if err != nil {
		f.Fatal(err)
	}
	ck := cdesc.Key()
	cde, err := record.EncodeDescriptor(cdesc)
	if err != nil {
		f.Fatal(err)
	}
	var cvals [2][]byte
	for sk := range cvals {
		cv, err := record.NewValue(ck, uint32(sk), 1, []byte("list or slot"), admin)
		if err != nil {
			f.Fatal(err)
		}
		if cvals[sk], err = record.EncodeValue(cv); err != nil {
			f.Fatal(err)
		}
	}
	for _, req := range []request{
		{Op: opStore, Target: ck[:], Subkey: 0, Desc: cde, Value: cvals[0]},
		{Op: opStore, Target: ck[:], Subkey: 1, Desc: cde, Value: cvals[1]},
		{Op: opStore, Target: ck[:], Desc: cde},
		{Op: opPing},
		{Op: opFindNode, Target: k[:]},
		{Op: opGet, Target: k[:], Subkey: 1, WantDesc: true},
		{Op: opStore, Target: k[:], Subkey: 1, Desc: de, Value: ve},
		{Op: 99},
	} {
		b, _ := transport.Marshal(&req)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req request
		if transport.Unmarshal(b, &req) != nil {
			return
		}
		resp := d.handle(req, key.NodeID{1})
		if req.Op == opStore && resp.Code == codeOK {
			// Accepted: what is stored must verify.
			var rk key.RecordKey
			copy(rk[:], req.Target)
			sd, err := d.localDesc(rk)
			if err != nil || sd == nil || sd.Verify() != nil || sd.Key() != rk {
				t.Fatalf("accepted store left descriptor %v, %v", sd, err)
			}
			if req.Value == nil {
				return
			}
			sv, err := d.localValue(rk, req.Subkey)
			if err != nil || sv == nil || sd.VerifyValue(req.Subkey, sv) != nil {
				t.Fatalf("accepted store left value %v, %v", sv, err)
			}
			if sd.Schema.MembershipChecked() {
				t.Fatalf("a node without a membership checker stored subkey %d of membership-checked record %s", req.Subkey, rk)
			}
		}
	})
}

func FuzzParseContact(f *testing.F) {
	id := key.NewKeypair().ID()
	f.Add(id.String() + "@127.0.0.1:4000")
	f.Add(id.String() + "@[::1]:4000")
	f.Add("@:")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseContact(s)
		if err != nil {
			return
		}
		c2, err := ParseContact(c.String())
		if err != nil || c2 != c {
			t.Fatalf("round trip of %q: %v, %v", s, c2, err)
		}
	})
}
