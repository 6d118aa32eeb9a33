package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/httpapi"
)

// TestLocalAPIRefusesWebPages: a real daemon serving the Save port on
// 127.0.0.1 refuses what a web page in a browser on the same machine can
// send it — cross-site simple requests (text/plain, with an evil Origin or
// none), a DNS-rebinding Host, requests a browser marks with
// Sec-Fetch-Site or Referer, and dweb's path-taking routes over TCP — and
// none of them changes anything. The app's own request shape still works,
// and the token of DIR/api.token opens dweb's routes over TCP.
func TestLocalAPIRefusesWebPages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dataA, readyA := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error", http: "127.0.0.1:0"})
	_, readyE := startDaemon(t, ctx) // the attacker's node and group
	sockA, evil := newAPIClient(t, readyA.Socket), newAPIClient(t, readyE.Socket)
	g := sockA.json("POST", "/api/groups", `{"name":"newsroom"}`, 200)["key"].(string)
	evilInvite := evil.json("POST", "/api/groups", `{"name":"trap"}`, 200)["uri"].(string)
	secret := filepath.Join(t.TempDir(), "secret.txt")
	os.WriteFile(secret, []byte("the journalist's notes"), 0o600)
	stolen := filepath.Join(t.TempDir(), "overwritten")

	base := "http://" + readyA.HTTP
	send := func(method, path, body string, hdr ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i] == "Host" {
				req.Host = hdr[i+1]
			} else {
				req.Header.Set(hdr[i], hdr[i+1])
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	join := `{"uri":"` + evilInvite + `"}`
	files := `{"paths":["` + secret + `"]}`
	get := `{"name":"x.txt","out":"` + stolen + `"}`
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		code                     int
	}{
		{"cross-site text/plain join", "POST", "/api/memberships", join, []string{"Content-Type", "text/plain", "Origin", "https://evil.example"}, 403},
		{"cross-site JSON join (preflight-less fetch)", "POST", "/api/memberships", join, []string{"Content-Type", "application/json", "Origin", "null"}, 403},
		{"simple request without Origin", "POST", "/api/memberships", join, []string{"Content-Type", "text/plain"}, 415},
		{"form post", "POST", "/api/groups", "name=x", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"DNS rebinding", "POST", "/api/memberships", join, []string{"Content-Type", "application/json", "Host", "evil.example:8080"}, 403},
		{"rebinding read", "GET", "/api/groups", "", []string{"Host", "attacker.test"}, 403},
		{"image load of a file", "GET", "/api/groups/" + g + "/repos", "", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"link from a page", "POST", "/api/groups/" + g + "/refresh", "", []string{"Referer", "https://evil.example/"}, 403},
		{"preflight", "OPTIONS", "/api/groups", "", []string{"Origin", "https://evil.example", "Access-Control-Request-Method", "POST"}, 403},
		{"file add over TCP", "POST", "/dweb/v1/groups/" + g + "/files", files, []string{"Content-Type", "application/json"}, 403},
		{"file get over TCP", "POST", "/dweb/v1/groups/" + g + "/files/get", get, []string{"Content-Type", "application/json"}, 403},
		{"file add with a wrong token", "POST", "/dweb/v1/groups/" + g + "/files", files, []string{"Content-Type", "application/json", "Authorization", "Bearer 0000000000000000000000000000000000000000"}, 403},
		{"metrics over TCP", "GET", "/metrics", "", nil, 403},
	} {
		code, body := send(tc.method, tc.path, tc.body, tc.hdr...)
		if code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.code)
		}
	}

	// Nothing changed: one group, no files, nothing written.
	if gs := sockA.json("GET", "/api/groups", nil, 200)["groups"].([]any); len(gs) != 1 {
		t.Errorf("groups after the attacks: %v", gs)
	}
	if fs := sockA.json("GET", "/dweb/v1/groups/"+g+"/files", nil, 200)["files"].([]any); len(fs) != 0 {
		t.Errorf("files after the attacks: %v", fs)
	}
	if _, err := os.Stat(stolen); !os.IsNotExist(err) {
		t.Errorf("file get over TCP wrote %s: %v", stolen, err)
	}

	// The app's own shape works: loopback Host with its port, JSON with a
	// charset, no Origin.
	code, body := send("POST", "/api/groups", `{"name":"family"}`, "Content-Type", "application/json; charset=UTF-8", "Host", "localhost:"+strings.Split(readyA.HTTP, ":")[1])
	var created httpapi.Group
	if code != 200 || json.Unmarshal([]byte(body), &created) != nil || created.Name != "family" || created.URI == "" {
		t.Fatalf("the app's create group: %d %s", code, body)
	}
	// dweb's routes over TCP with the token of DIR/api.token (0600).
	fi, err := os.Stat(filepath.Join(dataA, httpapi.TokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	tok, err := os.ReadFile(filepath.Join(dataA, httpapi.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := send("GET", "/dweb/v1/node", "", "Authorization", "Bearer "+strings.TrimSpace(string(tok))); code != 200 || !strings.Contains(body, readyA.NodeID) {
		t.Fatalf("node over TCP with the token: %d %s", code, body)
	}
}
