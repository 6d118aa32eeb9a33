package group

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/record"
)

// FuzzGroupMeta decodes arbitrary bytes as the value of a group's subkey
// 0, its name and creation time (decodeMeta, as Meta and so Join read
// it: anyone holding an invite can write it). It must never panic. An
// accepted value has a name of at most MaxNameLen bytes of UTF-8, and
// encodes again (encodeMeta, as Create writes it) in at most a record
// value, to bytes that decode to the same name and instant and encode to
// the same bytes. A refusal wraps ErrBadMeta. Seeds and the corpus are
// values as Create writes them; the seeds add malformed ones.
func FuzzGroupMeta(f *testing.F) {
	at := time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC)
	for _, m := range []Meta{
		{Name: "family", CreatedAt: at},
		{Name: "Tom & Jerry 📷 <newsroom>", CreatedAt: at},
		{Name: strings.Repeat("é", MaxNameLen/2), CreatedAt: at},
		{Name: "", CreatedAt: time.Time{}},
	} {
		b, err := encodeMeta(m)
		if err != nil {
			f.Fatal(err)
		}
		fuzzcorpus.Add(f, b)
	}
	for _, s := range []string{
		`{"name":"a","created_at":"2026-11-24T10:30:00+01:00","later":{}}`,
		`{"name":"a","created_at":"2026-11-24T09:30:00.123456789Z"}`,
		`{"name":"a","created_at":"9999-12-31T23:59:59-23:59"}`,
		`{"name":"a","created_at":"0000-01-01T00:00:00+23:59"}`,
		`{"name":"a","created_at":"10000-01-01T00:00:00Z"}`,
		`{"name":"a","created_at":"yesterday"}`,
		`{"name":"a","created_at":null}`,
		`{"name":null}`,
		`{"name":"` + strings.Repeat("x", MaxNameLen+1) + `"}`,
		`{"name":"\ud800\u0000"}`,
		`{"name":1}`,
		`{"name":"a"}{}`,
		`[]`,
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			if !errors.Is(err, ErrBadMeta) {
				t.Fatalf("error %v does not wrap ErrBadMeta", err)
			}
			return
		}
		if len(m.Name) > MaxNameLen || !utf8.ValidString(m.Name) {
			t.Fatalf("accepted a name of %d bytes, or not UTF-8: %q", len(m.Name), m.Name)
		}
		enc, err := encodeMeta(m)
		if err != nil {
			t.Fatalf("accepted %+v does not encode: %v", m, err)
		}
		if len(enc) > record.MaxPlaintextSize {
			t.Fatalf("accepted %+v encodes to %d bytes, over a record value's %d", m, len(enc), record.MaxPlaintextSize)
		}
		again, err := decodeMeta(enc)
		if err != nil || again.Name != m.Name || !again.CreatedAt.Equal(m.CreatedAt) {
			t.Fatalf("round trip: %+v encodes to %s, which decodes to %+v, %v", m, enc, again, err)
		}
		if enc2, err := encodeMeta(again); err != nil || !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding not stable: %s then %s (%v)", enc, enc2, err)
		}
	})
}
