package abi

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/key"
)

// FuzzParams fuzzes dweb_call's method name and params JSON up to the
// node: parseCall, which Call runs before it enters the node (the method
// table, the JSON check, the method's parse), and Call itself on a handle
// that is not open. It must never panic, and:
//
//   - a refusal's code is unknown_method (the name, or op.start's method,
//     is not in the table), invalid_json (only for params that are not
//     JSON), bad_params or bad_input: never internal or failed, since no
//     node was involved;
//   - accepted params hold what the method's run relies on: a group
//     where one is required, a uri, a name, one of file.add's two forms
//     with a name that is one path element, an absolute path and a repo
//     that is a record key for file.read and sync.download, and for
//     op.start a synchronous method with its params parsed;
//   - accepted params sent again as JSON parse to the same params;
//   - Call on a handle that is not open answers one JSON error, of code
//     unknown_handle unless the strings themselves are refused.
//
// Seeds and the corpus are the params docs/ffi.md gives for each method,
// encoded with encoding/json; the seeds add broken ones.
func FuzzParams(f *testing.F) {
	repo := key.RecordKey{0: 0x33, 31: 0x44}.String()
	for _, s := range []struct {
		method string
		params any
	}{
		{"node.id", struct{}{}},
		{"node.peers", struct{}{}},
		{"group.create", createParams{Name: "family"}},
		{"group.join", joinParams{URI: "save+dweb:?v=1&dht=x"}},
		{"group.list", struct{}{}},
		{"group.get", groupParams{Group: "family"}},
		{"group.invite", groupParams{Group: repo}},
		{"group.leave", groupParams{Group: "family"}},
		{"repo.list", groupParams{Group: "family"}},
		{"repo.rename", renameParams{Group: "family", Name: "phone"}},
		{"group.create", createParams{Name: "family", RepoName: "phone"}},
		{"group.join", joinParams{URI: "save+dweb:?v=1&dht=x", RepoName: "phone"}},
		{"file.add", map[string]string{"group": "family", "path": "/sdcard/DCIM/photo.jpg"}},
		{"file.add", map[string]any{"group": "family", "name": "note.txt", "data": []byte("hello")}},
		{"file.add", map[string]any{"group": "family", "path": "/srv/archive.tar", "no_store_copy": true}},
		{"file.list", groupParams{Group: "family"}},
		{"file.read", map[string]string{"group": "family", "name": "photo.jpg", "path": "/tmp/photo.jpg"}},
		{"file.read", map[string]string{"group": "family", "name": "photo.jpg", "repo": repo, "path": "/tmp/photo.jpg"}},
		{"file.delete", fileDeleteParams{Group: "family", Name: "photo.jpg"}},
		{"file.history", map[string]string{"group": "family", "name": "photo.jpg"}},
		{"file.read", map[string]string{"group": "family", "name": "photo.jpg", "path": "/tmp/old.jpg", "version": "1"}},
		{"file.restore", fileRestoreParams{Group: "family", Name: "photo.jpg", Version: "0123abcd"}},
		{"sync.refresh", groupParams{Group: "family"}},
		{"sync.download", map[string]string{"group": "family", "name": "photo.jpg", "path": "/tmp/p.jpg"}},
		{"sync.fetch", groupParams{Group: "family"}},
		{"sync.status", struct{}{}},
		{"sync.status", groupParams{Group: "family"}},
		{"op.start", map[string]any{"method": "file.list", "params": groupParams{Group: "family"}}},
		{"op.start", map[string]any{"method": "group.list"}},
		{"op.cancel", opCancelParams{Op: 7}},
	} {
		b, err := json.Marshal(s.params)
		if err != nil {
			f.Fatal(err)
		}
		fuzzcorpus.Add(f, s.method, b)
	}
	for _, s := range [][2]string{
		{"node.id", `{"x":1}`},
		{"node.id", ``},
		{"node.id", `null`},
		{"node.id", "\xff"},
		{"nope", `{}`},
		{"group.join", `{"uri":""}`},
		{"group.get", `{}`},
		{"group.get", `{"group":1}`},
		{"file.add", `{"group":"g","path":"/a","name":"b"}`},
		{"file.add", `{"group":"g","name":"a/b","data":""}`},
		{"file.add", `{"group":"g","name":"..","data":"aGk="}`},
		{"file.add", `{"group":"g","data":"!!"}`},
		{"file.add", `{"group":"g"}`},
		{"file.add", `{"group":"g","name":"a","data":"aGk=","no_store_copy":true}`},
		{"file.read", `{"group":"g","name":"a","path":"rel"}`},
		{"file.read", `{"group":"g","name":"a","path":"/o","repo":"x"}`},
		{"file.read", `{"group":"g","path":"/o"}`},
		{"sync.download", `{"group":"g","name":"a"}`},
		{"file.read", `{"group":"g","name":"a","path":"/o","version":"x"}`},
		{"file.history", `{"group":"g","name":"a","version":"1"}`},
		{"file.restore", `{"group":"g","name":"a"}`},
		{"op.start", `{"method":"sync.fetch","params":{"group":"g"}}`},
		{"op.start", `{"method":"op.start","params":{"method":"node.id"}}`},
		{"op.start", `{"method":"group.get","params":{"x":1}}`},
		{"op.start", `{"method":"node.id","params":[]}`},
		{"op.cancel", `{"op":1e99}`},
		{"op.cancel", `{"op":"1"}`},
		{"group.get", `{"group":"g"} {}`},
		{"group.get", strings.Repeat("[", 600)},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, name string, params []byte) {
		if raw := Call(-1, name, params); !json.Valid(raw) {
			t.Fatalf("Call answered %q, not JSON", raw)
		} else {
			var r struct{ Error *ErrorJSON }
			json.Unmarshal(raw, &r)
			if r.Error == nil || (r.Error.Code != CodeUnknownHandle && r.Error.Code != CodeInvalidUTF8 && r.Error.Code != CodeTooLarge) {
				t.Fatalf("Call on no handle answered %s", raw)
			}
		}
		if CheckString("method", []byte(name)) != nil || CheckString("params", params) != nil {
			return // Call refuses these before anything else
		}
		m, q, err := parseCall(name, params)
		if err != nil {
			switch code := CodeOf(err); code {
			case CodeUnknownMethod:
				if _, ok := methods[name]; ok && name != "op.start" {
					t.Fatalf("%s: unknown_method for a method in the table: %v", name, err)
				}
			case CodeInvalidJSON:
				if json.Valid(params) {
					t.Fatalf("%s: invalid_json for valid JSON %q", name, params)
				}
			case CodeBadParams, CodeBadInput:
			default:
				t.Fatalf("%s: params %q refused with code %s: %v", name, params, code, err)
			}
			return
		}
		checkParams(t, name, q)
		enc, err := json.Marshal(q)
		if err != nil {
			t.Fatalf("%s: %+v does not encode: %v", name, q, err)
		}
		m2, q2, err := parseCall(name, enc)
		if err != nil || m2.long != m.long || !sameParams(q, q2) {
			t.Fatalf("%s: %+v sent again as %s parses to %+v, %v", name, q, enc, q2, err)
		}
	})
}

// checkParams checks what the run of method name relies on in q.
func checkParams(t *testing.T, name string, q any) {
	t.Helper()
	switch q := q.(type) {
	case noParams, createParams, opCancelParams:
	case joinParams:
		if q.URI == "" {
			t.Fatalf("%s: empty uri accepted", name)
		}
	case groupParams:
		if q.Group == "" && name != "sync.status" {
			t.Fatalf("%s: no group accepted", name)
		}
	case fileAddParams:
		byPath := q.Path != "" && q.Data == nil && q.Name == ""
		byData := q.Path == "" && q.Data != nil && checkBaseName(q.Name) == nil && !q.NoStoreCopy
		if q.Group == "" || byPath == byData {
			t.Fatalf("%s: %+v accepted", name, q)
		}
	case renameParams:
		if q.Group == "" {
			t.Fatalf("%s: %+v accepted", name, q)
		}
	case fileDeleteParams:
		if q.Group == "" || q.Name == "" {
			t.Fatalf("%s: %+v accepted", name, q)
		}
	case fileTarget:
		if q.Group == "" || q.Name == "" || (name == "file.history") != (q.Path == "") || (q.Path != "" && !filepath.IsAbs(q.Path)) {
			t.Fatalf("%s: %+v accepted", name, q)
		}
		if _, err := datarepo.ParseVersionRef(q.Version); q.Version != "" && (err != nil || name == "file.history") {
			t.Fatalf("%s: version %q accepted: %v", name, q.Version, err)
		}
		want := key.RecordKey{}
		if q.Repo != "" {
			var err error
			if want, err = key.ParseRecordKey(q.Repo); err != nil {
				t.Fatalf("%s: repo %q accepted: %v", name, q.Repo, err)
			}
		}
		if q.repo != want {
			t.Fatalf("%s: repo %q parsed as %s", name, q.Repo, q.repo)
		}
	case fileRestoreParams:
		if _, err := datarepo.ParseVersionRef(q.Version); q.Group == "" || q.Name == "" || err != nil {
			t.Fatalf("%s: %+v accepted (%v)", name, q, err)
		}
	case opStartParams:
		m, ok := methods[q.Method]
		if !ok || m.long || q.m.long || q.m.run == nil {
			t.Fatalf("%s: method %q accepted", name, q.Method)
		}
		checkParams(t, q.Method, q.q)
	default:
		t.Fatalf("%s: params of type %T", name, q)
	}
}

// sameParams compares parsed params; op.start's by its method and its
// method's parsed params (the method entry holds functions).
func sameParams(a, b any) bool {
	sa, ok := a.(opStartParams)
	if !ok {
		return reflect.DeepEqual(a, b)
	}
	sb, ok := b.(opStartParams)
	return ok && sa.Method == sb.Method && sameParams(sa.q, sb.q)
}
