package core

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/key"
)

// fuzzAdminURI is an admin URI with fixed keys, so its text stays the
// same across runs.
func fuzzAdminURI(addrs ...string) AdminURI {
	u := AdminURI{Node: key.NodeID{0: 0xad, 31: 1}, Noise: [32]byte{0: 0x40, 31: 2}, Key: key.Secret{0: 0x5e, 31: 3}}
	for _, a := range addrs {
		u.Addrs = append(u.Addrs, netip.MustParseAddrPort(a))
	}
	return u
}

// FuzzParseAdminURI parses arbitrary text as an admin URI (ParseAdminURI:
// the CLI's --to and `dweb admin` arguments, the drain API's "to" list).
// It must never panic. A refusal wraps ErrAdminURI and is one line. An
// accepted URI names a node, a Noise key and a secret that are not zero,
// and 1 to 4 addresses with a port; its String parses to an equal URI and
// is stable. Seeds and the corpus are URIs as AdminURI.String writes
// them; the seeds add the broken ones of TestAdminURIRoundTrip's kind.
func FuzzParseAdminURI(f *testing.F) {
	canon := fuzzAdminURI("192.0.2.10:4000").String()
	for _, u := range []AdminURI{
		fuzzAdminURI("192.0.2.10:4000"),
		fuzzAdminURI("192.0.2.10:4000", "[2001:db8::10]:4000"),
		fuzzAdminURI("127.0.0.1:1", "[::1]:2", "10.0.0.1:3", "[fe80::1%eth0]:4"),
	} {
		fuzzcorpus.Add(f, u.String())
	}
	for _, s := range []string{
		"  " + strings.Replace(canon, "dweb+admin:", "DWEB+ADMIN://", 1) + "\n",
		strings.Replace(canon, "dweb+admin", "save+dweb", 1),
		"dweb+admin:",
		"dweb+admin:?",
		strings.Split(canon, "&addr=")[0],
		canon + "&x=1",
		canon + "&v=1",
		strings.Replace(canon, "v=1", "v=01", 1),
		strings.Replace(canon, "v=1", "v=2", 1),
		canon + "&addr=example.org:1",
		canon + "&addr=127.0.0.1:0",
		canon + "&addr=%5B%3A%3A1%5D%3A9",
		canon + "&addr=%zz",
		canon + "#x",
		canon + "&addr",
		canon + "&addr=1.2.3.4:5&addr=1.2.3.4:6&addr=1.2.3.4:7&addr=1.2.3.4:8",
		strings.Replace(canon, "key="+key.Secret{0: 0x5e, 31: 3}.Text(), "key=AAAA", 1),
		strings.Replace(canon, "node="+key.NodeID{0: 0xad, 31: 1}.String(), "node="+key.NodeID{}.String(), 1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseAdminURI(s)
		if err != nil {
			if !errors.Is(err, ErrAdminURI) {
				t.Fatalf("error %v does not wrap ErrAdminURI", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q is not one line", err)
			}
			return
		}
		if u.Node.IsZero() || u.Noise == [32]byte{} || u.Key.IsZero() || len(u.Addrs) == 0 || len(u.Addrs) > maxAdminAddrs {
			t.Fatalf("accepted %+v: a zero key, or %d addresses", u, len(u.Addrs))
		}
		for _, a := range u.Addrs {
			if !a.IsValid() || a.Port() == 0 {
				t.Fatalf("accepted address %v", a)
			}
		}
		out := u.String()
		again, err := ParseAdminURI(out)
		if err != nil || !reflect.DeepEqual(again, u) {
			t.Fatalf("String of %q is %q, which parses to %+v, %v", s, out, again, err)
		}
		if out2 := again.String(); out2 != out {
			t.Fatalf("String not stable: %q then %q", out, out2)
		}
	})
}
