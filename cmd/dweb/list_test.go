package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
)

// TestFileListWarnsUnreachable: restarted with the only other member
// gone, `dweb file list` still lists its file, from the collection this
// node verified before, exits 0, and says on stderr that the repo is
// unreachable.
func TestFileListWarnsUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dataA := t.TempDir()
	_, stopA := runDaemon(t, ctx, dataA, serveOptions{listen: "127.0.0.1:0", logLevel: "warn"})
	dataB := t.TempDir()
	_, stopB := runDaemon(t, ctx, dataB, serveOptions{listen: "127.0.0.1:0", logLevel: "warn"})
	cli := func(data string, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := runCLI(t, append([]string{"--data", data}, args...)...)
		if code != 0 {
			t.Fatalf("dweb %v: exit %d: %s", args, code, errOut)
		}
		return out, errOut
	}
	out, _ := cli(dataA, "--json", "group", "create", "gone")
	var g core.GroupInfo
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "theirs.txt")
	if err := os.WriteFile(src, []byte("held by A"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli(dataA, "file", "add", g.ID.String(), src)
	out, _ = cli(dataA, "--json", "group", "invite", g.ID.String())
	var inv httpapi.InviteInfo
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatal(err)
	}
	cli(dataB, "group", "join", inv.URI)
	for deadline := time.Now().Add(20 * time.Second); ; {
		out, errOut := cli(dataB, "file", "list", g.ID.String())
		if strings.Contains(out, "theirs.txt") && errOut == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B lists %q, %q", out, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// B restarts with its only contact, A, gone.
	stopA()
	stopB()
	runDaemon(t, ctx, dataB, serveOptions{listen: "127.0.0.1:0", logLevel: "warn"})
	out, errOut := cli(dataB, "file", "list", g.ID.String())
	if !strings.Contains(out, "theirs.txt") {
		t.Fatalf("with A gone B lists %q (stderr %q), want A's file", out, errOut)
	}
	// A warning naming A's repo; on a loaded machine the group record's
	// read may also pass its 1 s wait and warn first (core.listRepoWait).
	repoWarned := false
	for _, line := range strings.Split(errOut, "\n") {
		repoWarned = repoWarned || (strings.HasPrefix(line, "warning: repo ") && strings.Contains(line, "unreachable"))
	}
	if !repoWarned {
		t.Fatalf("with A gone `file list` says on stderr %q (stdout %q), want a warning naming A's repo", errOut, out)
	}
	var body httpapi.FileListBody
	if err := (&app{dataDir: dataB}).client().call(ctx, "GET", "/dweb/v1/groups/"+g.ID.String()+"/files", nil, &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Warnings) == 0 || len(body.Files) != 1 || body.Files[0].RepoReachable || body.Files[0].RepoSeenFresh.IsZero() {
		t.Fatalf("the list route answers %+v", body)
	}
}
