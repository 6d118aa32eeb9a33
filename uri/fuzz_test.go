package uri

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseInvite checks that ParseInvite never panics, that every failure is
// a one-line *ParamError, and that every accepted invite survives
// String/ParseInvite unchanged but for its name (String leaves it out), and
// JoinCode(Name)/ParseInvite unchanged with the name, both no longer than
// MaxURILen.
// `go test` runs the seed corpus; `go test -fuzz FuzzParseInvite ./uri`
// explores further.
func FuzzParseInvite(f *testing.F) {
	fx := newFixture(f)
	canon := build(fx.pairs)
	query := strings.TrimPrefix(canon, "save+dweb:")
	seeds := []string{
		canon,
		build(fx.with("bs")),
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
