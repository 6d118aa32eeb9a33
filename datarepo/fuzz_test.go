package datarepo

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/record"
)

// FuzzRepoName decodes arbitrary bytes as the value of a repo's subkey 0,
// its name (decodeName, as Repo.Name reads it). It must never panic. A
// name it accepts passes SetName's rules (checkName: 1 to MaxNameLen bytes
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
		if err := checkName(name); err != nil {
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
