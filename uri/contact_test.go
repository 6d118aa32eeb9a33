package uri

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
)

func newTestContact(t testing.TB) Contact {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return NewContact(priv, [32]byte(x.PublicKey().Bytes()))
}

// TestContactRoundTrip: a contact code parses back to the same keys, with
// spaces around it and the scheme in capitals, and is as long as the
// package says.
func TestContactRoundTrip(t *testing.T) {
	c := newTestContact(t)
	s := c.String()
	if len(s) != 186 || len(s) > MaxContactLen || !strings.HasPrefix(s, "dweb-contact:1:") {
		t.Fatalf("contact code %q (%d bytes)", s, len(s))
	}
	for _, in := range []string{s, " " + s + "\r\n", "DWEB-CONTACT" + s[len(ContactScheme):]} {
		got, err := ParseContact(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !got.Sign.Equal(c.Sign) || got.Box != c.Box || string(got.Sig) != string(c.Sig) {
			t.Fatalf("parsed %+v, want %+v", got, c)
		}
	}
}

// TestParseContactRefuses: each kind of bad input fails with ErrContact
// and a message that says what is wrong.
func TestParseContactRefuses(t *testing.T) {
	c := newTestContact(t)
	good := c.String()
	other := newTestContact(t)
	swapped := Contact{Sign: c.Sign, Box: other.Box, Sig: c.Sig} // X25519 key not the one signed
	flip := []byte(good)
	flip[len(flip)-5] ^= 'A' ^ 'B'
	cases := map[string]string{
		"":                            "want dweb-contact:1:",
		"save+dweb:?v=1&dht=x":        "group invite",
		"dweb-contact:":               "no version",
		"dweb-contact:2:" + good[15:]: `version "2"`,
		"dweb-contact:1:abc":          "want 128 bytes",
		good + "AA":                   "want 128 bytes",
		swapped.String():              "signature",
		strings.Repeat("a", 300):      "longer than",
	}
	if string(flip) != good {
		cases[string(flip)] = "" // any ErrContact: a changed signature or key
	}
	for in, want := range cases {
		_, err := ParseContact(in)
		if !errors.Is(err, ErrContact) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseContact(%.40q) = %v, want ErrContact saying %q", in, err, want)
		}
	}
}

// FuzzParseContact: no input panics; any accepted input verifies and
// round-trips to a canonical code that parses to the same contact.
func FuzzParseContact(f *testing.F) {
	fuzzcorpus.Add(f, newTestContact(f).String())
	fuzzcorpus.Add(f, " DWEB-CONTACT:1:"+newTestContact(f).String()[15:]+"\n")
	f.Add("dweb-contact:1:")
	f.Add("save+dweb:?v=1")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseContact(s)
		if err != nil {
			if !errors.Is(err, ErrContact) {
				t.Fatalf("error %v does not wrap ErrContact", err)
			}
			return
		}
		if err := c.Verify(); err != nil {
			t.Fatalf("accepted %q: %v", s, err)
		}
		again, err := ParseContact(c.String())
		if err != nil || again.String() != c.String() {
			t.Fatalf("round trip of %q: %v", s, err)
		}
	})
}
