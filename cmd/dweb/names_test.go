package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
)

// TestDeviceNameFlag checks `dweb serve --device-name`: without it a fresh
// node's repos are named "dweb device"; with it they get the name given,
// and later runs without the flag keep it.
func TestDeviceNameFlag(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data := t.TempDir()
	o := serveOptions{listen: "127.0.0.1:0", logLevel: "warn"}
	cli := func(v any, args ...string) {
		t.Helper()
		code, out, errOut := runCLI(t, append([]string{"--data", data, "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("dweb %v: exit %d: %s", args, code, errOut)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("dweb %v: %q: %v", args, out, err)
		}
	}
	// ownRepoName creates a group and returns the name of this node's repo in it.
	ownRepoName := func(ready readyLine, group string) string {
		t.Helper()
		var g core.GroupInfo
		cli(&g, "group", "create", group)
		var body httpapi.ReposBody
		if err := json.Unmarshal(newAPIClient(t, ready.Socket).raw("GET", "/api/groups/"+g.ID.String()+"/repos", nil, 200), &body); err != nil {
			t.Fatal(err)
		}
		for _, r := range body.Repos {
			if r.Key == g.Repo {
				return r.Name
			}
		}
		t.Fatalf("own repo %s not in %+v", g.Repo, body.Repos)
		return ""
	}
	var n httpapi.NodeInfo

	ready, stop := runDaemon(t, ctx, data, o)
	if cli(&n, "node", "id"); n.DeviceName != core.DefaultDeviceName {
		t.Fatalf("fresh node's device name %q, want %q", n.DeviceName, core.DefaultDeviceName)
	}
	if name := ownRepoName(ready, "first"); name != core.DefaultDeviceName {
		t.Fatalf("repo of a node without --device-name is %q, want %q", name, core.DefaultDeviceName)
	}
	stop()

	o.device = "Ana's phone"
	_, stop = runDaemon(t, ctx, data, o)
	stop()
	o.device = ""
	ready, _ = runDaemon(t, ctx, data, o)
	if cli(&n, "node", "id"); n.DeviceName != "Ana's phone" {
		t.Fatalf("device name after a restart without the flag %q, want the saved %q", n.DeviceName, "Ana's phone")
	}
	if name := ownRepoName(ready, "second"); name != "Ana's phone" {
		t.Fatalf("repo named %q, want %q", name, "Ana's phone")
	}
}
