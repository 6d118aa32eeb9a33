package uri

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/internal/key"
)

// randInviteV2 is a version 2 invite: sealed to a member key, or bearer
// with an invite key, at a random list version and hash.
func randInviteV2(t testing.TB, r *rand.Rand, sealed bool) Invite {
	inv := Invite{
		Version:     2,
		Group:       key.RecordKey(randBytes(r)),
		ListVersion: r.Uint64() >> r.IntN(64),
		ListHash:    randBytes(r),
	}
	if sealed {
		inv.For = randKeypair(t, r).Public()
	} else {
		inv.InviteKey = randKeypair(t, r)
	}
	for n := r.IntN(MaxBootstrap + 1); n > 0; n-- {
		id := randKeypair(t, r).ID()
		inv.Bootstrap = append(inv.Bootstrap, fmt.Sprintf("%s@%s:%d", id, randHost(r), 1+r.IntN(65535)))
	}
	return inv
}

// newFixtureV2 is a version 2 invite with known parts (sealed or bearer),
// written as an ordered list of parameters as newFixture's.
func newFixtureV2(t testing.TB, sealed bool) fixture {
	r := testRand(5)
	inv := Invite{
		Version:     2,
		Group:       key.RecordKey(randBytes(r)),
		ListVersion: 7,
		ListHash:    randBytes(r),
		Bootstrap: []string{
			randKeypair(t, testRand(2)).ID().String() + "@192.0.2.7:4433",
			randKeypair(t, testRand(3)).ID().String() + "@[2001:db8::1]:443",
		},
	}
	pairs := [][2]string{{"v", "2"}, {"dht", inv.Group.String()}}
	if sealed {
		inv.For = randKeypair(t, testRand(6)).Public()
		pairs = append(pairs, [2]string{"for", key.NodeIDFromPublicKey(inv.For).String()})
	} else {
		inv.InviteKey = randKeypair(t, testRand(7))
		pairs = append(pairs, [2]string{"ik", key.Secret(inv.InviteKey.Seed()).Text()})
	}
	pairs = append(pairs, [2]string{"lv", "7"}, [2]string{"lh", key.Secret(inv.ListHash).Text()})
	for _, bs := range inv.Bootstrap {
		pairs = append(pairs, [2]string{"bs", bs})
	}
	return fixture{inv, pairs}
}

func TestV2RoundTripRandom(t *testing.T) {
	r := testRand(98)
	for n := 0; n < 500; n++ {
		inv := randInviteV2(t, r, n%2 == 0)
		s := inv.String()
		if len(s) > MaxURILen {
			t.Fatalf("String is %d bytes, over MaxURILen", len(s))
		}
		got, err := ParseInvite(s)
		if err != nil {
			t.Fatalf("ParseInvite(String()) of invite %d: %v\n%s", n, err, s)
		}
		if !equalInvite(got, inv) || got.Sealed() != (n%2 == 0) || got.Bearer() != (n%2 == 1) {
			t.Fatalf("round trip changed invite %d:\n got %#v\nwant %#v", n, got, inv)
		}
		if s2 := got.String(); s2 != s {
			t.Fatalf("String not stable:\n%s\n%s", s, s2)
		}
		if err := inv.Validate(); err != nil {
			t.Fatalf("Validate: %v", err)
		}
		// The Save app's join code works for version 2 as for version 1.
		named, err := ParseInvite(inv.JoinCode("Tom & Jerry"))
		if err != nil || named.Name != "Tom & Jerry" || !equalInvite(named, inv) {
			t.Fatalf("JoinCode of invite %d: %#v, %v", n, named, err)
		}
	}
}

func TestV2CanonicalForm(t *testing.T) {
	for _, sealed := range []bool{true, false} {
		f := newFixtureV2(t, sealed)
		want := build(f.pairs)
		if got := f.inv.String(); got != want {
			t.Fatalf("String =\n%s\nwant\n%s", got, want)
		}
		got, err := ParseInvite(want)
		if err != nil || !equalInvite(got, f.inv) {
			t.Fatalf("ParseInvite(%s) = %#v, %v", want, got, err)
		}
		if got.Sealed() != sealed || got.Bearer() == sealed {
			t.Fatalf("sealed %v: Sealed() = %v, Bearer() = %v", sealed, got.Sealed(), got.Bearer())
		}
		if got.Secret != (key.Secret{}) || got.Owner.Private != nil {
			t.Fatalf("version 2 invite parsed with a secret: %#v", got)
		}
		// Version 0 picks version 2 from the fields.
		inv := f.inv
		inv.Version = 0
		if inv.String() != want || inv.Sealed() != sealed {
			t.Fatalf("Version 0 wrote %s", inv.String())
		}
		// The list version is written in decimal without leading zeros.
		for _, lv := range []uint64{0, 1, 10, 1<<64 - 1} {
			inv.ListVersion = lv
			got, err := ParseInvite(inv.String())
			if err != nil || got.ListVersion != lv || !strings.Contains(inv.String(), fmt.Sprintf("&lv=%d&", lv)) {
				t.Fatalf("lv %d: %s: %v", lv, inv.String(), err)
			}
		}
	}
}

// TestStringFormat is the table of which format String writes.
func TestStringFormat(t *testing.T) {
	v1 := newFixture(t).inv
	sealed := newFixtureV2(t, true).inv
	bearer := newFixtureV2(t, false).inv
	both := v1
	both.For, both.ListVersion, both.ListHash = sealed.For, sealed.ListVersion, sealed.ListHash
	for _, tc := range []struct {
		name    string
		inv     Invite
		version int
		prefix  string // of String, after the scheme
		sealed  bool
		bearer  bool
	}{
		{"v1 fields, Version 1", v1, 1, "?v=1&dht=" + v1.Group.String() + "&enc=", false, false},
		{"v1 fields, Version 0", v1, 0, "?v=1&dht=" + v1.Group.String() + "&enc=", false, false},
		{"v1 fields, Version 2 (callers of Version 1)", v1, 2, "?v=1&dht=" + v1.Group.String() + "&enc=", false, false},
		{"sealed, Version 2", sealed, 2, "?v=2&dht=" + sealed.Group.String() + "&for=", true, false},
		{"sealed, Version 0", sealed, 0, "?v=2&dht=" + sealed.Group.String() + "&for=", true, false},
		{"bearer, Version 0", bearer, 0, "?v=2&dht=" + bearer.Group.String() + "&ik=", false, true},
		{"sealed, Version 1: no v2 field written", sealed, 1, "?v=1&dht=" + sealed.Group.String() + "&enc=AAAA", false, false},
		{"secret and for, Version 2: no secret written", both, 2, "?v=2&dht=" + v1.Group.String() + "&for=", true, false},
		{"secret and for, Version 0: no secret written", both, 0, "?v=2&dht=" + v1.Group.String() + "&for=", true, false},
		{"empty, Version 2", Invite{}, 2, "?v=2&dht=AAAA", false, false},
		{"empty, Version 0", Invite{}, 0, "?v=1&dht=AAAA", false, false},
		{"sealed, Version 3", sealed, 3, "?v=3&dht=" + sealed.Group.String() + "&for=", true, false},
		{"v1 fields, Version 3", v1, 3, "?v=3&dht=" + v1.Group.String() + "&enc=", false, false},
	} {
		inv := tc.inv
		inv.Version = tc.version
		s := inv.String()
		if !strings.HasPrefix(s, Scheme+":"+tc.prefix) || inv.Sealed() != tc.sealed || inv.Bearer() != tc.bearer {
			t.Errorf("%s: String %.120s, Sealed %v, Bearer %v", tc.name, s, inv.Sealed(), inv.Bearer())
		}
		if strings.HasPrefix(tc.prefix, "?v=2") && (strings.Contains(s, "&enc=") || strings.Contains(s, "&sk=")) {
			t.Errorf("%s: version 2 String carries a secret: %s", tc.name, s)
		}
	}
}

func TestV2EachParameter(t *testing.T) {
	sealed, bearer := newFixtureV2(t, true), newFixtureV2(t, false)
	for _, tc := range []struct {
		f    fixture
		name string
	}{{sealed, "dht"}, {sealed, "for"}, {bearer, "ik"}, {sealed, "lh"}, {bearer, "lh"}} {
		t.Run(tc.name, func(t *testing.T) {
			f, name := tc.f, tc.name
			dup := append(append([][2]string(nil), f.pairs...), [2]string{name, f.value(name)})
			wantParamError(t, build(dup), name, "duplicated")
			if name == "dht" || name == "lh" {
				wantParamError(t, build(f.with(name)), name, "missing")
			}
			for _, bad := range []string{"", "xyz", f.value(name) + "A", f.value(name)[1:], strings.Repeat("!", 43), strings.Repeat("ff", 32)} {
				pe := wantParamError(t, build(f.with(name, [2]string{name, bad})), name, "not a 32-byte key in base64url")
				if !errors.Is(pe, key.ErrBadKey) {
					t.Errorf("%s=%q: error does not wrap key.ErrBadKey", name, bad)
				}
			}
			wantParamError(t, build(f.with(name, [2]string{name, key.RecordKey{}.String()})), name, "all zeros")
		})
	}
	t.Run("for and ik", func(t *testing.T) {
		wantParamError(t, build(sealed.with("for")), "for", "missing: a version 2 invite needs for")
		wantParamError(t, build(bearer.with("ik")), "for", "missing: a version 2 invite needs for")
		both := sealed.with("", [2]string{"ik", bearer.value("ik")})
		wantParamError(t, build(both), "ik", "not both")
		// Both, even when one is malformed: the shape is reported first.
		both = sealed.with("", [2]string{"ik", "xyz"})
		wantParamError(t, build(both), "ik", "not both")
	})
	t.Run("lv", func(t *testing.T) {
		f := sealed
		wantParamError(t, build(f.with("lv")), "lv", "missing")
		wantParamError(t, build(f.with("", [2]string{"lv", "7"})), "lv", "duplicated")
		for _, good := range []string{"0", "1", "10", "18446744073709551615"} {
			inv, err := ParseInvite(build(f.with("lv", [2]string{"lv", good})))
			if err != nil || fmt.Sprint(inv.ListVersion) != good {
				t.Errorf("lv=%s: %d, %v", good, inv.ListVersion, err)
			}
		}
		for _, bad := range []string{"", "00", "01", "-1", "+1", "1.0", "0x10", "1e3", "%201", "seven"} {
			wantParamError(t, build(f.with("lv", [2]string{"lv", bad})), "lv", "not a decimal integer without sign or leading zeros")
		}
		for _, big := range []string{"18446744073709551616", "99999999999999999999999"} {
			wantParamError(t, build(f.with("lv", [2]string{"lv", big})), "lv", "above 2^64-1")
		}
	})
	t.Run("order", func(t *testing.T) {
		// dht, then for/ik, lv, lh, bs, name.
		wantParamError(t, build(sealed.with("v", [2]string{"enc", "x"})), "v", "missing")
		wantParamError(t, build(sealed.with("dht", [2]string{"name", "%FF"})), "dht", "missing")
		noLV := sealed.with("lv", [2]string{"name", "%FF"})
		wantParamError(t, build(append(noLV, [2]string{"bs", "x"})), "lv", "missing")
		wantParamError(t, build(sealed.with("lh", [2]string{"bs", "x"})), "lh", "missing")
		wantParamError(t, build(sealed.with("", [2]string{"bs", "x"}, [2]string{"name", "%FF"})), "bs", "want nodeID@host:port")
		wantParamError(t, build(sealed.with("", [2]string{"name", "%FF"})), "name", "not valid UTF-8")
	})
}

// TestVersionParameters checks that a parameter of one version is refused
// in an invite of the other, before any other check.
func TestVersionParameters(t *testing.T) {
	v1 := newFixture(t)
	sealed := newFixtureV2(t, true)
	for _, name := range []string{"enc", "pk", "sk"} {
		// Even with a valid v2 invite around it, and before the missing
		// lv.
		wantParamError(t, build(sealed.with("", [2]string{name, v1.value(name)})), name, "version 2 invites carry no secret")
		wantParamError(t, build(sealed.with("lv", [2]string{name, "x"})), name, "version 2 invites carry no secret")
	}
	// A version 1 invite relabelled v=2 is refused for carrying a secret.
	wantParamError(t, build(v1.with("v", [2]string{"v", "2"})), "enc", "version 2 invites carry no secret")
	for _, name := range []string{"for", "ik", "lv", "lh"} {
		wantParamError(t, build(v1.with("", [2]string{name, sealed.value("lh")})), name, "unknown parameter in a version 1 invite")
	}
	// A version 2 invite relabelled v=1 is refused for its v2 parameters.
	wantParamError(t, build(sealed.with("v", [2]string{"v", "1"})), "for", "unknown parameter in a version 1 invite")
	// Unknown names are unknown in either version.
	wantParamError(t, build(sealed.with("", [2]string{"fro", sealed.value("for")})), "fro", "unknown parameter")
	wantParamError(t, build(sealed.with("", [2]string{"relay", "x"})), "relay", "unknown parameter")
}

func TestV2AcceptedForms(t *testing.T) {
	f := newFixtureV2(t, false)
	canon := build(f.pairs)
	query := strings.TrimPrefix(canon, "save+dweb:")
	reordered := [][2]string{{"name", "x"}, {"lh", f.value("lh")}, {"lv", "7"}, {"ik", f.value("ik")}, {"dht", f.value("dht")}, {"v", "2"}}
	reordered = append(reordered, f.pairs[5:]...) // bs, in order
	for name, s := range map[string]string{
		"canonical":      canon,
		"with slashes":   "save+dweb://" + query,
		"upper scheme":   "SAVE+DWEB:" + query,
		"surrounding ws": " \t" + canon + "\r\n",
		"reordered":      build(reordered),
		"percent":        strings.Replace(canon, "lv=7", "%6Cv=%37", 1),
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

func TestV2JoinCode(t *testing.T) {
	for _, sealed := range []bool{true, false} {
		f := newFixtureV2(t, sealed)
		code := f.inv.JoinCode("Family Photos")
		if want := kotlinBuild(f.inv.String(), "Family+Photos"); code != want {
			t.Fatalf("JoinCode =\n%s\nwant\n%s", code, want)
		}
		got, err := ParseInvite(code)
		if err != nil || got.Name != "Family Photos" || !equalInvite(got, f.inv) {
			t.Fatalf("ParseInvite(JoinCode): %#v, %v", got, err)
		}
		if got.String() != f.inv.String() {
			t.Fatalf("String of a parsed join code keeps the name: %s", got.String())
		}
	}
}

// TestV2NoSecretsInLogs: the bearer invite key's seed stays out of slog and
// %#v; the member key, the invite key's public key, the list version and
// hash are shown.
func TestV2NoSecretsInLogs(t *testing.T) {
	for _, sealed := range []bool{true, false} {
		f := newFixtureV2(t, sealed)
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("joined", "invite", f.inv)
		out := buf.String() + fmt.Sprintf("%#v", f.inv)
		if sealed {
			if !strings.Contains(buf.String(), "invite.for="+f.value("for")) || !strings.Contains(out, "For:"+f.value("for")) {
				t.Fatalf("log lacks the member key: %s", out)
			}
		} else {
			if strings.Contains(out, f.value("ik")) {
				t.Fatalf("invite key seed leaked: %s", out)
			}
			if !strings.Contains(buf.String(), "invite.invite_key="+f.inv.InviteKey.ID().String()) {
				t.Fatalf("log lacks the invite key's public key: %s", out)
			}
		}
		for _, want := range []string{"invite.v=2", "invite.list_version=7", "invite.list_hash=" + f.value("lh"), "invite.group=" + f.value("dht")} {
			if !strings.Contains(buf.String(), want) {
				t.Fatalf("log lacks %s: %s", want, buf.String())
			}
		}
	}
	// A version 1 invite's log is as before, and %#v of an invite without
	// keypairs does not trip over them.
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("joined", "invite", newFixture(t).inv)
	if strings.Contains(buf.String(), "list_") || strings.Contains(fmt.Sprintf("%#v", Invite{}), "PANIC") {
		t.Fatalf("v1 log %s, zero %#v", buf.String(), Invite{})
	}
}

// TestV2Longest checks that the longest version 2 invite, with the longest
// encoded name, fits MaxURILen, and is shorter than the longest version 1
// invite: 14 (v) + 48 (dht) + 48 (for) + 24 (lv, 20 digits) + 47 (lh) =
// 181 bytes before the hints, against 204.
func TestV2Longest(t *testing.T) {
	inv := newFixtureV2(t, true).inv
	inv.ListVersion = 1<<64 - 1
	inv.Bootstrap = nil
	if s := inv.String(); len(s) != 181 {
		t.Fatalf("longest version 2 invite without hints is %d bytes, want 181: %s", len(s), s)
	}
	inv.Bootstrap = longestBootstrap(inv.For)
	name := strings.Repeat("!", MaxNameLen)
	code := inv.JoinCode(name)
	if len(code) != 181+MaxBootstrap*(4+MaxBootstrapLen)+len(NameSeparator)+3*MaxNameLen || len(code) > MaxURILen {
		t.Fatalf("longest version 2 join code is %d bytes (MaxURILen %d)", len(code), MaxURILen)
	}
	got, err := ParseInvite(code)
	if err != nil || got.Name != name || !equalInvite(got, inv) {
		t.Fatalf("longest join code (%d bytes): %v", len(code), err)
	}
	bearer := inv
	bearer.For, bearer.InviteKey = nil, randKeypair(t, testRand(8))
	if len(bearer.JoinCode(name)) != len(code)-1 { // "ik" is a byte shorter than "for"
		t.Fatalf("bearer join code is %d bytes", len(bearer.JoinCode(name)))
	}
	if _, err := ParseInvite(bearer.JoinCode(name)); err != nil {
		t.Fatal(err)
	}
}

// longestBootstrap is MaxBootstrap hints "id@host:65535" of exactly
// MaxBootstrapLen bytes each, with DNS labels of at most 63 bytes.
func longestBootstrap(pub ed25519.PublicKey) []string {
	id := key.NodeIDFromPublicKey(pub).String()
	var out []string
	for i := 0; i < MaxBootstrap; i++ {
		host := []byte(fmt.Sprintf("h%02d", i) + strings.Repeat("a", MaxBootstrapLen-len(id)-1-len(":65535")-3))
		for j := 60; j < len(host)-1; j += 60 {
			host[j] = '.'
		}
		out = append(out, id+"@"+string(host)+":65535")
	}
	return out
}
