package group

import (
	"bytes"
	"testing"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/key"
)

// FuzzParseSlotValue: a repo slot's value, which a member (or a bearer
// invite's joiner) writes, never panics the reader; an accepted value is
// a repo key, alone or followed by a contact code that verifies, and
// claimValue's output reads back as written.
func FuzzParseSlotValue(f *testing.F) {
	mk, err := NewMemberKey()
	if err != nil {
		f.Fatal(err)
	}
	rk := key.RecordKey{1, 2, 3}
	fuzzcorpus.Add(f, rk[:])
	fuzzcorpus.Add(f, claimValue(rk, mk.Contact()))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, c, ok := parseSlotValue(b)
		if !ok {
			return
		}
		if !bytes.Equal(got[:], b[:key.Size]) {
			t.Fatal("the repo key is not the value's first 32 bytes")
		}
		if c != nil {
			if err := c.Verify(); err != nil {
				t.Fatalf("accepted a contact that does not verify: %v", err)
			}
			if again, c2, ok := parseSlotValue(claimValue(got, *c)); !ok || again != got || c2 == nil || c2.String() != c.String() {
				t.Fatal("claimValue does not read back")
			}
		} else if len(b) != key.Size {
			t.Fatalf("accepted %d bytes without a contact", len(b))
		}
	})
}
