package main

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
)

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
		u: core.StorageUsage{Quota: 50 << 30, Blobs: 3, Bytes: 12345, RefBlobs: 1, RefBytes: 99, Reserved: 4096},
		st: core.BackupStatus{Enabled: true, Fetched: 1000, Resumed: 200, Passes: 5,
			ErrorsByKind: map[string]int{"quota": 2, "download": 1},
			Downloading:  []core.BackupDownload{{Name: "a"}, {Name: "b"}},
			Groups:       []core.BackupGroupStatus{{Group: g, Held: 4, Missing: 2}}},
	}
	scrape := func() string {
		reg := newRegistry(newFake(), nil, newBackupCollector(src))
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

// TestBackupMetricsDaemon: a real `dweb serve --backup --quota 1MiB`
// serves the store's and the backup's metrics on /metrics, and refuses a
// bad --quota as a usage error.
func TestBackupMetricsDaemon(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, ready := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error", backup: true, quota: "1MiB"})
	c := newAPIClient(t, ready.Socket)
	resp := c.do("GET", "/metrics", nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out := string(b)
	for _, want := range []string{
		"dweb_blobs_stored 0\n", "dweb_blob_bytes_stored 0\n", "dweb_storage_quota_bytes 1.048576e+06\n",
		"dweb_backup_downloads_in_flight 0\n", "dweb_backup_fetched_bytes_total 0\n", "dweb_backup_passes_total ",
		`dweb_backup_errors_total{kind="quota"} 0` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", out)
	}

	a := &app{dataDir: t.TempDir(), stdout: io.Discard, stderr: io.Discard}
	var ue *usageError
	if err := a.serve(ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error", quota: "lots"}); !errors.As(err, &ue) {
		t.Fatalf("--quota lots: %v, want a usage error", err)
	}
}
