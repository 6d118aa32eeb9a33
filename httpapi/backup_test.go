package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
)

// onSocket returns r as if it arrived on the daemon's unix socket.
func onSocket(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.UnixAddr{Name: "dweb.sock", Net: "unix"}))
}

// groupLister has no groups.
type groupLister struct{}

func (groupLister) Groups() []core.GroupInfo { return nil }

type fakeStorage struct {
	st   core.BackupStatus
	u    core.StorageUsage
	uErr error
}

func (f *fakeStorage) BackupStatus() core.BackupStatus          { return f.st }
func (f *fakeStorage) StorageUsage() (core.StorageUsage, error) { return f.u, f.uErr }

// TestBackupMetrics: /metrics shows the store's and the backup's figures,
// the error kinds (also those at 0) and per-group held/missing counts; with
// backup mode off only the store's.
func TestBackupMetrics(t *testing.T) {
	g := key.RecordKey{7}
	src := &fakeStorage{
		u: core.StorageUsage{Quota: 50 << 30, Blobs: 3, Bytes: 12345, RefBlobs: 1, RefBytes: 99, Reserved: 4096, PackDeadBytes: 777},
		st: core.BackupStatus{Enabled: true, Fetched: 1000, Resumed: 200, Passes: 5,
			ErrorsByKind: map[string]int{"quota": 2, "download": 1},
			Downloading:  []core.BackupDownload{{Name: "a"}, {Name: "b"}},
			Groups:       []core.BackupGroupStatus{{Group: g, Held: 4, Missing: 2}}},
	}
	scrape := func() string {
		reg := NewRegistry(groupLister{}, nil, NewBackupCollector(src))
		rec := httptest.NewRecorder()
		metricsHandler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	out := scrape()
	for _, want := range []string{
		"dweb_blobs_stored 3\n",
		"dweb_blob_bytes_stored 12345\n",
		"dweb_blob_ref_bytes 99\n",
		"dweb_blob_pack_dead_bytes 777\n",
		"dweb_storage_quota_bytes 5.36870912e+10\n",
		"dweb_storage_reserved_bytes 4096\n",
		"dweb_backup_downloads_in_flight 2\n",
		"dweb_backup_fetched_bytes_total 1000\n",
		"dweb_backup_resumed_bytes_total 200\n",
		"dweb_backup_passes_total 5\n",
		`dweb_backup_errors_total{kind="quota"} 2` + "\n",
		`dweb_backup_errors_total{kind="download"} 1` + "\n",
		`dweb_backup_errors_total{kind="read_repo"} 0` + "\n",
		`dweb_backup_files{group="` + g.String() + `",state="held"} 4` + "\n",
		`dweb_backup_files{group="` + g.String() + `",state="missing"} 2` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", out)
	}

	src.st = core.BackupStatus{}
	src.uErr = errors.New("store closed")
	out = scrape()
	if strings.Contains(out, "dweb_backup_") || strings.Contains(out, "dweb_blobs_stored") || !strings.Contains(out, "dweb_groups") {
		t.Fatalf("backup off, store unreadable: want neither backup nor store metrics, the rest still:\n%s", out)
	}
}

type fakeDrain struct {
	Backend // nil: only the drain's methods are called
	got     core.DrainOptions
	calls   int
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
// 404.
func TestDrainRoute(t *testing.T) {
	f := &fakeDrain{}
	h := New(f, Options{})
	do := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		h.ServeHTTP(rec, onSocket(req))
		return rec
	}
	rec := do("POST", DrainPath, `{"group":"newsroom","to":["dweb+admin:?x"],"leave":true,"wait_s":2.5}`)
	var rep core.DrainReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); rec.Code != 200 || err != nil || !rep.Complete || rep.Groups[0].HandedOver != 1 || !rep.Groups[0].Left {
		t.Fatalf("drain: %d %s", rec.Code, rec.Body)
	}
	if f.got.Group != (key.RecordKey{1}) || !f.got.Leave || len(f.got.To) != 1 || f.got.Wait != 2500*time.Millisecond {
		t.Fatalf("options %+v", f.got)
	}
	if rec := do("POST", DrainPath, ""); rec.Code != 200 || f.got.Group != (key.RecordKey{}) {
		t.Fatalf("empty body: %d %s %+v", rec.Code, rec.Body, f.got)
	}
	for body, code := range map[string]int{`{"group":"other"}`: 404, `{"nope":1}`: 400, `{"wait_s":-1}`: 400, `[`: 400} {
		if rec := do("POST", DrainPath, body); rec.Code != code || !strings.Contains(rec.Body.String(), `"status":"error"`) {
			t.Fatalf("%s: %d %s, want %d", body, rec.Code, rec.Body, code)
		}
	}
	if f.calls != 2 {
		t.Fatalf("%d drains", f.calls)
	}
}
