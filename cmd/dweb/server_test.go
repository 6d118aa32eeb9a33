package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
	"github.com/dwebkit/dweb/internal/key"
)

// fakeBackend is an in-memory backend: groups by name, files per group.
type fakeBackend struct {
	httpapi.Backend // nil: the repo, media and backup routes are tested against real nodes (server_save_test.go)

	mu        sync.Mutex
	groups    []core.GroupInfo
	repoNames []string // GroupOptions.RepoName of every create and join
	files     map[key.RecordKey][]core.FileInfo
	getErr    error // returned by GetFile after its progress calls
}

func newFake() *fakeBackend {
	return &fakeBackend{files: map[key.RecordKey][]core.FileInfo{}}
}

func (f *fakeBackend) NodeID() key.NodeID         { return key.NodeID{1, 2, 3} }
func (f *fakeBackend) Addr() netip.AddrPort       { return netip.MustParseAddrPort("127.0.0.1:4242") }
func (f *fakeBackend) Contact() string            { return f.NodeID().String() + "@127.0.0.1:4242" }
func (f *fakeBackend) DeviceName() string         { return core.DefaultDeviceName }
func (f *fakeBackend) Traffic() core.TrafficStats { return core.TrafficStats{} }

func (f *fakeBackend) Publications() []core.Publication { return nil }

func (f *fakeBackend) CreateGroupWith(_ context.Context, name string, o core.GroupOptions) (core.GroupInfo, error) {
	if strings.ContainsAny(name, "\x00\n") {
		return core.GroupInfo{}, &core.BadInputError{Err: errors.New("bad group name")}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.repoNames = append(f.repoNames, o.RepoName)
	g := core.GroupInfo{ID: key.RecordKey{byte(len(f.groups) + 1)}, Name: name, CreatedAt: time.Unix(1700000000, 0).UTC()}
	f.groups = append(f.groups, g)
	return g, nil
}

func (f *fakeBackend) JoinGroupWith(ctx context.Context, u string, o core.GroupOptions) (core.GroupInfo, error) {
	if !strings.HasPrefix(u, "save+dweb:") {
		return core.GroupInfo{}, &core.BadInputError{Err: errors.New(`invite: parameter "scheme": want save+dweb:`)}
	}
	return f.CreateGroupWith(ctx, "joined", o)
}

func (f *fakeBackend) Groups() []core.GroupInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]core.GroupInfo(nil), f.groups...)
}

func (f *fakeBackend) ResolveGroup(s string) (core.GroupInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var found []core.GroupInfo
	for _, g := range f.groups {
		if g.ID.String() == s || g.Name == s {
			found = append(found, g)
		}
	}
	switch len(found) {
	case 0:
		return core.GroupInfo{}, fmt.Errorf("group %q: %w", s, core.ErrUnknownGroup)
	case 1:
		return found[0], nil
	}
	return core.GroupInfo{}, fmt.Errorf("group %q: %w", s, core.ErrAmbiguous)
}

func (f *fakeBackend) Invite(g key.RecordKey) (string, error) {
	return "save+dweb:?v=1&dht=" + g.String(), nil
}

func (f *fakeBackend) LeaveGroup(_ context.Context, id key.RecordKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, g := range f.groups {
		if g.ID == id {
			f.groups = append(f.groups[:i], f.groups[i+1:]...)
			return nil
		}
	}
	return core.ErrUnknownGroup
}

func (f *fakeBackend) AddFilesWith(_ context.Context, g key.RecordKey, paths []string, opts core.AddOptions) ([]core.FileInfo, error) {
	var out []core.FileInfo
	kept := "copy"
	if opts.NoStoreCopy {
		kept = "reference"
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, &core.BadInputError{Err: err}
		}
		out = append(out, core.FileInfo{Name: filepath.Base(p), Size: st.Size(), Mine: true, Local: true, Store: kept})
	}
	f.mu.Lock()
	f.files[g] = append(f.files[g], out...)
	f.mu.Unlock()
	return out, nil
}

func (f *fakeBackend) ListFiles(_ context.Context, g key.RecordKey) ([]core.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]core.FileInfo(nil), f.files[g]...), nil
}

func (f *fakeBackend) List(ctx context.Context, g key.RecordKey) (core.Listing, error) {
	fs, err := f.ListFiles(ctx, g)
	return core.Listing{Files: fs}, err
}

func (f *fakeBackend) GetFileWith(_ context.Context, g, _ key.RecordKey, name, dst string, opts core.GetOptions) (core.FileInfo, error) {
	progress := opts.Progress
	f.mu.Lock()
	var fi *core.FileInfo
	for i := range f.files[g] {
		if f.files[g][i].Name == name {
			fi = &f.files[g][i]
		}
	}
	getErr := f.getErr
	f.mu.Unlock()
	if fi == nil {
		return core.FileInfo{}, fmt.Errorf("file %q: %w", name, core.ErrFileNotFound)
	}
	progress(core.Progress{Done: 0, Total: 10})
	progress(core.Progress{Done: 10, Total: 10})
	if getErr != nil {
		return core.FileInfo{}, getErr
	}
	return *fi, os.WriteFile(dst, []byte("0123456789"), 0o600)
}

// RefreshWithProgress reports two steps of progress, then getErr or one
// repo that fetched every file of the group.
func (f *fakeBackend) RefreshWithProgress(_ context.Context, g key.RecordKey, progress func(core.RefreshProgress)) ([]core.RepoRefresh, error) {
	f.mu.Lock()
	var names []string
	for _, fi := range f.files[g] {
		names = append(names, fi.Name)
	}
	getErr := f.getErr
	f.mu.Unlock()
	progress(core.RefreshProgress{Files: len(names), Total: 10})
	time.Sleep(110 * time.Millisecond) // past the API's 100 ms progress throttle
	progress(core.RefreshProgress{Files: len(names), FilesDone: len(names), Done: 10, Total: 10})
	if getErr != nil {
		return nil, getErr
	}
	return []core.RepoRefresh{{Name: "other", RefreshedFiles: names, AllFiles: names, FailedFiles: []string{}}}, nil
}

func (f *fakeBackend) RemoveFile(_ context.Context, g key.RecordKey, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fs := f.files[g]
	for i := range fs {
		if fs[i].Name == name {
			f.files[g] = append(fs[:i], fs[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("file %q: %w", name, core.ErrFileNotFound)
}

// do sends one request to h as if on the daemon's unix socket; a body
// "text:..." is sent as text/plain, any other as application/json.
func do(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any, string) {
	t.Helper()
	var rd io.Reader
	ct := "application/json"
	if b, ok := strings.CutPrefix(body, "text:"); ok {
		body, ct = b, "text/plain"
	}
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", ct)
	}
	// As if on the daemon's unix socket, the CLI's way in.
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.UnixAddr{Name: "dweb.sock", Net: "unix"}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var m map[string]any
	json.Unmarshal(rec.Body.Bytes(), &m)
	return rec.Code, m, rec.Body.String()
}

func TestRoutes(t *testing.T) {
	fb := newFake()
	h := httpapi.New(fb, httpapi.Options{})
	dir := t.TempDir()
	file := filepath.Join(dir, "a.txt")
	os.WriteFile(file, []byte("hello"), 0o600)

	// Create two groups named "dup" to make the name ambiguous, and one "g".
	for _, n := range []string{"g", "dup", "dup"} {
		if code, m, raw := do(t, h, "POST", "/api/groups", `{"name":"`+n+`"}`); code != 200 || m["name"] != n || m["key"] == "" {
			t.Fatalf("create %s: %d %s", n, code, raw)
		}
	}
	gkey := fb.groups[0].ID.String()

	for _, tc := range []struct {
		method, path, body string
		code               int
		errPart            string // in the error message when code >= 400
	}{
		{"GET", "/status", "", 200, ""},
		{"GET", "/health", "", 200, ""},
		{"GET", "/api/groups", "", 200, ""},
		{"GET", "/api/groups/" + gkey, "", 200, ""},
		{"GET", "/api/groups/g", "", 200, ""},
		{"GET", "/api/groups/nope", "", 500, "unknown group"},
		{"GET", "/api/groups/dup", "", 500, "ambiguous"},
		{"POST", "/api/groups", `{"name":""}`, 400, "name"},
		{"POST", "/api/groups", `{"name":"x","extra":1}`, 200, ""},
		{"POST", "/api/groups", `text:{"name":"x"}`, 415, "application/json"},
		{"POST", "/api/groups", `{"name":"x"} {}`, 400, "after"},
		{"POST", "/api/groups", ``, 400, "empty"},
		{"POST", "/api/groups", `[1,2]`, 400, "request body"},
		{"POST", "/api/groups", `{"name":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "too large"},
		{"POST", "/api/groups", `{"name":"bad\n"}`, 400, "bad group name"},
		{"POST", "/api/groups/join_from_url", `{"group_url":"http://x"}`, 400, "scheme"},
		{"POST", "/api/groups/join_from_url", `{}`, 400, "url: missing"},
		{"POST", "/api/groups/join_from_url", `{"url":"save+dweb:?y"}`, 200, ""},
		{"POST", "/api/memberships", `{"uri":"save+dweb:?z"}`, 200, ""},
		{"POST", "/api/memberships", `{"url":"save+dweb:?z"}`, 400, "uri: missing"},
		{"POST", "/dweb/v1/groups/g/files", `{"paths":["/a"],"extra":1}`, 400, "unknown field"},
		{"POST", "/api/groups/join_from_url", `{"group_url":"save+dweb:?x"}`, 200, ""},
		{"GET", "/dweb/v1/node", "", 200, ""},
		{"GET", "/dweb/v1/groups/g/invite", "", 200, ""},
		{"GET", "/dweb/v1/groups/nope/invite", "", 404, "unknown group"},
		{"POST", "/dweb/v1/groups/g/files", `{"paths":["relative.txt"]}`, 400, "absolute"},
		{"POST", "/dweb/v1/groups/g/files", `{"paths":[]}`, 400, "paths"},
		{"POST", "/dweb/v1/groups/nope/files", `{"paths":["` + file + `"]}`, 404, "unknown group"},
		{"POST", "/dweb/v1/groups/g/files", `{"paths":["` + file + `"]}`, 200, ""},
		{"GET", "/dweb/v1/groups/g/files", "", 200, ""},
		{"GET", "/dweb/v1/groups/dup/files", "", 409, "ambiguous"},
		{"POST", "/dweb/v1/groups/g/files/get", `{"name":"a.txt","out":"rel"}`, 400, "absolute"},
		{"POST", "/dweb/v1/groups/g/files/get", `{"name":"a.txt","out":"/x","repo":"zz"}`, 400, "repo"},
		{"POST", "/dweb/v1/groups/g/files/get", `{"out":"/x"}`, 400, "name"},
		{"POST", "/dweb/v1/groups/nope/files/get", `{"name":"a.txt","out":"/x"}`, 404, "unknown group"},
		{"DELETE", "/dweb/v1/groups/g/files/nope.txt", "", 404, "not found"},
		{"DELETE", "/dweb/v1/groups/g/files/a.txt", "", 200, ""},
		{"GET", "/dweb/v1/nothing", "", 404, "no route"},
		{"PUT", "/api/groups", "", 405, "no route"},
		{"DELETE", "/api/groups/g", "", 200, ""},
		{"GET", "/api/groups/g", "", 500, "unknown group"},
	} {
		code, m, raw := do(t, h, tc.method, tc.path, tc.body)
		if code != tc.code {
			t.Errorf("%s %s %.60s: status %d, want %d (%s)", tc.method, tc.path, tc.body, code, tc.code, raw)
			continue
		}
		if code < 400 {
			continue
		}
		// dweb's own routes answer {"status":"error","error":...}; the
		// Save routes a bare JSON string, as save-rust.
		msg := fmt.Sprint(m["error"])
		if !strings.HasPrefix(tc.path, "/dweb/") {
			if err := json.Unmarshal([]byte(raw), &msg); err != nil {
				t.Errorf("%s %s: error body %s is not a JSON string", tc.method, tc.path, raw)
			}
		} else if m["status"] != "error" {
			t.Errorf("%s %s: error body %s, want status error", tc.method, tc.path, raw)
		}
		if !strings.Contains(msg, tc.errPart) {
			t.Errorf("%s %s: error %q, want %q in it", tc.method, tc.path, msg, tc.errPart)
		}
	}
}

// TestRepoNameRequests checks that the create and join routes pass the
// optional repo_name on, and that the app's bodies without it ask for none.
func TestRepoNameRequests(t *testing.T) {
	fb := newFake()
	h := httpapi.New(fb, httpapi.Options{})
	for _, body := range []struct{ path, body string }{
		{"/api/groups", `{"name":"g"}`},
		{"/api/groups", `{"name":"g","repo_name":"desk"}`},
		{"/api/groups/join_from_url", `{"url":"save+dweb:?x"}`},
		{"/api/groups/join_from_url", `{"url":"save+dweb:?x","repo_name":"phone"}`},
		{"/api/memberships", `{"uri":"save+dweb:?x"}`},
	} {
		if code, _, raw := do(t, h, "POST", body.path, body.body); code != 200 {
			t.Fatalf("POST %s %s: %d %s", body.path, body.body, code, raw)
		}
	}
	if want := []string{"", "desk", "", "phone", ""}; !slices.Equal(fb.repoNames, want) {
		t.Fatalf("repo names asked for %q, want %q", fb.repoNames, want)
	}
}

func TestGetFileStream(t *testing.T) {
	fb := newFake()
	h := httpapi.New(fb, httpapi.Options{})
	g, _ := fb.CreateGroupWith(context.Background(), "g", core.GroupOptions{})
	fb.files[g.ID] = []core.FileInfo{{Name: "a.txt", Size: 10}}
	out := filepath.Join(t.TempDir(), "out.txt")

	code, _, raw := do(t, h, "POST", "/dweb/v1/groups/g/files/get", `{"name":"a.txt","out":"`+out+`"}`)
	if code != 200 {
		t.Fatalf("status %d %s", code, raw)
	}
	lines := strings.Split(strings.TrimSpace(raw), "\n")
	var last httpapi.GetFileLine
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.File == nil || last.File.Name != "a.txt" {
		t.Fatalf("final line %q (%v)", lines[len(lines)-1], err)
	}
	var first httpapi.GetFileLine
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Total == nil || *first.Total != 10 {
		t.Fatalf("first line %q, want progress with total 10", lines[0])
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != "0123456789" {
		t.Fatalf("out file %q (%v)", b, err)
	}

	// A missing file is found by the backend once the stream has started:
	// the final line carries the error and its status.
	_, _, raw = do(t, h, "POST", "/dweb/v1/groups/g/files/get", `{"name":"zz","out":"`+out+`"}`)
	var nf httpapi.GetFileLine
	if err := json.Unmarshal([]byte(strings.TrimSpace(raw)), &nf); err != nil || nf.Code != 404 || !strings.Contains(nf.Error, "not found") {
		t.Fatalf("missing file: %q", raw)
	}

	// An error after progress ends the stream with {"error","code"}.
	fb.getErr = errors.New("peer went away")
	_, _, raw = do(t, h, "POST", "/dweb/v1/groups/g/files/get", `{"name":"a.txt","out":"`+out+`"}`)
	sc := bufio.NewScanner(strings.NewReader(raw))
	var l httpapi.GetFileLine
	for sc.Scan() {
		l = httpapi.GetFileLine{}
		json.Unmarshal(sc.Bytes(), &l)
	}
	if l.Error != "peer went away" || l.Code != 500 {
		t.Fatalf("final line %+v, want error with code 500", l)
	}
}

// TestSyncStream: POST /dweb/v1/groups/{group}/sync streams progress lines
// and then the repos, or an error line with its status; the client reads
// both.
func TestSyncStream(t *testing.T) {
	fb := newFake()
	g, _ := fb.CreateGroupWith(context.Background(), "g", core.GroupOptions{})
	fb.files[g.ID] = []core.FileInfo{{Name: "a.jpg", Size: 4}, {Name: "b.jpg", Size: 6}}
	c := (&app{dataDir: serveFake(t, fb)}).client()
	var seen []core.RefreshProgress
	repos, err := c.syncGroup(context.Background(), "g", func(p core.RefreshProgress) { seen = append(seen, p) })
	if err != nil || len(repos) != 1 || len(repos[0].RefreshedFiles) != 2 {
		t.Fatalf("sync: %+v, %v", repos, err)
	}
	if len(seen) != 2 || seen[0].Files != 2 || seen[1].FilesDone != 2 || seen[1].Done != 10 {
		t.Fatalf("progress lines %+v, want two", seen)
	}
	if _, err := c.syncGroup(context.Background(), "nope", nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("sync of an unknown group: %v", err)
	}
	fb.getErr = errors.New("peer went away")
	var re *remoteError
	if _, err := c.syncGroup(context.Background(), "g", nil); !errors.As(err, &re) || re.status != 500 || !strings.Contains(err.Error(), "peer went away") {
		t.Fatalf("sync that fails after progress: %v", err)
	}
}

// serveFake serves the handler over fb on DIR/dweb.sock and returns DIR.
func serveFake(t *testing.T, fb *fakeBackend) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dweb-cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, socketName))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: httpapi.New(fb, httpapi.Options{})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return dir
}

// TestCLIAgainstFake runs the client commands over a real unix socket.
func TestCLIAgainstFake(t *testing.T) {
	fb := newFake()
	data := serveFake(t, fb)
	cli := func(args ...string) (int, string, string) {
		return runCLI(t, append([]string{"--data", data}, args...)...)
	}
	if code, out, e := cli("group", "create", "photos"); code != 0 || !strings.HasPrefix(out, "created group photos ") {
		t.Fatalf("create: %d %q %q", code, out, e)
	}
	if code, out, e := cli("--json", "group", "list"); code != 0 || !strings.Contains(out, `"name":"photos"`) {
		t.Fatalf("list: %d %q %q", code, out, e)
	}
	if code, out, _ := cli("group", "list"); code != 0 || !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "photos") {
		t.Fatalf("list table: %d %q", code, out)
	}
	if code, out, _ := cli("group", "invite", "photos"); code != 0 || !strings.HasPrefix(out, "save+dweb:") {
		t.Fatalf("invite: %d %q", code, out)
	}
	var n httpapi.NodeInfo
	code, out, _ := cli("--json", "node", "id")
	if code != 0 || json.Unmarshal([]byte(out), &n) != nil || n.Contact != fb.Contact() {
		t.Fatalf("node id: %d %q", code, out)
	}
	// Relative paths are made absolute by the client.
	wd := t.TempDir()
	t.Chdir(wd)
	os.WriteFile("rel.txt", []byte("x"), 0o600)
	if code, out, e := cli("file", "add", "photos", "rel.txt"); code != 0 || !strings.Contains(out, "rel.txt") {
		t.Fatalf("add: %d %q %q", code, out, e)
	}
	if code, out, e := cli("file", "get", "photos", "rel.txt", "-o", "copy.txt"); code != 0 || !strings.Contains(out, filepath.Join(wd, "copy.txt")) {
		t.Fatalf("get: %d %q %q", code, out, e)
	}
	if b, err := os.ReadFile(filepath.Join(wd, "copy.txt")); err != nil || !bytes.Equal(b, []byte("0123456789")) {
		t.Fatalf("copy: %q (%v)", b, err)
	}
	if code, _, e := cli("file", "get", "photos", "missing", "-o", "m"); code != exitError || !strings.Contains(e, "not found") {
		t.Fatalf("get missing: %d %q", code, e)
	}
	if code, _, e := cli("file", "rm", "photos", "rel.txt"); code != 0 {
		t.Fatalf("rm: %d %q", code, e)
	}
	if code, _, e := cli("file", "list", "nope"); code != exitError || e != "dweb: group \"nope\": unknown group\n" {
		t.Fatalf("list unknown: %d %q", code, e)
	}
}

func TestClearStaleSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "dweb-sock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, socketName)
	ctx := context.Background()
	if err := clearStaleSocket(ctx, sock); err != nil {
		t.Fatalf("no socket: %v", err)
	}
	// A live listener: refuse.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := clearStaleSocket(ctx, sock); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Fatalf("live socket: %v", err)
	}
	// A socket file nobody answers on: removed.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket should still exist: %v", err)
	}
	if err := clearStaleSocket(ctx, sock); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale socket not removed: %v", err)
	}
}
