package abi

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/dwebkit/dweb/core"
)

// TestMembersThroughABI: two real nodes make and join a
// membership-checked group through dweb_call: alice creates it, invites
// bob's contact code, bob joins with that invite, both list the two
// members, and alice removes bob (the next epoch); bad params and a
// group of the first format are refused with their codes.
func TestMembersThroughABI(t *testing.T) {
	dir := t.TempDir()
	a := newNode(t, filepath.Join(dir, "alice"))
	defer Close(a)
	var id struct{ Contact string }
	mustCall(t, a, "node.id", "{}", &id)
	b := newNode(t, filepath.Join(dir, "bob"), id.Contact)
	defer Close(b)

	var g struct {
		Key string `json:"key"`
		URI string `json:"uri"`
	}
	mustCall(t, a, "group.create", `{"name":"desk","checked":true}`, &g)
	wantCode(t, a, "group.invite", fmt.Sprintf(`{"group":%q}`, g.Key), CodeBadInput)
	var bc struct{ Contact string }
	mustCall(t, b, "node.contact", "{}", &bc)
	var inv struct{ URI string }
	mustCall(t, a, "group.invite_member", fmt.Sprintf(`{"group":%q,"contact":%q,"role":"member","name":"Bob"}`, g.Key, bc.Contact), &inv)
	mustCall(t, b, "group.join", fmt.Sprintf(`{"uri":%q}`, inv.URI), nil)

	var m core.MembershipInfo
	for _, h := range []int64{a, b} {
		mustCall(t, h, "group.members", fmt.Sprintf(`{"group":%q}`, g.Key), &m)
		if len(m.Members) != 2 || m.Epoch != 0 {
			t.Fatalf("members: %+v", m)
		}
	}
	var ps []core.PingResult
	mustCall(t, a, "group.ping", fmt.Sprintf(`{"group":%q}`, g.Key), &ps)
	if len(ps) != 1 || ps[0].Result != core.PingOK {
		t.Fatalf("alice pings bob: %+v", ps)
	}
	var bearer struct{ URI string }
	mustCall(t, a, "group.invite_bearer", fmt.Sprintf(`{"group":%q,"uses":2,"expires_s":3600}`, g.Key), &bearer)
	mustCall(t, a, "group.revoke_invite", fmt.Sprintf(`{"group":%q,"uri":%q}`, g.Key, bearer.URI), &m)
	wantCode(t, a, "group.revoke_invite", fmt.Sprintf(`{"group":%q,"uri":%q}`, g.Key, bearer.URI), CodeBadInput)
	wantCode(t, a, "group.invite_bearer", fmt.Sprintf(`{"group":%q,"uses":-1}`, g.Key), CodeBadParams)
	wantCode(t, a, "group.invite_bearer", fmt.Sprintf(`{"group":%q,"uses":17}`, g.Key), CodeBadInput)
	mustCall(t, a, "group.remove_member", fmt.Sprintf(`{"group":%q,"member":"Bob"}`, g.Key), &m)
	if len(m.Members) != 1 || m.Epoch != 2 {
		t.Fatalf("after the removal: %+v", m)
	}

	wantCode(t, a, "group.invite_member", fmt.Sprintf(`{"group":%q}`, g.Key), CodeBadParams)
	wantCode(t, a, "group.invite_member", fmt.Sprintf(`{"group":%q,"contact":"nope"}`, g.Key), CodeBadInput)
	wantCode(t, a, "group.remove_member", fmt.Sprintf(`{"group":%q}`, g.Key), CodeBadParams)
	wantCode(t, a, "group.remove_member", fmt.Sprintf(`{"group":%q,"member":"nobody"}`, g.Key), CodeBadInput)
	wantCode(t, a, "group.set_role", fmt.Sprintf(`{"group":%q,"member":"x"}`, g.Key), CodeBadParams)
	wantCode(t, a, "group.set_role", fmt.Sprintf(`{"group":%q,"member":"x","role":"owner"}`, g.Key), CodeBadInput)
	var plain struct {
		Key string `json:"key"`
	}
	mustCall(t, a, "group.create", `{"name":"family"}`, &plain)
	wantCode(t, a, "group.members", fmt.Sprintf(`{"group":%q}`, plain.Key), CodeBadInput)
}
