package uri

import (
	"errors"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/key"
)

// FuzzParseInvite checks that ParseInvite never panics, that every failure is
// a one-line *ParamError, that an accepted invite is of version 1 with a
// secret or of version 2, sealed or bearer, without one, and that it survives
// String/ParseInvite unchanged but for its name (String leaves it out), and
// JoinCode(Name)/ParseInvite unchanged with the name, both no longer than
// MaxURILen.
// `go test` runs the seed corpus; `go test -fuzz FuzzParseInvite ./uri`
// explores further. The valid seeds, invites of both versions as String and
// JoinCode write them, are also the checked-in corpus (internal/fuzzcorpus).
func FuzzParseInvite(f *testing.F) {
	fx := newFixture(f)
	canon := build(fx.pairs)
	query := strings.TrimPrefix(canon, "save+dweb:")
	sealed, bearer := newFixtureV2(f, true), newFixtureV2(f, false)
	canon2 := build(sealed.pairs)
	for _, inv := range []Invite{fx.inv, sealed.inv, bearer.inv} {
		fuzzcorpus.Add(f, inv.String())
		fuzzcorpus.Add(f, inv.JoinCode("Tom & Jerry"))
		inv.Bootstrap = nil
		fuzzcorpus.Add(f, inv.String())
	}
	seeds := []string{
		"save+dweb://" + query,
		"SAVE+DWEB:" + query,
		"  " + canon + "\n",
		strings.Replace(canon, "@", "%40", -1),
		// broken
		"",
		"save+dweb:",
		"save+dweb:?",
		"save+dweb:?v=1&dht=xyz",
		"save+dweb::" + query,
		"http:" + query,
		canon + "#x",
		canon + "&",
		canon + "&foo=bar",
		canon + "&v=1",
		canon + "&bs=" + fx.value("bs"),
		build(fx.with("sk")),
		build(fx.with("pk", [2]string{"pk", fx.value("dht")})),
		build(fx.with("v", [2]string{"v", "2"})),
		build(fx.with("v", [2]string{"v", "0"})),
		build(fx.with("bs", [2]string{"bs", fx.value("pk") + "@[::1:80"})),
		build(fx.with("bs", [2]string{"bs", fx.value("pk") + "@1.2.3.4:99999"})),
		"save+dweb:?v=1&%zz=1",
		"save+dweb:?v=%",
		canon + strings.Repeat("&bs=x", 900),
		// name
		canon + "&name=Tom+%26+Jerry",
		"save+dweb:?name=Caf%C3%A9&" + query[1:],
		canon + "&name=",
		canon + "&name=%F0%9F%93%B7+%7E*",
		canon + "&name=" + strings.Repeat("%C3%A9", 128),
		canon + "&name=a%0Ab",
		canon + "&name=%FF",
		canon + "&name=a&name=b",
		canon + "&name=a&name=a",
		canon + "&name",
		// version 2
		"SAVE+DWEB://" + strings.TrimPrefix(canon2, "save+dweb:"),
		build(sealed.with("lv", [2]string{"lv", "0"})),
		build(sealed.with("lv", [2]string{"lv", "18446744073709551615"})),
		build(sealed.with("lv", [2]string{"lv", "18446744073709551616"})),
		build(sealed.with("lv", [2]string{"lv", "01"})),
		build(sealed.with("lv")),
		build(sealed.with("lh")),
		build(sealed.with("for")),
		build(sealed.with("", [2]string{"ik", bearer.value("ik")})),
		build(sealed.with("", [2]string{"enc", fx.value("enc")})),
		build(sealed.with("v", [2]string{"v", "1"})),
		build(sealed.with("v", [2]string{"v", "3"})),
		build(fx.with("", [2]string{"lh", sealed.value("lh")})),
		build(bearer.with("ik", [2]string{"ik", key.RecordKey{}.String()})),
		canon2 + "&name=" + strings.Repeat("%21", MaxNameLen),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		inv, err := ParseInvite(s)
		if err != nil {
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *ParamError", err, err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "invite: ") || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error %q is not one line starting with \"invite: \"", msg)
			}
			return
		}
		switch inv.Version {
		case 1:
			if inv.Sealed() || inv.Bearer() || inv.Secret.IsZero() {
				t.Fatalf("accepted version 1 invite %#v", inv)
			}
		case 2:
			if inv.Sealed() == inv.Bearer() || !inv.Secret.IsZero() || inv.Owner.Private != nil {
				t.Fatalf("accepted version 2 invite %#v", inv)
			}
		default:
			t.Fatalf("accepted version %d", inv.Version)
		}
		out := inv.String()
		if len(out) > MaxURILen {
			t.Fatalf("accepted invite's String is %d bytes, over MaxURILen", len(out))
		}
		again, err := ParseInvite(out)
		if err != nil {
			t.Fatalf("String of an accepted invite does not parse: %v\ninput %q\noutput %q", err, s, out)
		}
		if !equalInvite(inv, again) || again.Name != "" {
			t.Fatalf("round trip changed the invite:\n%#v\n%#v", inv, again)
		}
		if out2 := again.String(); out2 != out {
			t.Fatalf("String not stable:\n%q\n%q", out, out2)
		}
		code := inv.JoinCode(inv.Name)
		if len(code) > MaxURILen {
			t.Fatalf("accepted invite's JoinCode is %d bytes, over MaxURILen", len(code))
		}
		if !strings.HasPrefix(code, out+NameSeparator) {
			t.Fatalf("JoinCode %q does not start with String and %q", code, NameSeparator)
		}
		named, err := ParseInvite(code)
		if err != nil {
			t.Fatalf("JoinCode of an accepted invite does not parse: %v\ninput %q\noutput %q", err, s, code)
		}
		if !equalInvite(inv, named) || named.Name != inv.Name {
			t.Fatalf("JoinCode round trip changed the invite:\n%#v\n%#v", inv, named)
		}
	})
}
