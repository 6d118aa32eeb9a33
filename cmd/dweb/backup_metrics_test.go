package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

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
