package core

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/uri"
)

// TestJoinFromJoinCode joins from the Save app's join code (invite +
// "&name="): the group record's name wins, and the code's name is used
// when the record's name is empty.
func TestJoinFromJoinCode(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, t.TempDir(), "alice", "bob")
	alice, bob := nodes[0], nodes[1]

	named, _, namedURI := newGroup(ctx, t, alice, "family")
	unnamed, _, unnamedURI := newGroup(ctx, t, alice, "to be blanked")
	inv, err := uri.ParseInvite(unnamedURI)
	if err != nil {
		t.Fatal(err)
	}
	// Write a meta value with an empty name, as a group made elsewhere may have.
	desc, err := record.NewDescriptor(inv.Owner, group.Schema)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := json.Marshal(group.Meta{Name: "", CreatedAt: time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := datarepo.WriteSealed(ctx, records{alice}, desc, group.SubkeyMeta, inv.Owner, record.Secret(inv.Secret), meta); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		group      GroupInfo
		invite     string
		code, want string
	}{
		{named, namedURI, "Famille & Co", "family"},
		{unnamed, unnamedURI, "Famille & Co", "Famille & Co"},
	} {
		inv, err := uri.ParseInvite(tc.invite)
		if err != nil {
			t.Fatal(err)
		}
		g, err := bob.JoinGroup(ctx, inv.JoinCode(tc.code))
		if err != nil {
			t.Fatalf("join %s from its join code: %v", tc.group.ID, err)
		}
		if g.ID != tc.group.ID || g.Name != tc.want {
			t.Fatalf("joined %+v, want %s named %q", g, tc.group.ID, tc.want)
		}
	}
}
