package abi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/uri"
)

type resp struct {
	Result json.RawMessage `json:"result"`
	Error  *ErrorJSON      `json:"error"`
}

func mustCall(t *testing.T, h int64, method, params string, out any) {
	t.Helper()
	var r resp
	raw := Call(h, method, []byte(params))
	if err := json.Unmarshal(raw, &r); err != nil || r.Error != nil {
		t.Fatalf("%s %s: %s", method, params, raw)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result, out); err != nil {
			t.Fatalf("%s result %s: %v", method, r.Result, err)
		}
	}
}

func wantCode(t *testing.T, h int64, method, params string, code Code) {
	t.Helper()
	var r resp
	raw := Call(h, method, []byte(params))
	if err := json.Unmarshal(raw, &r); err != nil || r.Error == nil || r.Error.Code != code {
		t.Errorf("%s %q = %s, want code %s", method, params, raw, code)
	}
}

func newNode(t *testing.T, dir string, boot ...string) int64 {
	t.Helper()
	cfg, _ := json.Marshal(Config{DataDir: dir, Listen: "127.0.0.1:0", DeviceName: filepath.Base(dir), Bootstrap: boot})
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// recorder collects a node's events.
type recorder struct {
	mu   sync.Mutex
	evs  []map[string]any
	cond *sync.Cond
}

func newRecorder() *recorder {
	r := &recorder{}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *recorder) sink(b []byte) {
	var m map[string]any
	json.Unmarshal(b, &m)
	r.mu.Lock()
	r.evs = append(r.evs, m)
	r.cond.Broadcast()
	r.mu.Unlock()
}

// final waits for the op.done or op.failed event of op.
func (r *recorder) final(t *testing.T, op int64) map[string]any {
	t.Helper()
	deadline := time.AfterFunc(60*time.Second, func() { r.mu.Lock(); r.cond.Broadcast(); r.mu.Unlock() })
	defer deadline.Stop()
	start := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		for _, e := range r.evs {
			if e["op"] == float64(op) && (e["type"] == "op.done" || e["type"] == "op.failed") {
				return e
			}
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("no final event for op %d", op)
		}
		r.cond.Wait()
	}
}

// TestShareThroughABI runs the C test's main path through the Go half of
// the ABI: two nodes on loopback, a group, an invite, a download with
// progress events, a buffer read with ERANGE, and nothing left after Close.
func TestShareThroughABI(t *testing.T) {
	tmp := t.TempDir()
	a := newNode(t, filepath.Join(tmp, "alice"))
	var id struct{ Contact string }
	mustCall(t, a, "node.id", "{}", &id)
	b := newNode(t, filepath.Join(tmp, "bob"), id.Contact)
	rec := newRecorder()
	if err := SetEventSink(b, rec.sink, false); err != nil {
		t.Fatal(err)
	}

	var g struct{ Key string }
	mustCall(t, a, "group.create", `{"name":"family"}`, &g)
	data := make([]byte, 200<<10)
	rand.Read(data)
	src := filepath.Join(tmp, "photo.bin")
	os.WriteFile(src, data, 0o600)
	mustCall(t, a, "file.add", fmt.Sprintf(`{"group":%q,"path":%q}`, g.Key, src), nil)
	res := AddBytes(a, []byte(`{"group":"family","name":"note.txt"}`), []byte("hello"))
	if !bytes.HasPrefix(res, []byte(`{"result":`)) {
		t.Fatalf("AddBytes: %s", res)
	}
	var inv struct{ URI string }
	mustCall(t, a, "group.invite", fmt.Sprintf(`{"group":%q}`, g.Key), &inv)
	mustCall(t, b, "group.join", fmt.Sprintf(`{"uri":%q}`, inv.URI), nil)

	dst := filepath.Join(tmp, "copy.bin")
	var op struct{ Op int64 }
	mustCall(t, b, "sync.download", fmt.Sprintf(`{"group":%q,"name":"photo.bin","path":%q}`, g.Key, dst), &op)
	if e := rec.final(t, op.Op); e["type"] != "op.done" {
		t.Fatalf("download ended with %v", e)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded bytes differ (%v)", err)
	}
	rec.mu.Lock()
	var last map[string]any
	for _, e := range rec.evs {
		if e["type"] == "op.progress" && e["op"] == float64(op.Op) {
			last = e
		}
	}
	rec.mu.Unlock()
	if last == nil || last["done"] != float64(len(data)) || last["total"] != float64(len(data)) {
		t.Fatalf("last progress event %v", last)
	}

	params := []byte(`{"group":"family","name":"note.txt"}`)
	if n, err := ReadInto(b, params, make([]byte, 2)); CodeOf(err) != CodeRange || n != 5 {
		t.Fatalf("ReadInto small = %d, %v", n, err)
	}
	buf := make([]byte, 10)
	if n, err := ReadInto(b, params, buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("ReadInto = %d %q, %v", n, buf[:n], err)
	}

	// sync.fetch brings every file bob lacks, with progress over all of them.
	more, more2 := make([]byte, 100<<10), make([]byte, 2<<20)
	rand.Read(more)
	rand.Read(more2)
	var paths []string
	for name, d := range map[string][]byte{"more.bin": more, "more2.bin": more2} {
		p := filepath.Join(tmp, name)
		os.WriteFile(p, d, 0o600)
		paths = append(paths, p)
	}
	for _, p := range paths {
		mustCall(t, a, "file.add", fmt.Sprintf(`{"group":%q,"path":%q}`, g.Key, p), nil)
	}
	mustCall(t, b, "sync.fetch", `{"group":"family"}`, &op)
	e := rec.final(t, op.Op)
	var repos []struct {
		Name    string   `json:"name"`
		Fetched []string `json:"refreshed_files"`
		Failed  []string `json:"failed_files"`
	}
	if raw, err := json.Marshal(e["result"]); err != nil || e["type"] != "op.done" || json.Unmarshal(raw, &repos) != nil {
		t.Fatalf("sync.fetch ended with %v", e)
	}
	var fetched []string
	for _, r := range repos {
		fetched = append(fetched, r.Fetched...)
		if len(r.Failed) > 0 {
			t.Fatalf("sync.fetch failed files %v", r.Failed)
		}
	}
	slices.Sort(fetched)
	if !slices.Equal(fetched, []string{"more.bin", "more2.bin"}) {
		t.Fatalf("sync.fetch fetched %v, want more.bin and more2.bin", fetched)
	}
	rec.mu.Lock()
	last = nil
	for _, e := range rec.evs {
		if e["type"] == "op.progress" && e["op"] == float64(op.Op) {
			last = e
		}
	}
	rec.mu.Unlock()
	if want := float64(len(more) + len(more2)); last == nil || last["done"] != want || last["total"] != want {
		t.Fatalf("last sync.fetch progress %v, want %v of %v", last, want, want)
	}

	// A second refresh after alice deletes a file reports group.changed
	// (photo.bin, more.bin and more2.bin are left).
	mustCall(t, b, "sync.refresh", `{"group":"family"}`, &op)
	rec.final(t, op.Op)
	// The delete returns once alice stored it; its publication follows in
	// the background, so bob refreshes until he sees it.
	mustCall(t, a, "file.delete", `{"group":"family","name":"note.txt"}`, nil)
	changed := false
	for deadline := time.Now().Add(10 * time.Second); !changed && time.Now().Before(deadline); {
		mustCall(t, b, "sync.refresh", `{"group":"family"}`, &op)
		rec.final(t, op.Op)
		rec.mu.Lock()
		for _, e := range rec.evs {
			changed = changed || (e["type"] == "group.changed" && e["files"] == float64(3))
		}
		rec.mu.Unlock()
	}
	if !changed {
		t.Error("no group.changed event after a file was deleted")
	}

	for _, h := range []int64{a, b} {
		if err := Close(h); err != nil {
			t.Fatal(err)
		}
	}
	if s := GetStats(); s.Handles != 0 || s.Operations != 0 {
		t.Fatalf("after Close: %+v", s)
	}
}

// waitFor waits up to d for an event that keep accepts and returns it.
func (r *recorder) waitFor(t *testing.T, d time.Duration, what string, keep func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.AfterFunc(d, func() { r.mu.Lock(); r.cond.Broadcast(); r.mu.Unlock() })
	defer deadline.Stop()
	start := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		for _, e := range r.evs {
			if keep(e) {
				return e
			}
		}
		if time.Since(start) >= d {
			t.Fatalf("no %s event within %v", what, d)
		}
		r.cond.Wait()
	}
}

// TestCoreEventsThroughABI: the node's events reach the callback as they
// happen, in the JSON of GET /dweb/v1/events with "type" set to the kind:
// a file alice adds is a file.added on bob within a second of her call
// returning, with its name and hash; its removal a file.removed. Alice's
// node is peer.reachable on bob as he fetches her collection, and
// peer.unreachable when she closes.
func TestCoreEventsThroughABI(t *testing.T) {
	tmp := t.TempDir()
	a := newNode(t, filepath.Join(tmp, "alice"))
	defer Close(a)
	var id struct{ Contact string }
	mustCall(t, a, "node.id", "{}", &id)
	b := newNode(t, filepath.Join(tmp, "bob"), id.Contact)
	defer Close(b)
	rec := newRecorder()
	if err := SetEventSink(b, rec.sink, false); err != nil {
		t.Fatal(err)
	}
	var g struct{ Key string }
	mustCall(t, a, "group.create", `{"name":"family"}`, &g)
	var inv struct{ URI string }
	mustCall(t, a, "group.invite", fmt.Sprintf(`{"group":%q}`, g.Key), &inv)
	mustCall(t, b, "group.join", fmt.Sprintf(`{"uri":%q}`, inv.URI), nil)
	// bob's watch on alice's repo is up once her (empty) repo is told.
	rec.waitFor(t, 15*time.Second, "repo.changed of alice's repo", func(e map[string]any) bool {
		p, _ := e["payload"].(map[string]any)
		return e["type"] == "repo.changed" && p["mine"] == false
	})

	src := filepath.Join(tmp, "photo.jpg")
	os.WriteFile(src, []byte("not really a jpeg"), 0o600)
	var fi struct{ Hash string }
	mustCall(t, a, "file.add", fmt.Sprintf(`{"group":%q,"path":%q}`, g.Key, src), &fi)
	isFile := func(kind string) func(map[string]any) bool {
		return func(e map[string]any) bool {
			p, _ := e["payload"].(map[string]any)
			return e["type"] == kind && p["name"] == "photo.jpg"
		}
	}
	e := rec.waitFor(t, time.Second, "file.added", isFile("file.added"))
	p := e["payload"].(map[string]any)
	if e["kind"] != "file.added" || e["group"] != g.Key || p["hash"] != fi.Hash || p["mine"] != false || e["id"] == nil {
		t.Fatalf("file.added event %v, want hash %s", e, fi.Hash)
	}
	mustCall(t, a, "file.delete", fmt.Sprintf(`{"group":%q,"name":"photo.jpg"}`, g.Key), nil)
	if e := rec.waitFor(t, time.Second, "file.removed", isFile("file.removed")); e["payload"].(map[string]any)["hash"] != fi.Hash {
		t.Fatalf("file.removed event %v", e)
	}
	var aid struct {
		NodeID string `json:"node_id"`
	}
	mustCall(t, a, "node.id", "{}", &aid)
	isPeer := func(kind, reason string) func(map[string]any) bool {
		return func(e map[string]any) bool {
			p, _ := e["payload"].(map[string]any)
			return e["type"] == kind && p["node"] == aid.NodeID && p["reason"] == reason && e["group"] == g.Key
		}
	}
	rec.waitFor(t, time.Second, "peer.reachable of alice", isPeer("peer.reachable", "tunnel"))
	if err := Close(a); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 5*time.Second, "peer.unreachable of alice", isPeer("peer.unreachable", "shutdown"))
}

// TestBadInput checks that malformed input gets its code, never a panic,
// and that a panicking method becomes an "internal" error.
func TestBadInput(t *testing.T) {
	for _, cfg := range []string{"", "{", "[]", "{}", `{"data_dir":"x","zzz":1}`, "\xff", `{"data_dir":"/x","call_timeout_ms":-1}`} {
		if h, err := New([]byte(cfg)); err == nil {
			Close(h)
			t.Errorf("New(%q) succeeded", cfg)
		}
	}
	if _, err := New(bytes.Repeat([]byte(" "), MaxInput+1)); CodeOf(err) != CodeTooLarge {
		t.Errorf("oversized config: %v", err)
	}
	h := newNode(t, t.TempDir())
	defer Close(h)
	wantCode(t, 12345678, "node.id", "{}", CodeUnknownHandle)
	wantCode(t, h, "nope", "{}", CodeUnknownMethod)
	wantCode(t, h, "node.id", "", CodeInvalidJSON)
	wantCode(t, h, "node.id", "\xff", CodeInvalidUTF8)
	wantCode(t, h, "node.id", `{"x":1}`, CodeBadParams)
	wantCode(t, h, "group.join", `{"uri":"save+dweb:nonsense"}`, CodeBadInput)
	wantCode(t, h, "group.get", `{"group":"missing"}`, CodeNotFound)
	wantCode(t, h, "op.cancel", `{"op":99999}`, CodeNotFound)
	// Params are checked before the group is looked up, and op.start's
	// method's params before the operation starts.
	wantCode(t, h, "file.read", `{"group":"missing","path":"/tmp/x"}`, CodeBadParams)
	wantCode(t, h, "op.start", `{"method":"group.get","params":{"x":1}}`, CodeBadParams)
	wantCode(t, h, "op.start", `{"method":"group.get"}`, CodeBadParams)
	wantCode(t, h, "op.start", `{"method":"sync.refresh","params":{"group":"g"}}`, CodeBadParams)
	wantCode(t, h, "op.start", `{"method":"nope"}`, CodeUnknownMethod)
	wantCode(t, h, "node.id", strings.Repeat(" ", MaxInput+1), CodeTooLarge)

	methods["test.panic"] = def(parseNone, func(context.Context, *node, noParams) (any, error) { panic("boom") })
	defer delete(methods, "test.panic")
	wantCode(t, h, "test.panic", "{}", CodeInternal)
	rec := newRecorder()
	SetEventSink(h, rec.sink, false)
	var op struct{ Op int64 }
	mustCall(t, h, "op.start", `{"method":"test.panic"}`, &op)
	if e := rec.final(t, op.Op); e["type"] != "op.failed" || e["error"].(map[string]any)["code"] != string(CodeInternal) {
		t.Fatalf("panicking op ended with %v", e)
	}
	if msg, err := LastError(h); err != nil || !strings.Contains(msg, "boom") {
		t.Errorf("LastError = %q, %v", msg, err)
	}
}

// TestCloseCancelsOperations starts an operation that blocks until its
// context ends and checks that Close cancels it and reports it.
func TestCloseCancelsOperations(t *testing.T) {
	h := newNode(t, t.TempDir())
	rec := newRecorder()
	SetEventSink(h, rec.sink, false)
	methods["test.block"] = def(parseNone, func(ctx context.Context, _ *node, _ noParams) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	defer delete(methods, "test.block")
	var op struct{ Op int64 }
	mustCall(t, h, "op.start", `{"method":"test.block"}`, &op)
	if s := GetStats(); s.Operations != 1 {
		t.Fatalf("stats %+v, want 1 operation", s)
	}
	if err := Close(h); err != nil {
		t.Fatal(err)
	}
	e := rec.final(t, op.Op)
	if e["type"] != "op.failed" || e["error"].(map[string]any)["code"] != string(CodeCancelled) {
		t.Fatalf("op ended with %v", e)
	}
	if s := GetStats(); s.Handles != 0 || s.Operations != 0 {
		t.Fatalf("after Close: %+v", s)
	}
}

// TestRepoNamesThroughABI names repos through the JSON calls: at create
// and join (repo_name), by repo.rename, and after the device (device_name
// of the config, kept across dweb_new calls; "dweb device" when never
// set). Two members named "phone" list apart by key; bad names are
// bad_input and change nothing.
func TestRepoNamesThroughABI(t *testing.T) {
	tmp := t.TempDir()
	a := newNode(t, filepath.Join(tmp, "alice"))
	defer Close(a)
	var id struct {
		Contact    string
		DeviceName string `json:"device_name"`
	}
	mustCall(t, a, "node.id", "{}", &id)
	b := newNode(t, filepath.Join(tmp, "bob"), id.Contact)
	defer Close(b)
	cDir := filepath.Join(tmp, "carol")
	openC := func(device string) int64 {
		t.Helper()
		cfg, _ := json.Marshal(map[string]any{"data_dir": cDir, "listen": "127.0.0.1:0", "bootstrap": []string{id.Contact}, "device_name": device})
		h, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	deviceName := func(h int64) string {
		t.Helper()
		mustCall(t, h, "node.id", "{}", &id)
		return id.DeviceName
	}
	c := openC("")
	if n := deviceName(c); n != "dweb device" {
		t.Fatalf("device name of a node never given one: %q", n)
	}

	type group struct {
		Key  string
		Repo string `json:"repo_key"`
	}
	var g, gb, gc group
	mustCall(t, a, "group.create", `{"name":"family","repo_name":"desk"}`, &g)
	var inv struct{ URI string }
	mustCall(t, a, "group.invite", fmt.Sprintf(`{"group":%q}`, g.Key), &inv)
	for _, bad := range []string{"a/b", "..", "nul\x00", strings.Repeat("x", 256)} {
		params, _ := json.Marshal(map[string]string{"uri": inv.URI, "repo_name": bad})
		wantCode(t, c, "group.join", string(params), CodeBadInput)
	}
	wantCode(t, c, "group.create", `{"name":"x","repo_name":"a/b"}`, CodeBadInput)
	var groups []group
	if mustCall(t, c, "group.list", "{}", &groups); len(groups) != 0 {
		t.Fatalf("carol is in %+v after bad names", groups)
	}
	mustCall(t, b, "group.join", fmt.Sprintf(`{"uri":%q,"repo_name":"phone"}`, inv.URI), &gb)
	mustCall(t, c, "group.join", fmt.Sprintf(`{"uri":%q,"repo_name":"phone"}`, inv.URI), &gc)

	type repo struct {
		Key      string
		Name     string
		CanWrite bool `json:"can_write"`
	}
	want := map[string]string{g.Repo: "desk", gb.Repo: "phone", gc.Repo: "phone"}
	listedAsWanted := func(h int64, own string) bool {
		t.Helper()
		var rs []repo
		mustCall(t, h, "repo.list", fmt.Sprintf(`{"group":%q}`, g.Key), &rs)
		if len(rs) != len(want) {
			return false
		}
		for _, r := range rs {
			if want[r.Key] != r.Name || r.CanWrite != (r.Key == own) {
				return false
			}
		}
		return true
	}
	waitList := func(h int64, own, what string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !listedAsWanted(h, own); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitList(a, g.Repo, "alice listing desk and two phones")
	waitList(b, gb.Repo, "bob listing desk and two phones")

	var r repo
	mustCall(t, b, "repo.rename", fmt.Sprintf(`{"group":%q,"name":"bob's phone"}`, g.Key), &r)
	if r.Key != gb.Repo || r.Name != "bob's phone" || !r.CanWrite {
		t.Fatalf("repo.rename answered %+v", r)
	}
	wantCode(t, b, "repo.rename", fmt.Sprintf(`{"group":%q,"name":"a/b"}`, g.Key), CodeBadInput)
	wantCode(t, b, "repo.rename", fmt.Sprintf(`{"group":%q,"name":""}`, g.Key), CodeBadInput)
	wantCode(t, b, "repo.rename", `{"name":"x"}`, CodeBadParams)
	wantCode(t, b, "repo.rename", `{"group":"missing","name":"x"}`, CodeNotFound)
	wantCode(t, b, "repo.list", `{"group":"family","x":1}`, CodeBadParams)
	want[gb.Repo] = "bob's phone"
	waitList(a, g.Repo, "alice seeing bob's new name")
	waitList(c, gc.Repo, "carol seeing bob's new name")

	// device_name is kept by the node: a later dweb_new without it keeps it.
	if err := Close(c); err != nil {
		t.Fatal(err)
	}
	c = openC("Carol's phone")
	Close(c)
	if _, err := New([]byte(fmt.Sprintf(`{"data_dir":%q,"device_name":"a/b"}`, cDir))); CodeOf(err) != CodeBadInput {
		t.Fatalf("dweb_new with a bad device_name: %v", err)
	}
	c = openC("")
	defer Close(c)
	if n := deviceName(c); n != "Carol's phone" {
		t.Fatalf("device name after reopening without one: %q, want the saved one", n)
	}
}

// TestNodeContact: node.contact answers a contact code that parses, the
// same on every call, and refuses params.
func TestNodeContact(t *testing.T) {
	a := newNode(t, filepath.Join(t.TempDir(), "alice"))
	var c1, c2 struct{ Contact string }
	mustCall(t, a, "node.contact", "{}", &c1)
	mustCall(t, a, "node.contact", "{}", &c2)
	if _, err := uri.ParseContact(c1.Contact); err != nil || c2.Contact != c1.Contact {
		t.Fatalf("node.contact: %q then %q: %v", c1.Contact, c2.Contact, err)
	}
	wantCode(t, a, "node.contact", `{"x":1}`, CodeBadParams)
}

// TestPauseResumeMethods: node.pause and node.resume answer the node's
// state, twice in a row as once; while paused a new group is refused
// with code "paused" and the files listed from the store;
// node.network_changed answers in either state.
func TestPauseResumeMethods(t *testing.T) {
	h := newNode(t, filepath.Join(t.TempDir(), "phone"))
	defer Close(h)
	var g struct{ Key string }
	mustCall(t, h, "group.create", `{"name":"g"}`, &g)
	var st struct {
		Paused *bool `json:"paused"`
	}
	for range 2 {
		mustCall(t, h, "node.pause", "{}", &st)
		if st.Paused == nil || !*st.Paused {
			t.Fatalf("node.pause answered %+v", st)
		}
	}
	mustCall(t, h, "node.network_changed", "{}", nil)
	wantCode(t, h, "group.create", `{"name":"other"}`, CodePaused)
	var files []any
	mustCall(t, h, "file.list", fmt.Sprintf(`{"group":%q}`, g.Key), &files)
	for range 2 {
		mustCall(t, h, "node.resume", "{}", &st)
		if st.Paused == nil || *st.Paused {
			t.Fatalf("node.resume answered %+v", st)
		}
	}
	mustCall(t, h, "node.network_changed", "{}", nil)
	mustCall(t, h, "group.create", `{"name":"other"}`, nil)
	wantCode(t, h, "node.pause", `{"x":1}`, CodeBadParams)
}
