package datarepo

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/transport"
)

// FuzzRepoName decodes arbitrary bytes as the value of a repo's subkey 0,
// its name (decodeName, as Repo.Name reads it). It must never panic. A
// name it accepts passes SetName's rules (CheckName: 1 to MaxNameLen bytes
// of UTF-8, no '/' or NUL), and its encoding (encodeName, as SetName
// writes it) fits a record value and decodes to the same name. A refusal
// wraps ErrBadValue, and ErrBadName too when the JSON was well-formed.
// Seeds and the corpus are names as SetName writes them; the seeds add
// malformed values.
func FuzzRepoName(f *testing.F) {
	for _, name := range []string{"alice's phone", "Café 📷 <&>", strings.Repeat("é", MaxNameLen/2), "x"} {
		fuzzcorpus.Add(f, encodeName(name))
	}
	for _, s := range []string{
		`{"name":"a","later":[1,2]}`,
		`{"name":"a","name":"b"}`,
		`{"NAME":"a"}`,
		`{"name":"\ud800"}`,
		`{"name":""}`,
		`{"name":"a/b"}`,
		`{"name":"a\u0000"}`,
		`{"name":".."}`,
		`{"name":"` + strings.Repeat("x", MaxNameLen+1) + `"}`,
		`{"name":1}`,
		`{}`,
		`null`,
		`[]`,
		`{"name":"a"} x`,
		"{\"name\":\"\xff\"}",
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := decodeName(b)
		if err != nil {
			if !errors.Is(err, ErrBadValue) {
				t.Fatalf("error %v does not wrap ErrBadValue", err)
			}
			var v nameValue
			if jerr := json.Unmarshal(b, &v); jerr == nil && !errors.Is(err, ErrBadName) {
				t.Fatalf("well-formed value refused with %v, which does not wrap ErrBadName", err)
			}
			return
		}
		if err := CheckName(name); err != nil {
			t.Fatalf("accepted name %q breaks SetName's rules: %v", name, err)
		}
		enc := encodeName(name)
		if len(enc) > record.MaxPlaintextSize {
			t.Fatalf("accepted name encodes to %d bytes, over a record value's %d", len(enc), record.MaxPlaintextSize)
		}
		if again, err := decodeName(enc); err != nil || again != name {
			t.Fatalf("name %q encodes to %s, which decodes to %q, %v", name, enc, again, err)
		}
	})
}

// fuzzTunnelDescriptor is a descriptor with every field set, its relays
// valid contacts.
func fuzzTunnelDescriptor(addrs, relays int) TunnelDescriptor {
	td := TunnelDescriptor{Node: key.NodeID{0: 0x11, 31: 0x1d}, Static: [32]byte{0: 0x5a, 31: 0x7c}}
	for i := range addrs {
		if i%2 == 0 {
			td.Addrs = append(td.Addrs, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 4000+uint16(i)).String())
		} else {
			td.Addrs = append(td.Addrs, netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), 4000+uint16(i)).String())
		}
	}
	for i := range relays {
		td.Relays = append(td.Relays, dht.Contact{ID: key.NodeID{0: byte(i + 1)}, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 443)}.String())
	}
	return td
}

// FuzzTunnelDescriptor decodes arbitrary bytes as the value of a repo's
// tunnel slot (decodeTunnel, as Repo.Tunnel reads it; Group.Providers
// hands the result to every dial). It must never panic. A descriptor it
// accepts names a node and a Noise key, lists at most MaxTunnelAddrs
// addresses, each an IP host:port with a port, and at most MaxTunnelRelays
// relays, each a contact; SetTunnel would write it (check), in at most a
// record value, and its encoding decodes to an equal descriptor that
// encodes to the same bytes. A refusal wraps ErrBadValue. Seeds and the
// corpus are descriptors as SetTunnel writes them; the seeds add ones
// that break each rule.
func FuzzTunnelDescriptor(f *testing.F) {
	enc := func(td any) []byte {
		b, err := transport.Marshal(td)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	for _, td := range []TunnelDescriptor{
		fuzzTunnelDescriptor(1, 0),
		fuzzTunnelDescriptor(2, 1),
		fuzzTunnelDescriptor(0, 2),
		fuzzTunnelDescriptor(0, 0),
		fuzzTunnelDescriptor(MaxTunnelAddrs, MaxTunnelRelays),
	} {
		fuzzcorpus.Add(f, enc(td))
	}
	bad := func(edit func(*TunnelDescriptor)) []byte {
		td := fuzzTunnelDescriptor(2, 1)
		edit(&td)
		return enc(td)
	}
	for _, b := range [][]byte{
		enc(fuzzTunnelDescriptor(MaxTunnelAddrs+1, 0)),
		enc(fuzzTunnelDescriptor(0, MaxTunnelRelays+1)),
		bad(func(td *TunnelDescriptor) { td.Node = key.NodeID{} }),
		bad(func(td *TunnelDescriptor) { td.Static = [32]byte{} }),
		bad(func(td *TunnelDescriptor) { td.Addrs[0] = "example.org:4000" }),
		bad(func(td *TunnelDescriptor) { td.Addrs[0] = "198.51.100.1:0" }),
		bad(func(td *TunnelDescriptor) { td.Addrs[1] = "[fe80::1%eth0]:4000" }),
		bad(func(td *TunnelDescriptor) { td.Relays[0] = "203.0.113.1:443" }),
		enc(map[int]any{1: make([]byte, 31), 2: make([]byte, 32), 3: []string{}}), // a short node ID
		enc(map[int]any{1: "not bytes", 2: make([]byte, 32)}),
		append(enc(fuzzTunnelDescriptor(1, 0)), 0), // trailing bytes
		{0xa0},
		{},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		td, err := decodeTunnel(b)
		if err != nil {
			if !errors.Is(err, ErrBadValue) {
				t.Fatalf("error %v does not wrap ErrBadValue", err)
			}
			return
		}
		if td.Node.IsZero() || td.Static == [32]byte{} || len(td.Addrs) > MaxTunnelAddrs || len(td.Relays) > MaxTunnelRelays {
			t.Fatalf("accepted %+v: no node or key, or over the bounds", td)
		}
		for _, a := range td.Addrs {
			if ap, err := netip.ParseAddrPort(a); err != nil || ap.Port() == 0 {
				t.Fatalf("accepted address %q that does not parse", a)
			}
		}
		for _, r := range td.Relays {
			if _, err := dht.ParseContact(r); err != nil {
				t.Fatalf("accepted relay %q that does not parse: %v", r, err)
			}
		}
		if err := td.check(); err != nil {
			t.Fatalf("accepted %+v, which SetTunnel refuses: %v", td, err)
		}
		out, err := transport.Marshal(td)
		if err != nil || len(out) > record.MaxPlaintextSize {
			t.Fatalf("accepted %+v encodes to %d bytes, %v", td, len(out), err)
		}
		again, err := decodeTunnel(out)
		if err != nil || !reflect.DeepEqual(again, td) {
			t.Fatalf("round trip: %+v encodes to %x, which decodes to %+v, %v", td, out, again, err)
		}
		if out2, _ := transport.Marshal(again); string(out2) != string(out) {
			t.Fatalf("encoding not stable: %x then %x", out, out2)
		}
	})
}
