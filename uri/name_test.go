package uri

import (
	"net/url"
	"strings"
	"testing"
)

// kotlinBuild is the Save Android app's SnowbirdJoinCode.build with the
// name already encoded: the part before the first "&name=" of the trimmed
// URI, then "&name=" and the encoded name; "" for a blank URI.
func kotlinBuild(groupURI, encodedName string) string {
	base, _, _ := strings.Cut(strings.TrimSpace(groupURI), "&name=")
	if strings.TrimSpace(base) == "" {
		return ""
	}
	return base + "&name=" + encodedName
}

// TestJoinCodeMatchesApp checks JoinCode against what the app's build()
// returns. The encoded names are written out by hand from the rules of
// java.net.URLEncoder.encode(s, "UTF-8"): A-Z a-z 0-9 . - * _ unchanged,
// space to "+", every other byte of the UTF-8 form to "%XX" in upper case.
func TestJoinCodeMatchesApp(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ name, encoded string }{
		{"Family Photos", "Family+Photos"},
		{"Tom & Jerry", "Tom+%26+Jerry"},
		{"a=b", "a%3Db"},
		{"1+1 = 2", "1%2B1+%3D+2"},
		{"Café", "Caf%C3%A9"},
		{"日本", "%E6%97%A5%E6%9C%AC"},
		{"📷 trip", "%F0%9F%93%B7+trip"},
		{"née 50% ~ *ok*", "n%C3%A9e+50%25+%7E+*ok*"},
		{"/?#&name=x", "%2F%3F%23%26name%3Dx"},
		{"a.b-c_d*", "a.b-c_d*"},
		{"  two  spaces ", "++two++spaces+"},
		{"", ""},
	} {
		inv := f.inv
		want := kotlinBuild(inv.String(), tc.encoded)
		got := inv.JoinCode(tc.name)
		if got != want {
			t.Errorf("JoinCode(%q) =\n%s\nwant\n%s", tc.name, got, want)
			continue
		}
		// The app re-building from a join code (it cuts at "&name=") gives
		// the same code, and so does JoinCode on an invite that holds a
		// different Name.
		if again := kotlinBuild(got, tc.encoded); again != got {
			t.Errorf("build(build(uri, %q)) = %s", tc.name, again)
		}
		inv.Name = "something else"
		if again := inv.JoinCode(tc.name); again != got {
			t.Errorf("JoinCode(%q) depends on Name: %s", tc.name, again)
		}
		// The app's extractGroupName: URLDecoder.decode of what follows.
		_, enc, _ := strings.Cut(got, "&name=")
		if dec, err := url.QueryUnescape(enc); err != nil || dec != tc.name {
			t.Errorf("decoding %q gave %q, %v", enc, dec, err)
		}
		parsed, err := ParseInvite(got)
		if err != nil {
			t.Errorf("ParseInvite(JoinCode(%q)): %v", tc.name, err)
			continue
		}
		if parsed.Name != tc.name || !equalInvite(parsed, f.inv) {
			t.Errorf("ParseInvite(JoinCode(%q)) = %#v", tc.name, parsed)
		}
		if s := parsed.String(); s != f.inv.String() {
			t.Errorf("String of a parsed join code keeps the name: %s", s)
		}
	}
}

func TestNameParameter(t *testing.T) {
	f := newFixture(t)
	// Anywhere in the query, percent-encoded as url.QueryEscape does too.
	for _, pairs := range [][][2]string{
		append([][2]string{{"name", "Tom+%26+Jerry"}}, f.pairs...),
		f.with("", [2]string{"name", "Tom%20%26%20Jerry"}),
	} {
		inv, err := ParseInvite(build(pairs))
		if err != nil || inv.Name != "Tom & Jerry" || !equalInvite(inv, f.inv) {
			t.Errorf("%s: %#v, %v", build(pairs), inv, err)
		}
	}
	inv, err := ParseInvite(build(f.pairs))
	if err != nil || inv.Name != "" {
		t.Fatalf("no name: %q, %v", inv.Name, err)
	}
	longest := strings.Repeat("é", MaxNameLen/2) + "x" // 255 bytes
	if inv, err := ParseInvite(f.inv.JoinCode(longest)); err != nil || inv.Name != longest {
		t.Fatalf("name of %d bytes: %v", len(longest), err)
	}
	for raw, reason := range map[string]string{
		strings.Repeat("a", MaxNameLen+1): "256 bytes, at most 255 allowed",
		strings.Repeat("%C3%A9", 128):     "256 bytes, at most 255 allowed",
		"caf%E9":                          "not valid UTF-8",
		"%FF":                             "not valid UTF-8",
		"line%0Abreak":                    "control character U+000A at byte 4",
		"tab%09":                          "control character U+0009",
		"del%7F":                          "control character U+007F",
		"nel%C2%85":                       "control character U+0085",
		"nul%00":                          "control character U+0000",
		"50%":                             "bad percent-encoding",
		"%zz":                             "bad percent-encoding",
	} {
		wantParamError(t, build(f.with("", [2]string{"name", raw})), "name", reason)
	}
	wantParamError(t, build(f.with("", [2]string{"name", "a"}, [2]string{"name", "a"})), "name", "duplicated")
	// Raw non-ASCII is refused with everything else outside printable
	// ASCII: the app's URLEncoder never writes it.
	wantParamError(t, build(f.with("", [2]string{"name", "Café"})), "", "printable ASCII")
	// Name comes after the other checks.
	wantParamError(t, build(f.with("enc", [2]string{"name", "%FF"})), "enc", "missing")
}

// TestJoinCodeLongest checks that the longest invite ParseInvite accepts,
// with the longest encoded name, still fits MaxURILen: a version 1 invite
// of 204 bytes, 16 hints of 4 + 200 bytes, "&name=" and 3 × 255 bytes of
// name make 4239 (TestV2Longest checks version 2, which is shorter).
func TestJoinCodeLongest(t *testing.T) {
	f := newFixture(t)
	inv := f.inv
	inv.Bootstrap = nil
	if s := inv.String(); len(s) != 204 {
		t.Fatalf("version 1 invite without hints is %d bytes, want 204", len(s))
	}
	inv.Bootstrap = longestBootstrap(inv.Owner.Public())
	name := strings.Repeat("!", MaxNameLen) // every byte encoded: 765 bytes
	code := inv.JoinCode(name)
	if len(code) != 4239 || len(code) > MaxURILen {
		t.Fatalf("longest join code is %d bytes, want 4239 (MaxURILen %d)", len(code), MaxURILen)
	}
	got, err := ParseInvite(code)
	if err != nil || got.Name != name || !equalInvite(got, inv) {
		t.Fatalf("longest join code (%d bytes): %v", len(code), err)
	}
	for _, bs := range got.Bootstrap {
		if len(bs) != MaxBootstrapLen {
			t.Fatalf("bs entry of %d bytes, want %d", len(bs), MaxBootstrapLen)
		}
	}
}
