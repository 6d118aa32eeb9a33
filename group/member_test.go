package group_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/uri"
)

// TestMemberKey: a member key survives its encoding, its contact code
// parses and verifies, two keys differ, and printing one shows no secret.
func TestMemberKey(t *testing.T) {
	m, err := group.NewMemberKey()
	if err != nil {
		t.Fatal(err)
	}
	again, err := group.ParseMemberKey(m.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), m.Bytes()) || again.Contact().String() != m.Contact().String() {
		t.Fatal("member key changed through its encoding")
	}
	c, err := uri.ParseContact(m.Contact().String())
	if err != nil {
		t.Fatal(err)
	}
	if !c.Sign.Equal(m.Contact().Sign) {
		t.Fatal("contact code names another key")
	}
	other, _ := group.NewMemberKey()
	if other.Contact().String() == m.Contact().String() {
		t.Fatal("two fresh member keys are the same")
	}
	printed := fmt.Sprint(m) + fmt.Sprintf("%v %+v %#v", m, m, m)
	for _, secret := range [][]byte{m.Bytes()[:32], m.Bytes()[32:]} {
		if strings.Contains(printed, fmt.Sprintf("%x", secret)) || strings.Contains(printed, string(secret)) {
			t.Fatalf("printing a member key shows a private key: %s", printed)
		}
	}
	if _, err := group.ParseMemberKey(m.Bytes()[:63]); err == nil {
		t.Fatal("63 bytes accepted as a member key")
	}
}
