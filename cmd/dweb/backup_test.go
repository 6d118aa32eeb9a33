package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
)

// TestBackupStatusCLI: `dweb serve --backup` reports its state through the
// daemon's route and `dweb backup status`; a daemon without --backup says
// backup mode is off.
func TestBackupStatusCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data, ready := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "warn", backup: true, backupInterval: time.Hour, backupConcurrency: 2})
	plain, _ := startDaemon(t, ctx)
	if !strings.HasPrefix(ready.AdminURI, "dweb+admin:?v=1&") {
		t.Fatalf("the backup's first ready line has no admin URI: %+v", ready)
	}

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

// TestBackupAdminCLI: a member makes the backup server join its group with
// dweb backup join --server, lists and removes it; without the URI, or
// with a malformed one, the command is a usage error.
func TestBackupAdminCLI(t *testing.T) {
	t.Setenv("DWEB_BACKUP_SERVER", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	backupDir, ready := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "warn", backup: true})
	member, _ := startDaemon(t, ctx)
	cli := func(wantCode int, args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, args...)
		if code != wantCode {
			t.Fatalf("dweb %v: exit %d, want %d: %s %s", args, code, wantCode, out, errOut)
		}
		return out
	}
	uri := strings.TrimSpace(cli(0, "--data", backupDir, "backup", "admin-uri"))
	if uri != ready.AdminURI {
		t.Fatalf("admin-uri %q, ready line %q", uri, ready.AdminURI)
	}
	var g core.GroupInfo
	json.Unmarshal([]byte(cli(0, "--data", member, "--json", "group", "create", "desk")), &g)
	var inv httpapi.InviteInfo
	if err := json.Unmarshal([]byte(cli(0, "--data", member, "--json", "group", "invite", g.ID.String())), &inv); err != nil || inv.URI == "" {
		t.Fatalf("invite: %+v %v", inv, err)
	}

	var jg core.AdminGroup
	if err := json.Unmarshal([]byte(cli(0, "--json", "backup", "join", inv.URI, "--server", uri)), &jg); err != nil || jg.ID != g.ID {
		t.Fatalf("backup join: %+v %v", jg, err)
	}
	var list struct{ Groups []core.AdminGroup }
	if err := json.Unmarshal([]byte(cli(0, "--json", "backup", "list", "--server", uri)), &list); err != nil || len(list.Groups) != 1 || list.Groups[0].Name != "desk" {
		t.Fatalf("backup list: %+v %v", list, err)
	}
	if out := cli(0, "backup", "list", "--server", uri); !strings.Contains(out, "desk") {
		t.Fatalf("backup list (text): %s", out)
	}
	if out := cli(0, "backup", "remove", "desk", "--server", uri); !strings.Contains(out, "left group desk") {
		t.Fatalf("backup remove: %s", out)
	}
	cli(1, "backup", "remove", "desk", "--server", uri) // no longer there
	cli(2, "backup", "list")
	cli(2, "backup", "list", "--server", "dweb+admin:?v=1")
	cli(1, "--data", member, "backup", "admin-uri") // not a backup server
}
