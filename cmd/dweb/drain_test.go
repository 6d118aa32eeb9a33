package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
)

type fakeDrain struct {
	got   core.DrainOptions
	calls int
}

func (f *fakeDrain) ResolveGroup(s string) (core.GroupInfo, error) {
	if s != "newsroom" {
		return core.GroupInfo{}, core.ErrUnknownGroup
	}
	return core.GroupInfo{ID: key.RecordKey{1}, Name: s}, nil
}

func (f *fakeDrain) Drain(ctx context.Context, opts core.DrainOptions) (core.DrainReport, error) {
	f.got = opts
	f.calls++
	return core.DrainReport{Complete: true, Groups: []core.DrainGroup{{Group: key.RecordKey{1}, Name: "newsroom", Checked: 3, HeldElsewhere: 2, HandedOver: 1, Complete: true, Left: opts.Leave}}}, nil
}

// TestDrainRoute: POST /dweb/v1/drain resolves the group, passes the
// options on and answers the report; bad bodies are 400, unknown groups
// 404, and other paths reach the API behind.
func TestDrainRoute(t *testing.T) {
	f := &fakeDrain{}
	h := withDrainRoutes(f, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	do := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	rec := do("POST", drainPath, `{"group":"newsroom","to":["dweb+admin:?x"],"leave":true,"wait_s":2.5}`)
	var rep core.DrainReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); rec.Code != 200 || err != nil || !rep.Complete || rep.Groups[0].HandedOver != 1 || !rep.Groups[0].Left {
		t.Fatalf("drain: %d %s", rec.Code, rec.Body)
	}
	if f.got.Group != (key.RecordKey{1}) || !f.got.Leave || len(f.got.To) != 1 || f.got.Wait != 2500*time.Millisecond {
		t.Fatalf("options %+v", f.got)
	}
	if rec := do("POST", drainPath, ""); rec.Code != 200 || f.got.Group != (key.RecordKey{}) {
		t.Fatalf("empty body: %d %s %+v", rec.Code, rec.Body, f.got)
	}
	for body, code := range map[string]int{`{"group":"other"}`: 404, `{"nope":1}`: 400, `{"wait_s":-1}`: 400, `[`: 400} {
		if rec := do("POST", drainPath, body); rec.Code != code || !strings.Contains(rec.Body.String(), `"status":"error"`) {
			t.Fatalf("%s: %d %s, want %d", body, rec.Code, rec.Body, code)
		}
	}
	if rec := do("GET", "/dweb/v1/groups", ""); rec.Code != http.StatusTeapot {
		t.Fatalf("other path: %d", rec.Code)
	}
	if f.calls != 2 {
		t.Fatalf("%d drains", f.calls)
	}
}

// TestDrainCLI: against a real daemon, a group whose only member is this
// node (its new repo's empty collection is held by it alone) does not drain
// without a target: the command reports the blob, exits 1, and --leave
// keeps the group. An unknown group fails; a malformed --to is a usage
// error.
func TestDrainCLI(t *testing.T) {
	t.Setenv("DWEB_DRAIN_TO", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data, _ := startDaemon(t, ctx)
	if code, _, errOut := runCLI(t, "--data", data, "--json", "group", "create", "news"); code != 0 {
		t.Fatalf("group create: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "--data", data, "drain", "--to", "dweb+admin:?v=1"); code != 2 {
		t.Fatalf("drain with a malformed --to: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "--data", data, "drain", "--group", "nope"); code != 1 || !strings.Contains(errOut, "unknown group") {
		t.Fatalf("drain of an unknown group: exit %d: %s", code, errOut)
	}
	code, out, errOut := runCLI(t, "--data", data, "drain")
	if code != 1 || !strings.Contains(out, "HANDED OVER") || !strings.Contains(out, `news: unplaced "collection of repo`) || !strings.Contains(out, "--to") {
		t.Fatalf("drain: exit %d: %s %s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "--data", data, "--json", "drain", "--group", "news", "--leave")
	var rep core.DrainReport
	if err := json.Unmarshal([]byte(out), &rep); code != 1 || err != nil || rep.Complete || len(rep.Groups) != 1 || rep.Groups[0].Left ||
		rep.Groups[0].Name != "news" || rep.Groups[0].Checked != 1 || rep.Groups[0].UnplacedN != 1 {
		t.Fatalf("drain --leave: exit %d: %s %s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "--data", data, "--json", "group", "list"); code != 0 || !strings.Contains(out, "news") {
		t.Fatalf("the group is gone after an incomplete drain --leave: %s", out)
	}
}
