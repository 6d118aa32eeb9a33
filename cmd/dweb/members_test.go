package main

import (
	"context"
	"net/url"
	"testing"
	"time"
)

// TestMembersRoutes: two real daemons. A makes a membership-checked group
// over the HTTP API and a bearer invite; B joins with it through the Save
// app's own route (POST /api/memberships, the scanned QR code), so the app
// can join such a group unchanged. A's node hands B's use over to B's
// own key, A lists both members, removes B (the next epoch), and B's node
// finds itself removed.
func TestMembersRoutes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	_, readyA := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error"})
	_, readyB := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error"})
	a, b := newAPIClient(t, readyA.Socket), newAPIClient(t, readyB.Socket)

	g := a.json("POST", "/api/groups", `{"name":"desk","checked":true}`, 200)
	gid, _ := g["key"].(string)
	if g["uri"] != "" {
		t.Fatalf("a checked group answered a standing invite: %v", g)
	}
	a.wantErr("GET", "/dweb/v1/groups/"+gid+"/invite", nil, 400, "no standing invite")
	a.wantErr("POST", "/dweb/v1/groups/"+gid+"/invites", `{"uses":-1}`, 400, "negative")
	code := a.json("POST", "/dweb/v1/groups/"+gid+"/invites", `{"uses":1,"expires_s":3600}`, 200)["uri"].(string)
	if m := b.json("POST", "/api/memberships", `{"uri":"`+code+`"}`, 200)["group"].(map[string]any); m["key"] != gid || m["name"] != "desk" {
		t.Fatalf("the Save route's join with a bearer invite: %v", m)
	}
	bContact := b.json("GET", "/dweb/v1/contact", nil, 200)["contact"].(string)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ms := a.json("GET", "/dweb/v1/groups/"+gid+"/members", nil, 200)["members"].([]any)
		handed := false
		for _, m := range ms {
			handed = handed || m.(map[string]any)["contact"] == bContact
		}
		if len(ms) == 2 && handed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's use was not handed over to B's key: %v", ms)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := a.json("DELETE", "/dweb/v1/groups/"+gid+"/members/"+url.PathEscape(bContact), nil, 200)
	if m["epoch"] != float64(2) || len(m["members"].([]any)) != 1 {
		t.Fatalf("after the removal: %v", m)
	}
	a.wantErr("DELETE", "/dweb/v1/groups/"+gid+"/members/nobody", nil, 400, "no member named")
	for time.Now().Before(deadline) {
		if b.json("GET", "/dweb/v1/groups/"+gid+"/members", nil, 200)["removed"] == true {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("B's node did not learn of its removal")
}
