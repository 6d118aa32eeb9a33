package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
)

// TestBackupStatusCLI: `dweb serve --backup` reports its state through the
// daemon's route and `dweb backup status`; a daemon without --backup says
// backup mode is off.
func TestBackupStatusCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data, _ := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "warn", backup: true, backupInterval: time.Hour, backupConcurrency: 2})
	plain, _ := startDaemon(t, ctx)

	code, out, errOut := runCLI(t, "--data", data, "--json", "group", "create", "news")
	if code != 0 {
		t.Fatalf("group create: exit %d: %s", code, errOut)
	}
	var st core.BackupStatus
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, errOut = runCLI(t, "--data", data, "--json", "backup", "status")
		if code != 0 {
			t.Fatalf("backup status: exit %d: %s", code, errOut)
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("backup status %q: %v", out, err)
		}
		if len(st.Groups) == 1 && !st.Groups[0].LastPass.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pass of the group within 10 s: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !st.Enabled || st.IntervalS != 3600 || st.Concurrency != 2 || st.Groups[0].Name != "news" || st.Groups[0].Repos != 1 || st.Groups[0].Missing != 0 {
		t.Fatalf("backup status %+v", st)
	}
	code, out, errOut = runCLI(t, "--data", data, "backup", "status")
	if code != 0 || !strings.Contains(out, "news") || !strings.Contains(out, "2 downloads at once") {
		t.Fatalf("backup status (text): exit %d: %s %s", code, out, errOut)
	}

	code, out, errOut = runCLI(t, "--data", plain, "backup", "status")
	if code != 0 || !strings.Contains(out, "backup mode is off") {
		t.Fatalf("backup status without --backup: exit %d: %s %s", code, out, errOut)
	}
	// The other routes still answer behind the backup routes.
	code, _, errOut = runCLI(t, "--data", plain, "--json", "group", "list")
	if code != 0 {
		t.Fatalf("group list: exit %d: %s", code, errOut)
	}
}

func TestFmtBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 40: "5.0 TiB", 3 << 50: "3072.0 TiB"} {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
