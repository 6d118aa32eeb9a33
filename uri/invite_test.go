package uri

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/internal/key"
)

// testRand returns a deterministic generator so failures reproduce.
func testRand(seed uint64) *rand.Rand {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return rand.New(rand.NewChaCha8(s))
}

func randBytes(r *rand.Rand) (b [32]byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randKeypair(t testing.TB, r *rand.Rand) key.Keypair {
	seed := randBytes(r)
	kp, err := key.KeypairFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func randHost(r *rand.Rand) string {
	switch r.IntN(3) {
	case 0:
		return netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}).String()
	case 1:
		b := randBytes(r)
		return "[" + netip.AddrFrom16([16]byte(b[:16])).String() + "]"
	default:
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
		labels := make([]string, 1+r.IntN(3))
		for i := range labels {
			l := make([]byte, 1+r.IntN(10))
			for j := range l {
				l[j] = letters[r.IntN(26)] // letters only: never all digits
			}
			labels[i] = string(l)
		}
		return strings.Join(labels, ".")
	}
}

func randInvite(t testing.TB, r *rand.Rand) Invite {
	inv := Invite{
		Version: 1,
		Group:   key.RecordKey(randBytes(r)),
		Secret:  key.Secret(randBytes(r)),
		Owner:   randKeypair(t, r),
	}
	for n := r.IntN(MaxBootstrap + 1); n > 0; n-- {
		id := randKeypair(t, r).ID()
		inv.Bootstrap = append(inv.Bootstrap, fmt.Sprintf("%s@%s:%d", id, randHost(r), 1+r.IntN(65535)))
	}
	return inv
}

// equalInvite compares every field but Name.
func equalInvite(a, b Invite) bool {
	if a.Version != b.Version || a.Group != b.Group || a.Secret != b.Secret ||
		!bytes.Equal(a.Owner.Private, b.Owner.Private) || len(a.Bootstrap) != len(b.Bootstrap) ||
		!bytes.Equal(a.For, b.For) || !bytes.Equal(a.InviteKey.Private, b.InviteKey.Private) ||
		a.ListVersion != b.ListVersion || a.ListHash != b.ListHash {
		return false
	}
	for i := range a.Bootstrap {
		if a.Bootstrap[i] != b.Bootstrap[i] {
			return false
		}
	}
	return true
}

// fixture is a valid invite with known parts, written as an ordered list of
// parameters so tests can drop, change or repeat one.
type fixture struct {
	inv   Invite
	pairs [][2]string
}

func newFixture(t testing.TB) fixture {
	inv := randInvite(t, testRand(1))
	inv.Bootstrap = []string{
		randKeypair(t, testRand(2)).ID().String() + "@192.0.2.7:4433",
		randKeypair(t, testRand(3)).ID().String() + "@[2001:db8::1]:443",
		randKeypair(t, testRand(4)).ID().String() + "@boot.example.org:7000",
	}
	pairs := [][2]string{
		{"v", "1"},
		{"dht", inv.Group.String()},
		{"enc", inv.Secret.Text()},
		{"pk", inv.Owner.ID().String()},
		{"sk", key.Secret(inv.Owner.Seed()).Text()},
	}
	for _, bs := range inv.Bootstrap {
		pairs = append(pairs, [2]string{"bs", bs})
	}
	return fixture{inv, pairs}
}

func build(pairs [][2]string) string {
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p[0] + "=" + p[1]
	}
	return "save+dweb:?" + strings.Join(parts, "&")
}

// with returns the pairs with every pair named name removed, then extra
// appended.
func (f fixture) with(name string, extra ...[2]string) [][2]string {
	var out [][2]string
	for _, p := range f.pairs {
		if p[0] != name {
			out = append(out, p)
		}
	}
	return append(out, extra...)
}

func (f fixture) value(name string) string {
	for _, p := range f.pairs {
		if p[0] == name {
			return p[1]
		}
	}
	return ""
}

// wantParamError checks that ParseInvite(s) fails with a *ParamError on param
// whose reason contains reasonPart, and returns it.
func wantParamError(t *testing.T, s, param, reasonPart string) *ParamError {
	t.Helper()
	inv, err := ParseInvite(s)
	var pe *ParamError
	if !errors.As(err, &pe) {
		t.Fatalf("ParseInvite(%.80q) = %v, %v; want *ParamError on %q", s, inv.Group, err, param)
	}
	if pe.Param != param || !strings.Contains(pe.Reason, reasonPart) {
		t.Fatalf("ParseInvite(%.80q) error %q; want param %q with reason containing %q", s, err, param, reasonPart)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "invite: ") || strings.ContainsAny(msg, "\r\n") {
		t.Fatalf("error %q is not one line starting with \"invite: \"", msg)
	}
	if param != "" && !strings.Contains(msg, fmt.Sprintf("parameter %q", param)) {
		t.Fatalf("error %q does not name parameter %q", msg, param)
	}
	return pe
}

func TestRoundTripRandom(t *testing.T) {
	r := testRand(99)
	for n := 0; n < 500; n++ {
		inv := randInvite(t, r)
		s := inv.String()
		if len(s) > MaxURILen {
			t.Fatalf("String is %d bytes, over MaxURILen", len(s))
		}
		got, err := ParseInvite(s)
		if err != nil {
			t.Fatalf("ParseInvite(String()) of invite %d: %v\n%s", n, err, s)
		}
		if !equalInvite(got, inv) {
			t.Fatalf("round trip changed invite %d:\n got %#v\nwant %#v", n, got, inv)
		}
		if s2 := got.String(); s2 != s {
			t.Fatalf("String not stable:\n%s\n%s", s, s2)
		}
		if err := inv.Validate(); err != nil {
			t.Fatalf("Validate: %v", err)
		}
	}
}

func TestCanonicalForm(t *testing.T) {
	f := newFixture(t)
	if got, want := f.inv.String(), build(f.pairs); got != want {
		t.Fatalf("String =\n%s\nwant\n%s", got, want)
	}
	// Version 0 and Version 2 (as callers written when Version was 1 set
	// it) write version 1 for an invite with a secret and no v2 field.
	inv := f.inv
	for _, v := range []int{0, Version} {
		inv.Version = v
		if inv.String() != f.inv.String() {
			t.Fatalf("Version %d wrote %q", v, inv.String()[:20])
		}
	}
	// No bootstrap hints: no bs parameter, parses to nil.
	inv.Bootstrap = nil
	got, err := ParseInvite(inv.String())
	if err != nil || got.Bootstrap != nil || strings.Contains(inv.String(), "bs=") {
		t.Fatalf("no-bootstrap invite: %v, %v", got.Bootstrap, err)
	}
}

func TestAcceptedForms(t *testing.T) {
	f := newFixture(t)
	canon := build(f.pairs)
	query := strings.TrimPrefix(canon, "save+dweb:")
	shuffled := append([][2]string(nil), f.pairs...)
	for i, j := 0, len(shuffled)-1; i < j; i, j = i+1, j-1 {
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	}
	// bs order is meaningful: keep it, move the single-valued ones around.
	reordered := append(f.with("bs")[2:], f.with("bs")[:2]...)
	reordered = append(reordered, f.pairs[5:]...)
	escaped := strings.Replace(canon, "@192.0.2.7:4433", "%40192.0.2.7%3a4433", 1)
	for name, s := range map[string]string{
		"canonical":       canon,
		"with slashes":    "save+dweb://" + query,
		"upper scheme":    "SAVE+DWEB:" + query,
		"surrounding ws":  " \t" + canon + "\r\n",
		"reordered":       build(reordered),
		"percent-encoded": escaped,
	} {
		got, err := ParseInvite(s)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !equalInvite(got, f.inv) {
			t.Errorf("%s: parsed %#v, want %#v", name, got, f.inv)
		}
	}
}

func TestEachParameter(t *testing.T) {
	f := newFixture(t)
	other := randKeypair(t, testRand(50))
	for _, name := range []string{"v", "dht", "enc", "pk", "sk"} {
		t.Run(name, func(t *testing.T) {
			wantParamError(t, build(f.with(name)), name, "missing")
			dup := append(append([][2]string(nil), f.pairs...), [2]string{name, f.value(name)})
			wantParamError(t, build(dup), name, "duplicated")
			wantParamError(t, build(f.with(name, [2]string{name, ""})), name, "")
			if name == "v" {
				return
			}
			for _, bad := range []string{"xyz", f.value(name) + "A", f.value(name)[1:], strings.Repeat("!", 43), strings.Repeat("ff", 32)} {
				pe := wantParamError(t, build(f.with(name, [2]string{name, bad})), name, "not a 32-byte key in base64url")
				if !errors.Is(pe, key.ErrBadKey) {
					t.Errorf("%s=%q: error does not wrap key.ErrBadKey", name, bad)
				}
			}
			wantParamError(t, build(f.with(name, [2]string{name, key.RecordKey{}.String()})), name, "all zeros")
		})
	}
	t.Run("mismatch", func(t *testing.T) {
		wantParamError(t, build(f.with("pk", [2]string{"pk", other.ID().String()})), "sk", "does not match pk")
		wantParamError(t, build(f.with("sk", [2]string{"sk", key.Secret(other.Seed()).Text()})), "sk", "does not match pk")
	})
}

func TestDHTXyz(t *testing.T) {
	pe := wantParamError(t, "save+dweb:?v=1&dht=xyz", "dht", "not a 32-byte key")
	if want := `invite: parameter "dht": `; !strings.HasPrefix(pe.Error(), want) {
		t.Fatalf("Error() = %q", pe.Error())
	}
	if got := paramErr("enc", "missing").Error(); got != `invite: parameter "enc": missing` {
		t.Fatalf("Error() = %q", got)
	}
}

func TestVersion(t *testing.T) {
	f := newFixture(t)
	for _, v := range []string{"0", "01", "-1", "+1", "1.0", "one", "%201", "1%00"} {
		wantParamError(t, build(f.with("v", [2]string{"v", v})), "v", "not a positive decimal integer")
	}
	wantParamError(t, build(f.with("v", [2]string{"v", "3"})), "v", "unsupported version 3 (this build reads up to 2)")
	wantParamError(t, build(f.with("v", [2]string{"v", "99999999999999999999999"})), "v", "unsupported version")
	// A future invite with parameters we do not know is refused for its
	// version, not for the new parameter.
	future := append(f.with("v", [2]string{"v", "3"}), [2]string{"relay", "x"})
	wantParamError(t, build(future), "v", "unsupported version")
	wantParamError(t, "save+dweb:?", "v", "missing")
	wantParamError(t, "save+dweb:", "", "want \"save+dweb:?\"")
}

func TestUnknownParameter(t *testing.T) {
	f := newFixture(t)
	wantParamError(t, build(append(f.with(""), [2]string{"foo", "bar"})), "foo", "unknown parameter")
	wantParamError(t, build(append(f.with(""), [2]string{"Dht", f.value("dht")})), "Dht", "unknown parameter")
	wantParamError(t, build(append(f.with(""), [2]string{"x", "1"}, [2]string{"x", "2"})), "x", "unknown parameter")
	// A misspelt required parameter is reported as unknown, before the
	// missing one, so the user sees the typo.
	typo := f.with("enc", [2]string{"emc", f.value("enc")})
	wantParamError(t, build(typo), "emc", "unknown parameter")
}

func TestScheme(t *testing.T) {
	f := newFixture(t)
	query := strings.TrimPrefix(build(f.pairs), "save+dweb:")
	for _, s := range []string{"", "?v=1", "http:" + query, "https://example.org/" + query, "save-dweb:" + query, "dweb:" + query, "save+dweb" + query} {
		pe := wantParamError(t, s, "", "")
		if !errors.Is(pe, ErrScheme) {
			t.Errorf("%.40q: error %q does not wrap ErrScheme", s, pe)
		}
	}
	// Not scheme errors, but bad shapes after the scheme.
	for s, reason := range map[string]string{
		"save+dweb::" + query:                                      "Veilid-based Save",
		"save+dweb://host" + query:                                 "no authority or path",
		"save+dweb:/path" + query:                                  "no authority or path",
		"save+dweb:" + query + "#frag":                             "fragment",
		"save+dweb:" + query + "&":                                 "empty parameter",
		"save+dweb:?&" + query[1:]:                                 "empty parameter",
		"save+dweb:" + query + "&&bs=x":                            "empty parameter",
		"save+dweb:" + query + "&=x":                               "empty name",
		"save+dweb:" + strings.Replace(query, "v=1", "v=1\x00", 1): "printable ASCII",
		"save+dweb:" + query + "é":                                 "printable ASCII",
		"save+dweb:?v=1&%zz=1":                                     "bad percent-encoding",
	} {
		pe := wantParamError(t, s, "", reason)
		if errors.Is(pe, ErrScheme) {
			t.Errorf("%q wraps ErrScheme", pe)
		}
	}
	wantParamError(t, "save+dweb:?v", "v", "no value")
	wantParamError(t, "save+dweb:?v=%zz", "v", "bad percent-encoding")
}

func TestOversized(t *testing.T) {
	f := newFixture(t)
	canon := build(f.pairs)
	pad := MaxURILen - len(canon)
	if _, err := ParseInvite(canon + strings.Repeat(" ", pad)); err != nil {
		t.Fatalf("input of exactly MaxURILen bytes: %v", err)
	}
	wantParamError(t, canon+strings.Repeat(" ", pad+1), "", fmt.Sprintf("longer than %d bytes", MaxURILen))
	wantParamError(t, "save+dweb:?v=1&"+strings.Repeat("x=1&", 1<<20), "", "longer than")
}

func TestBootstrap(t *testing.T) {
	f := newFixture(t)
	id := randKeypair(t, testRand(60)).ID().String()
	good := []string{
		id + "@127.0.0.1:1",
		id + "@[::1]:65535",
		id + "@[::ffff:192.0.2.1]:80",
		id + "@localhost:80",
		id + "@a-b.c0.example:8080",
		id + "@" + strings.Repeat("a", 63) + ".io:1",
	}
	for _, bs := range good {
		inv, err := ParseInvite(build(f.with("bs", [2]string{"bs", bs})))
		if err != nil || len(inv.Bootstrap) != 1 || inv.Bootstrap[0] != bs {
			t.Errorf("bs=%q: %v", bs, err)
		}
	}
	bad := map[string]string{
		"192.0.2.1:80":                               "want nodeID@host:port",
		id + "@192.0.2.1":                            "want nodeID@host:port",
		id + "@[::1]":                                "want nodeID@host:port",
		"abc@192.0.2.1:80":                           "node ID is not a 32-byte key",
		key.NodeID{}.String() + "@h:1":               "all zeros",
		id + "@192.0.2.1:0":                          "port not in 1..65535",
		id + "@192.0.2.1:65536":                      "port not in 1..65535",
		id + "@192.0.2.1:080":                        "port not in 1..65535",
		id + "@192.0.2.1:+80":                        "not a decimal number",
		id + "@192.0.2.1:":                           "missing port",
		id + "@:80":                                  "missing host",
		id + "@192.0.2.999:80":                       "malformed IPv4",
		id + "@1.2.3:80":                             "malformed IPv4",
		id + "@::1:80":                               "IPv6 host must be in brackets",
		id + "@[192.0.2.1]:80":                       "not an IPv6 address",
		id + "@[fe80::1%eth0]:80":                    "not an IPv6 address without zone",
		id + "@[::1:80":                              "unterminated",
		id + "@-a.example:80":                        "starts or ends with '-'",
		id + "@a..example:80":                        "empty or over-long label",
		id + "@example.org.:80":                      "empty or over-long label",
		id + "@ex_ample.org:80":                      "bad character",
		id + "@a@b:80":                               "bad character",
		id + "@" + strings.Repeat("a", 64) + ".io:1": "empty or over-long label",
		id + "@" + strings.Repeat("a.", 80) + "io:1": "longer than 200 bytes",
	}
	for bs, reason := range bad {
		s := build(f.with("bs", [2]string{"bs", strings.NewReplacer("%", "%25").Replace(bs)}))
		pe := wantParamError(t, s, "bs", reason)
		if strings.Contains(reason, "32-byte key") && !errors.Is(pe, key.ErrBadKey) {
			t.Errorf("bs=%q: does not wrap key.ErrBadKey", bs)
		}
	}
	// Count and duplicates.
	var many [][2]string
	for i := 0; i <= MaxBootstrap; i++ {
		many = append(many, [2]string{"bs", fmt.Sprintf("%s@192.0.2.1:%d", id, 1000+i)})
	}
	if _, err := ParseInvite(build(f.with("bs", many[:MaxBootstrap]...))); err != nil {
		t.Fatalf("%d entries: %v", MaxBootstrap, err)
	}
	wantParamError(t, build(f.with("bs", many...)), "bs", "17 entries, at most 16")
	wantParamError(t, build(f.with("bs", many[0], many[1], many[0])), "bs", "entry 3 duplicates entry 1")
}

func TestStringWithoutOwner(t *testing.T) {
	f := newFixture(t)
	inv := f.inv
	inv.Owner = key.Keypair{}
	s := inv.String() // must not panic
	if strings.Contains(s, "pk=") || strings.Contains(s, "sk=") {
		t.Fatalf("String without owner wrote keys: %s", s)
	}
	var pe *ParamError
	if err := inv.Validate(); !errors.As(err, &pe) || pe.Param != "pk" {
		t.Fatalf("Validate = %v, want missing pk", err)
	}
	// Values that need escaping cannot split the query.
	inv = f.inv
	inv.Bootstrap = []string{"x&v=2#y z"}
	if err := inv.Validate(); !errors.As(err, &pe) || pe.Param != "bs" {
		t.Fatalf("Validate = %v, want bs error", err)
	}
}

func TestNoSecretsInLogs(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("joined", "invite", f.inv)
	out := buf.String() + fmt.Sprintf("%#v", f.inv)
	for _, secret := range []string{f.value("enc"), f.value("sk")} {
		if strings.Contains(out, secret) {
			t.Fatalf("secret leaked: %s", out)
		}
	}
	if !strings.Contains(out, f.value("dht")) {
		t.Fatalf("log lacks the group key: %s", out)
	}
}
