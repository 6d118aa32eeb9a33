package httpapi

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/key"
)

// fuzzBody is one route's body reader as FuzzRequest drives it: read
// runs the route's reader on r and returns what the handler would use,
// and check says what must hold of it (nil: nothing more).
type fuzzBody struct {
	name  string
	read  func(w http.ResponseWriter, r *http.Request) (any, error)
	check func(t *testing.T, v any)
	// encode is the body a client sends for v, which read must take back
	// to a v that encodes the same.
	encode func(v any) any
}

var fuzzBodies = []fuzzBody{
	{
		name:   "name",
		read:   func(w http.ResponseWriter, r *http.Request) (any, error) { return readName(w, r) },
		check:  func(t *testing.T, v any) { nonEmpty(t, "name", v.(string)) },
		encode: func(v any) any { return NameRequest{Name: v.(string)} },
	},
	{
		name: "create_group",
		read: func(w http.ResponseWriter, r *http.Request) (any, error) { return readCreateGroup(w, r) },
		check: func(t *testing.T, v any) {
			nonEmpty(t, "name", v.(CreateGroupRequest).Name)
		},
		encode: func(v any) any { return v },
	},
	{
		name: "join_from_url",
		read: func(w http.ResponseWriter, r *http.Request) (any, error) { return readJoinURL(w, r) },
		check: func(t *testing.T, v any) {
			req := v.(JoinURLRequest)
			nonEmpty(t, "url", req.URL)
			if req.GroupURL != "" {
				t.Fatalf("group_url %q left beside url", req.GroupURL)
			}
		},
		encode: func(v any) any { return v },
	},
	{
		name:   "memberships",
		read:   func(w http.ResponseWriter, r *http.Request) (any, error) { return readMembership(w, r) },
		check:  func(t *testing.T, v any) { nonEmpty(t, "uri", v.(string)) },
		encode: func(v any) any { return MembershipRequest{URI: v.(string)} },
	},
	{
		name: "files",
		read: func(w http.ResponseWriter, r *http.Request) (any, error) { return readAddFiles(w, r) },
		check: func(t *testing.T, v any) {
			paths := v.(AddFilesRequest).Paths
			if len(paths) == 0 {
				t.Fatal("no paths accepted")
			}
			for _, p := range paths {
				if !filepath.IsAbs(p) {
					t.Fatalf("path %q accepted, not absolute", p)
				}
			}
		},
		encode: func(v any) any { return v },
	},
	{
		name: "files/get",
		read: func(w http.ResponseWriter, r *http.Request) (any, error) {
			req, repo, err := readGetFile(w, r)
			return getFileRead{req, repo}, err
		},
		check: func(t *testing.T, v any) {
			g := v.(getFileRead)
			nonEmpty(t, "name", g.req.Name)
			if !filepath.IsAbs(g.req.Out) {
				t.Fatalf("out %q accepted, not absolute", g.req.Out)
			}
			want := key.RecordKey{}
			if g.req.Repo != "" {
				var err error
				if want, err = key.ParseRecordKey(g.req.Repo); err != nil {
					t.Fatalf("repo %q accepted: %v", g.req.Repo, err)
				}
			}
			if g.repo != want {
				t.Fatalf("repo %q accepted as %s", g.req.Repo, g.repo)
			}
			if len(g.req.Version) > maxVersionRef {
				t.Fatalf("version of %d bytes accepted", len(g.req.Version))
			}
		},
		encode: func(v any) any { return v.(getFileRead).req },
	},
	{
		name: "drain",
		read: func(w http.ResponseWriter, r *http.Request) (any, error) { return readDrain(w, r) },
		check: func(t *testing.T, v any) {
			req := v.(DrainRequest)
			if len(req.To) > maxDrainServers || !(req.WaitS >= 0 && req.WaitS <= 24*3600) {
				t.Fatalf("drain request %+v accepted, over its bounds", req)
			}
		},
		encode: func(v any) any { return v },
	},
	{
		name: "files/{name}/restore",
		read: func(w http.ResponseWriter, r *http.Request) (any, error) { return readRestoreFile(w, r) },
		check: func(t *testing.T, v any) {
			req := v.(RestoreFileRequest)
			nonEmpty(t, "version", req.Version)
			if len(req.Version) > maxVersionRef {
				t.Fatalf("version of %d bytes accepted", len(req.Version))
			}
		},
		encode: func(v any) any { return v },
	},
}

type getFileRead struct {
	req  GetFileRequest
	repo key.RecordKey
}

func nonEmpty(t *testing.T, what, s string) {
	if s == "" {
		t.Fatalf("empty %s accepted", what)
	}
}

// fuzzRequest is a request with body b of type ct to a route of r's
// kind; ct "" sends no Content-Type.
func fuzzRequest(ct string, b []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(b))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return r
}

// FuzzRequest fuzzes the HTTP API's readers of request bodies (the
// reader of the route fuzzBodies[kind], as its handler calls it) and of
// the {repo} path value (parseRepoID). They must never panic, and:
//
//   - a body is refused with a status of 400, 413 or 415 on the routes of
//     both kinds (StatusOf, saveStatusOf), never a 5xx: bad input is never
//     the server's fault;
//   - an accepted body was at most maxBodyBytes long and declared
//     application/json (or was empty with no type), and what the handler
//     gets passes the route's checks: a name, url or uri that is there,
//     absolute paths, a repo that is a record key, a drain within its
//     bounds; sent again as a client encodes it, it reads back the same;
//   - a {repo} value is refused with a 400, or is a record key whose text
//     parses back to it.
//
// Seeds and the corpus are bodies as the Save app and the CLI send them
// (the wire.go types, encoded with encoding/json); the seeds add bodies
// of the wrong type and shape. Bodies over the limit are
// TestRequestBodyLimit's: a megabyte input would stall the fuzzer.
func FuzzRequest(f *testing.F) {
	repo := key.RecordKey{0: 0x7e, 31: 0x7f}.String()
	valid := []struct {
		kind int
		v    any
	}{
		{0, NameRequest{Name: "family"}},
		{0, map[string]any{"name": "Tom & Jerry 📷", "extra": true}},
		{1, JoinURLRequest{URL: "save+dweb:?v=1&dht=x"}},
		{1, JoinURLRequest{GroupURL: "save+dweb:?v=1&dht=x"}},
		{2, MembershipRequest{URI: "save+dweb:?v=1&dht=x&name=Family"}},
		{3, AddFilesRequest{Paths: []string{"/home/a/photo.jpg", "/tmp/b c.png"}}},
		{3, AddFilesRequest{Paths: []string{"/srv/archive.tar"}, NoStoreCopy: true}},
		{4, GetFileRequest{Name: "photo.jpg", Out: "/tmp/photo.jpg"}},
		{4, GetFileRequest{Name: "photo.jpg", Repo: repo, Out: "/tmp/photo.jpg"}},
		{5, DrainRequest{}},
		{5, DrainRequest{Group: "family", To: []string{"dweb+admin:?v=1"}, Leave: true, WaitS: 30}},
		{4, GetFileRequest{Name: "photo.jpg", Out: "/tmp/old.jpg", Version: "1"}},
		{6, RestoreFileRequest{Version: "2"}},
		{6, RestoreFileRequest{Version: "0123abcd"}},
	}
	for _, s := range valid {
		b, err := json.Marshal(s.v)
		if err != nil {
			f.Fatal(err)
		}
		fuzzcorpus.Add(f, uint16(s.kind), "application/json", b, repo)
	}
	for _, s := range []struct {
		kind uint16
		ct   string
		body string
		repo string
	}{
		{0, "application/json; charset=utf-8", `{"name":"a"}`, repo},
		{0, "text/plain", `{"name":"a"}`, repo},
		{0, "", `{"name":"a"}`, ""},
		{0, "", ``, "not a key"},
		{0, "application/json", `{"name":""}`, repo[1:]},
		{0, "application/json", `{"name":"a"} {}`, repo + "="},
		{0, "application/json", `{"name":"a"`, strings.ToUpper(repo)},
		{1, "application/json", `{}`, ""},
		{2, "application/json", `{"uri":1}`, ""},
		{3, "application/json", `{"paths":[]}`, ""},
		{3, "application/json", `{"paths":["relative/x"]}`, ""},
		{3, "application/json", `{"paths":["/a"],"x":1}`, ""},
		{4, "application/json", `{"name":"a","out":"rel"}`, ""},
		{4, "application/json", `{"name":"a","out":"/o","repo":"x"}`, ""},
		{5, "", ``, ""},
		{6, "application/json", `{}`, ""},
		{6, "application/json", `{"version":1}`, ""},
		{5, "application/json", `{"wait_s":-1}`, ""},
		{5, "application/json", `{"wait_s":1e300}`, ""},
		{5, "application/json", `{"to":["a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a"]}`, ""},
		{5, "application/json", `null`, ""},
	} {
		f.Add(s.kind, s.ct, []byte(s.body), s.repo)
	}

	f.Fuzz(func(t *testing.T, kind uint16, ct string, b []byte, repoID string) {
		if rk, err := parseRepoID(repoID); err != nil {
			if c := StatusOf(err); c != http.StatusBadRequest {
				t.Fatalf("repo id %q refused with %d, want 400: %v", repoID, c, err)
			}
		} else if again, err := key.ParseRecordKey(rk.String()); err != nil || again != rk {
			t.Fatalf("repo id %q parsed as %s, which parses to %s, %v", repoID, rk, again, err)
		}

		fb := fuzzBodies[int(kind)%len(fuzzBodies)]
		r := fuzzRequest(ct, b)
		v, err := fb.read(httptest.NewRecorder(), r)
		if err != nil {
			for _, code := range []int{StatusOf(err), saveStatusOf(err)} {
				if code != http.StatusBadRequest && code != http.StatusRequestEntityTooLarge && code != http.StatusUnsupportedMediaType {
					t.Fatalf("%s body refused with %d: %v", fb.name, code, err)
				}
			}
			return
		}
		if len(b) > maxBodyBytes {
			t.Fatalf("%s body of %d bytes accepted, over maxBodyBytes", fb.name, len(b))
		}
		if mt, _, merr := mime.ParseMediaType(ct); len(b) > 0 && (merr != nil || mt != "application/json") {
			t.Fatalf("%s body of type %q accepted", fb.name, ct)
		}
		fb.check(t, v)
		enc, err := json.Marshal(fb.encode(v))
		if err != nil {
			t.Fatalf("%s: %+v does not encode: %v", fb.name, v, err)
		}
		again, err := fb.read(httptest.NewRecorder(), fuzzRequest("application/json", enc))
		if err != nil {
			t.Fatalf("%s: %+v sent as %s is refused: %v", fb.name, v, enc, err)
		}
		if enc2, err := json.Marshal(fb.encode(again)); err != nil || !bytes.Equal(enc2, enc) {
			t.Fatalf("%s: %+v sent as %s reads back as %+v", fb.name, v, enc, again)
		}
	})
}

// TestRequestBodyLimit: a body over maxBodyBytes is refused with 413 by
// every reader, even when it is one valid object.
func TestRequestBodyLimit(t *testing.T) {
	big := []byte(`{"name":"` + strings.Repeat("a", maxBodyBytes) + `"}`)
	for _, fb := range fuzzBodies {
		_, err := fb.read(httptest.NewRecorder(), fuzzRequest("application/json", big))
		if c := StatusOf(err); c != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: %d-byte body: status %d, %v", fb.name, len(big), c, err)
		}
	}
}
