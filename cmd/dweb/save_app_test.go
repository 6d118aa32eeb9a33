package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// The Save Android app's DTOs (Save-app-android, branch
// NEXT-WITHOUT-STORACHA, services/snowbird/data/SnowbirdDTOs.kt), field for
// field. kotlinx.serialization, as the app configures it (ignoreUnknownKeys
// only), fails a whole call when a field without a default is missing, when
// any non-nullable field is null, or when a value has the wrong type; the
// required and non-null lists below say which fields those are.
type (
	appGroup struct {
		Key  string  `json:"key"`
		Name *string `json:"name"`
		URI  *string `json:"uri"`
	}
	appGroupList struct {
		Groups []appGroup `json:"groups"`
	}
	appRepo struct {
		Key      string  `json:"key"`
		Name     *string `json:"name"`
		CanWrite *bool   `json:"can_write"`
	}
	appRepoList struct {
		Repos []appRepo `json:"repos"`
	}
	appFile struct {
		Name         string  `json:"name"`
		Hash         string  `json:"hash"`
		IsDownloaded bool    `json:"is_downloaded"`
		Size         int64   `json:"size"`
		MimeType     *string `json:"mimeType"`
		CreatedAt    *string `json:"created_at"`
	}
	appFileList struct {
		Files []appFile `json:"files"`
	}
	appUpload struct {
		Name                  string  `json:"name"`
		UpdatedCollectionHash string  `json:"updated_collection_hash"`
		FileHash              *string `json:"file_hash"`
	}
	appJoin struct {
		Group appGroup `json:"group"`
	}
	appRefreshedRepo struct {
		RepoID         string   `json:"repo_id"`
		Hash           *string  `json:"repo_hash"`
		Name           string   `json:"name"`
		CanWrite       bool     `json:"can_write"`
		AllFiles       []string `json:"all_files"`
		RefreshedFiles []string `json:"refreshed_files"`
		Error          *string  `json:"error"`
	}
	appRefresh struct {
		Repos   []appRefreshedRepo `json:"repos"`
		Status  *string            `json:"status"`
		Success *bool              `json:"success"`
	}
)

// dtoRules are, per DTO, the fields without a default (required) and the
// non-nullable ones with a default (present or absent, never null).
var dtoRules = map[string]struct{ required, nonNull []string }{
	"group":     {required: []string{"key"}},
	"groups":    {required: []string{"groups"}},
	"repo":      {required: []string{"key"}},
	"repos":     {required: []string{"repos"}},
	"file":      {required: []string{"name"}, nonNull: []string{"hash", "is_downloaded", "size"}},
	"files":     {required: []string{"files"}},
	"upload":    {required: []string{"name", "updated_collection_hash"}},
	"join":      {required: []string{"group"}},
	"refreshed": {required: []string{"repo_id", "name"}, nonNull: []string{"can_write", "all_files", "refreshed_files"}},
	"refresh":   {nonNull: []string{"repos"}},
}

// checkDTO checks obj against the rules of DTO kind, as kotlinx would.
func checkDTO(t *testing.T, kind string, obj map[string]any) {
	t.Helper()
	r := dtoRules[kind]
	for _, k := range r.required {
		if v, ok := obj[k]; !ok || v == nil {
			t.Fatalf("%s: required field %q missing or null in %v", kind, k, obj)
		}
	}
	for _, k := range r.nonNull {
		if v, ok := obj[k]; ok && v == nil {
			t.Fatalf("%s: non-nullable field %q is null in %v", kind, k, obj)
		}
	}
}

// appClient sends requests the way the app's Retrofit client does: to
// http://localhost:PORT/api/..., JSON bodies as application/json with a
// charset, no Origin, and reads errors as save-rust's JSON string.
type appClient struct {
	t    *testing.T
	base string
}

func (c *appClient) do(method, path, ct string, body io.Reader) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// call sends a JSON body (or none), checks for 2xx, checks the answer
// against DTO kind, and decodes it into out with the app's types.
func (c *appClient) call(method, path string, body any, kind string, out any) {
	c.t.Helper()
	var rd io.Reader
	ct := ""
	if body != nil {
		b, _ := json.Marshal(body)
		rd, ct = bytes.NewReader(b), "application/json; charset=UTF-8"
	}
	code, raw := c.do(method, path, ct, rd)
	if code/100 != 2 {
		c.t.Fatalf("%s %s: %d %s (the app shows %q)", method, path, code, raw, appErrorMessage(raw))
	}
	c.decode(raw, kind, out)
}

func (c *appClient) decode(raw []byte, kind string, out any) {
	c.t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		c.t.Fatalf("%s: not a JSON object: %s", kind, raw)
	}
	checkDTO(c.t, kind, obj)
	switch kind {
	case "groups":
		for _, g := range obj["groups"].([]any) {
			checkDTO(c.t, "group", g.(map[string]any))
		}
	case "repos":
		for _, r := range obj["repos"].([]any) {
			checkDTO(c.t, "repo", r.(map[string]any))
		}
	case "files":
		for _, f := range obj["files"].([]any) {
			checkDTO(c.t, "file", f.(map[string]any))
		}
	case "join":
		checkDTO(c.t, "group", obj["group"].(map[string]any))
	case "refresh":
		for _, r := range obj["repos"].([]any) {
			checkDTO(c.t, "refreshed", r.(map[string]any))
		}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		c.t.Fatalf("%s: the app's types do not decode %s: %v", kind, raw, err)
	}
}

// appErrorMessage is RetrofitAPI.parseError: the body decoded as a JSON
// string, else the raw body trimmed of quotes.
func appErrorMessage(raw []byte) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return strings.Trim(strings.TrimSpace(string(raw)), `"`)
}

// joinCode is SnowbirdJoinCode.build: the invite up to any "&name=", then
// "&name=" and the name through java.net.URLEncoder (spaces as '+').
func appJoinCode(groupURI, name string) string {
	base, _, _ := strings.Cut(strings.TrimSpace(groupURI), "&name=")
	return base + "&name=" + url.QueryEscape(name)
}

// androidURIEncode is android.net.Uri.encode: every byte but
// [A-Za-z0-9_!.~'()*-] percent-encoded, spaces as %20.
func androidURIEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_!.~'()*-", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// TestSaveAppCallSequence replays the Save app's calls, in the app's order,
// against two real daemons over TCP as the app reaches its backend, and
// decodes every answer with the app's own DTOs and rules: create a group, name
// this phone's repo, upload, list, share the group's uri plus "&name=", join
// on the other phone through memberships, list repos by the names asked
// for, list media with is_downloaded, refresh with repo_id, download,
// delete.
func TestSaveAppCallSequence(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, readyA := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error", http: "127.0.0.1:0"})
	_, readyB := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error", http: "127.0.0.1:0", bootstrap: []string{readyA.Contact}})
	port := func(hp string) string { return hp[strings.LastIndexByte(hp, ':')+1:] }
	alice := &appClient{t, "http://localhost:" + port(readyA.HTTP)}
	bob := &appClient{t, "http://localhost:" + port(readyB.HTTP)}

	// SnowbirdService: /status proves liveness, /health/ready the backend.
	for _, c := range []*appClient{alice, bob} {
		for _, p := range []string{"/status", "/health/ready"} {
			if code, raw := c.do("GET", p, "", nil); code/100 != 2 {
				t.Fatalf("GET %s: %d %s", p, code, raw)
			}
		}
	}

	// Alice creates a group; the app stores its uri for the share QR.
	var g appGroup
	alice.call("POST", "/api/groups", map[string]string{"name": "Rights Watch"}, "group", &g)
	if g.Name == nil || *g.Name != "Rights Watch" || g.URI == nil || !strings.HasPrefix(*g.URI, "save+dweb:") {
		t.Fatalf("create group: %+v", g)
	}
	var gl appGroupList
	alice.call("GET", "/api/groups", nil, "groups", &gl)
	if len(gl.Groups) != 1 || gl.Groups[0].Key != g.Key || gl.Groups[0].URI == nil || *gl.Groups[0].URI == "" {
		t.Fatalf("groups: %+v", gl)
	}
	var got appGroup
	alice.call("GET", "/api/groups/"+g.Key, nil, "group", &got)
	if got.Key != g.Key || got.URI == nil || *got.URI == "" {
		t.Fatalf("get group: %+v", got)
	}

	// Her archive: created by name, then found by that name in the list.
	var repo appRepo
	alice.call("POST", "/api/groups/"+g.Key+"/repos", map[string]string{"name": "Alice's phone"}, "repo", &repo)
	if repo.Name == nil || *repo.Name != "Alice's phone" || repo.CanWrite == nil || !*repo.CanWrite {
		t.Fatalf("create repo: %+v", repo)
	}
	findRepo := func(c *appClient, name string) appRepo {
		t.Helper()
		var rl appRepoList
		c.call("GET", "/api/groups/"+g.Key+"/repos", nil, "repos", &rl)
		for _, r := range rl.Repos {
			if r.Name != nil && *r.Name == name {
				return r
			}
		}
		t.Fatalf("no repo named %q in %+v", name, rl)
		return appRepo{}
	}
	if r := findRepo(alice, "Alice's phone"); r.Key != repo.Key {
		t.Fatalf("archive found by name is %s, created %s", r.Key, repo.Key)
	}

	// Uploads: a photo with a known length and a video sent chunked (the
	// app does when the content resolver gives no length), names through
	// Uri.encode as the app puts them in the path.
	media := "/api/groups/" + g.Key + "/repos/" + repo.Key + "/media"
	photo := bytes.Repeat([]byte("evidence "), 30000)
	video := bytes.Repeat([]byte{0, 1, 2, 3, 250}, 100000)
	files := map[string][]byte{"IMG 0001 é.jpg": photo, "clip(1).mp4": video}
	for name, data := range files {
		var body io.Reader = bytes.NewReader(data)
		if name == "clip(1).mp4" {
			body = io.MultiReader(bytes.NewReader(data)) // no length: sent chunked
		}
		code, raw := alice.do("POST", media+"/"+androidURIEncode(name), "application/octet-stream", body)
		if code != 200 {
			t.Fatalf("upload %s: %d %s", name, code, raw)
		}
		var up appUpload
		alice.decode(raw, "upload", &up)
		h := blake3.Sum256(data)
		if up.Name != name || up.FileHash == nil || *up.FileHash != fmt.Sprintf("%x", h) || len(up.UpdatedCollectionHash) != 64 {
			t.Fatalf("upload %s: %+v", name, up)
		}
	}
	var fl appFileList
	alice.call("GET", media, nil, "files", &fl)
	if len(fl.Files) != 2 {
		t.Fatalf("alice's media: %+v", fl)
	}
	for _, f := range fl.Files {
		h := blake3.Sum256(files[f.Name])
		if !f.IsDownloaded || f.Hash != fmt.Sprintf("%x", h) || f.Size != int64(len(files[f.Name])) || f.MimeType == nil || f.CreatedAt == nil {
			t.Fatalf("alice's file %+v", f)
		}
		if _, err := time.Parse(time.RFC3339, *f.CreatedAt); err != nil {
			t.Fatalf("created_at %q: %v", *f.CreatedAt, err)
		}
	}
	if m := map[string]string{fl.Files[0].Name: *fl.Files[0].MimeType, fl.Files[1].Name: *fl.Files[1].MimeType}; m["IMG 0001 é.jpg"] != "image/jpeg" || m["clip(1).mp4"] != "video/mp4" {
		t.Fatalf("mimeType %v", m)
	}

	// Bob scans the QR: the uri with "&name=" the app appends.
	code := appJoinCode(*g.URI, "Rights Watch")
	var joined appJoin
	bob.call("POST", "/api/memberships", map[string]string{"uri": code}, "join", &joined)
	if joined.Group.Key != g.Key || joined.Group.Name == nil || *joined.Group.Name != "Rights Watch" || joined.Group.URI == nil {
		t.Fatalf("join: %+v", joined)
	}
	var bobRepo appRepo
	bob.call("POST", "/api/groups/"+g.Key+"/repos", map[string]string{"name": "Bob's tablet"}, "repo", &bobRepo)
	if r := findRepo(bob, "Bob's tablet"); r.Key != bobRepo.Key || r.CanWrite == nil || !*r.CanWrite {
		t.Fatalf("bob's archive: %+v", r)
	}
	if r := findRepo(bob, "Alice's phone"); r.Key != repo.Key || r.CanWrite == nil || *r.CanWrite {
		t.Fatalf("alice's archive seen by bob: %+v", r)
	}

	// Bob lists Alice's media: known, not yet downloaded.
	bob.call("GET", media, nil, "files", &fl)
	if len(fl.Files) != 2 || fl.Files[0].IsDownloaded || fl.Files[1].IsDownloaded {
		t.Fatalf("bob's view before refresh: %+v", fl)
	}
	var rf appRefresh
	bob.call("POST", "/api/groups/"+g.Key+"/refresh", nil, "refresh", &rf)
	var ra *appRefreshedRepo
	for i := range rf.Repos {
		if rf.Repos[i].RepoID == repo.Key {
			ra = &rf.Repos[i]
		}
	}
	if rf.Status == nil || *rf.Status != "success" || ra == nil || ra.Name != "Alice's phone" || len(ra.RefreshedFiles) != 2 || len(ra.AllFiles) != 2 || ra.Hash == nil {
		t.Fatalf("refresh: %+v", rf)
	}
	bob.call("GET", media, nil, "files", &fl)
	if !fl.Files[0].IsDownloaded || !fl.Files[1].IsDownloaded {
		t.Fatalf("bob's view after refresh: %+v", fl)
	}
	for name, data := range files {
		// Retrofit encodes a @Path value itself (not encoded = true).
		code, raw := bob.do("GET", media+"/"+url.PathEscape(name), "", nil)
		if code != 200 || !bytes.Equal(raw, data) {
			t.Fatalf("bob downloads %s: %d, %d bytes", name, code, len(raw))
		}
	}

	// Alice deletes the photo: save-rust answers the new collection hash
	// as a JSON string; Bob's next refresh no longer lists it.
	st, raw := alice.do("DELETE", media+"/"+androidURIEncode("IMG 0001 é.jpg"), "", nil)
	var ch string
	if st != 200 || json.Unmarshal(raw, &ch) != nil || len(ch) != 64 {
		t.Fatalf("delete: %d %s", st, raw)
	}
	bob.call("POST", "/api/groups/"+g.Key+"/refresh", nil, "refresh", &rf)
	for _, r := range rf.Repos {
		if r.RepoID == repo.Key && (len(r.AllFiles) != 1 || r.AllFiles[0] != "clip(1).mp4") {
			t.Fatalf("refresh after delete: %+v", r)
		}
	}

	// Errors reach the user as the app reads them: a JSON string.
	st, raw = bob.do("GET", "/api/groups/not-a-group", "", nil)
	if st/100 == 2 || !json.Valid(raw) || !strings.Contains(appErrorMessage(raw), "unknown group") {
		t.Fatalf("error answer: %d %s", st, raw)
	}
}
