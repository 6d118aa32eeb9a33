package core

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

func TestAdminURIRoundTrip(t *testing.T) {
	u := AdminURI{Node: key.NewKeypair().ID(), Key: key.NewSecret(),
		Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:4000"), netip.MustParseAddrPort("[::1]:4001")}}
	u.Noise[0], u.Noise[31] = 1, 2
	s := u.String()
	if !strings.HasPrefix(s, "dweb+admin:?v=1&node=") {
		t.Fatalf("String = %q", s)
	}
	got, err := ParseAdminURI("  " + strings.Replace(s, "dweb+admin:", "DWEB+ADMIN://", 1) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != u.Node || got.Noise != u.Noise || got.Key != u.Key || len(got.Addrs) != 2 || got.Addrs[1] != u.Addrs[1] {
		t.Fatalf("parsed %+v, want %+v", got, u)
	}
	if strings.Contains(got.LogValue().String(), u.Key.Text()) {
		t.Fatal("LogValue shows the secret")
	}
	bad := map[string]string{
		"scheme":        strings.Replace(s, "dweb+admin", "save+dweb", 1),
		"no params":     "dweb+admin:",
		"missing key":   strings.Replace(s, "&key="+u.Key.Text(), "", 1),
		"missing addr":  strings.Split(s, "&addr=")[0],
		"unknown":       s + "&x=1",
		"duplicate":     s + "&node=" + u.Node.String(),
		"version":       strings.Replace(s, "v=1", "v=2", 1),
		"bad addr":      s + "&addr=example.org:1",
		"port 0":        s + "&addr=127.0.0.1:0",
		"short key":     strings.Replace(s, "key="+u.Key.Text(), "key=AAAA", 1),
		"fragment":      s + "#x",
		"no value":      s + "&addr",
		"too many addr": s + "&addr=1.2.3.4:5&addr=1.2.3.4:6&addr=1.2.3.4:7",
	}
	for name, in := range bad {
		if _, err := ParseAdminURI(in); !errors.Is(err, ErrAdminURI) {
			t.Errorf("%s: ParseAdminURI(%q) = %v, want ErrAdminURI", name, in, err)
		}
	}
}

// TestAdminAllowDeny: the holder of a backup server's admin URI makes it
// join a group, lists it and removes it; a URI with another secret or
// another Noise key is refused, a node that is not a backup server says so,
// and the URI stays the same after a restart.
func TestAdminAllowDeny(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	alice := startNode(t, filepath.Join(tmp, "alice"))
	dir := filepath.Join(tmp, "backup")
	bo := Options{Bootstrap: []string{alice.Contact()}, Backup: true}
	backup := startWith(t, dir, bo, false)
	if _, _, err := alice.AdminURI(); !errors.Is(err, ErrNotAdmin) {
		t.Fatalf("AdminURI of a node without backup mode: %v", err)
	}
	uri, first, err := backup.AdminURI()
	if err != nil || !first {
		t.Fatalf("AdminURI = %q, %v, %v; want one made by this first start", uri, first, err)
	}
	p, _ := writeFile(t, tmp, "a.jpg", 50000)
	g, _, inv := newGroup(ctx, t, alice, "desk", p)

	c, err := DialAdmin(uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if gs, err := c.List(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("List = %+v, %v; want none", gs, err)
	}
	jg, err := c.Join(ctx, inv)
	if err != nil || jg.ID != g.ID || jg.Name != "desk" {
		t.Fatalf("Join = %+v, %v", jg, err)
	}
	waitFor(t, "the backup to hold the group's file", holds(backup, g.ID, 1))
	gs, err := c.List(ctx)
	if err != nil || len(gs) != 1 || gs[0].ID != g.ID || gs[0].Held != 1 || gs[0].Missing != 0 || gs[0].BytesHeld != 50000 {
		t.Fatalf("List = %+v, %v", gs, err)
	}
	var ae *AdminError
	if _, err := c.Join(ctx, "save+dweb:?v=1"); !errors.As(err, &ae) || ae.Code != 400 {
		t.Fatalf("Join of a bad invite = %v, want a 400 AdminError", err)
	}
	if _, err := c.Remove(ctx, "nope"); !errors.As(err, &ae) || ae.Code != 404 {
		t.Fatalf("Remove of an unknown group = %v, want a 404 AdminError", err)
	}

	// Denied: another secret, another Noise key; and a node that is not a
	// backup server.
	u, err := ParseAdminURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := u
	wrongKey.Key = key.NewSecret()
	wrongNoise := u
	wrongNoise.Noise[0] ^= 1
	notBackup := u
	notBackup.Node, notBackup.Addrs = alice.NodeID(), []netip.AddrPort{alice.Addr()}
	for name, tc := range map[string]struct {
		u    AdminURI
		want error
	}{"wrong key": {wrongKey, ErrAdminDenied}, "wrong noise key": {wrongNoise, ErrAdminDenied}, "not a backup": {notBackup, ErrNotAdmin}} {
		dc, err := DialAdmin(tc.u.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dc.Remove(ctx, g.ID.String())
		dc.Close()
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: Remove = %v, want %v", name, err, tc.want)
		}
	}
	if len(backup.Groups()) != 1 {
		t.Fatal("a refused request changed the backup's groups")
	}

	rg, err := c.Remove(ctx, g.ID.String())
	if err != nil || rg.ID != g.ID {
		t.Fatalf("Remove = %+v, %v", rg, err)
	}
	if n := len(backup.Groups()); n != 0 {
		t.Fatalf("the backup still has %d groups", n)
	}

	// The same URI after a restart, not announced as new.
	backup.Close()
	backup = startWith(t, dir, bo, false)
	again, first, err := backup.AdminURI()
	if err != nil || first || again != uri {
		t.Fatalf("after a restart AdminURI = %q, %v, %v; want %q, not first", again, first, err, uri)
	}
}
