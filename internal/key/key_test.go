package key

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestNodeIDTextRoundTrip(t *testing.T) {
	kp := NewKeypair()
	id := kp.ID()
	s := id.String()
	if len(s) != 43 {
		t.Fatalf("len(%q) = %d, want 43", s, len(s))
	}
	got, err := ParseNodeID(s)
	if err != nil || got != id {
		t.Fatalf("ParseNodeID(%q) = %v, %v; want %v", s, got, err, id)
	}
	var rk RecordKey
	if err := rk.UnmarshalText([]byte(s)); err != nil || rk != RecordKey(id) {
		t.Fatalf("RecordKey.UnmarshalText: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"", "abc", strings.Repeat("A", 42), strings.Repeat("!", 43), strings.Repeat("A", 44)} {
		if _, err := ParseNodeID(s); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseNodeID(%q) err = %v, want ErrBadKey", s, err)
		}
	}
}

func TestSecretDoesNotPrint(t *testing.T) {
	s := NewSecret()
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s)} {
		if strings.Contains(out, s.Text()) {
			t.Fatalf("secret leaked in %q", out)
		}
	}
	got, err := ParseSecret(s.Text())
	if err != nil || got != s {
		t.Fatalf("ParseSecret round trip failed: %v", err)
	}
}

func TestKeypairFromSeed(t *testing.T) {
	kp := NewKeypair()
	kp2, err := KeypairFromSeed(kp.Seed())
	if err != nil || !kp2.Public().Equal(kp.Public()) {
		t.Fatalf("KeypairFromSeed: %v", err)
	}
	if _, err := KeypairFromSeed([]byte{1, 2}); !errors.Is(err, ErrBadKey) {
		t.Fatalf("short seed: err = %v", err)
	}
	if strings.Contains(kp.String(), b64.EncodeToString(kp.Seed())) {
		t.Fatal("keypair String leaks the seed")
	}
}
