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
	"github.com/dwebkit/dweb/internal/key"
)

func TestRepoLabels(t *testing.T) {
	a, b := key.RecordKey{1, 2, 3, 4}, key.RecordKey{1, 2, 3, 5} // the same first 5 characters
	c, d, e := key.RecordKey{9}, key.RecordKey{10}, key.RecordKey{11}
	got := repoLabels([]repoRef{{a, "phone"}, {b, "phone"}, {c, "desk"}, {d, ""}, {a, "phone"}, {e, "laptop"}, {key.RecordKey{12}, "laptop"}})
	want := map[key.RecordKey]string{
		a:    "phone (" + a.String()[:6] + "…)",
		b:    "phone (" + b.String()[:6] + "…)",
		c:    "desk",
		d:    d.String(),
		e:    "laptop (" + e.String()[:4] + "…)",
		{12}: "laptop (" + key.RecordKey{12}.String()[:4] + "…)",
	}
	if len(got) != len(want) {
		t.Fatalf("labels %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("label of %s: %q, want %q", k, got[k], w)
		}
	}
}

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

// TestRepoNamesThroughCLI drives the member-chosen repo names through the
// CLI and the HTTP API of three daemons: the owner names its repo at
// create, two members join as "phone" and show apart by key in every
// listing, a rename shows on the others, and a bad name changes nothing.
func TestRepoNamesThroughCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dataA, _ := startDaemon(t, ctx)
	dataB, _ := startDaemon(t, ctx)
	dataC, readyC := startDaemon(t, ctx)
	run := func(data string, args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append([]string{"--data", data}, args...)...)
	}
	cli := func(data string, v any, args ...string) string {
		t.Helper()
		if v != nil {
			args = append([]string{"--json"}, args...)
		}
		code, out, errOut := run(data, args...)
		if code != 0 {
			t.Fatalf("dweb %v: exit %d: %s", args, code, errOut)
		}
		if v != nil {
			if err := json.Unmarshal([]byte(out), v); err != nil {
				t.Fatalf("dweb %v: %q: %v", args, out, err)
			}
		}
		return out
	}

	var g core.GroupInfo
	cli(dataA, &g, "group", "create", "newsroom", "--repo-name", "desk")
	var inv httpapi.InviteInfo
	cli(dataA, &inv, "group", "invite", "newsroom")

	// Bad names: exit 2 from the CLI, 400 from the API; nothing joined.
	for _, args := range [][]string{
		{"group", "join", inv.URI, "--name", "a/b"},
		{"group", "join", inv.URI, "--name", ".."},
		{"group", "create", "other", "--repo-name", "nul\x00"},
		{"repo", "rename", "newsroom", "a/b"},
	} {
		if code, _, e := run(dataC, args...); code != exitUsage || strings.Count(e, "\n") != 1 {
			t.Fatalf("dweb %v: exit %d %q, want %d", args, code, e, exitUsage)
		}
	}
	c := newAPIClient(t, readyC.Socket)
	body, _ := json.Marshal(httpapi.JoinURLRequest{URL: inv.URI, RepoName: "a/b"})
	c.wantErr("POST", "/api/groups/join_from_url", string(body), 400, "repo name")
	c.wantErr("POST", "/api/groups", `{"name":"other","repo_name":"a/b"}`, 400, "repo name")
	var groups []core.GroupInfo
	if cli(dataC, &groups, "group", "list"); len(groups) != 0 {
		t.Fatalf("C is in %+v after bad names", groups)
	}

	var gb, gc core.GroupInfo
	cli(dataB, &gb, "group", "join", inv.URI, "--name", "phone")
	cli(dataC, &gc, "group", "join", inv.URI, "--name", "phone")
	if gb.ID != g.ID || gc.ID != g.ID || gb.Repo == gc.Repo {
		t.Fatalf("joined %+v and %+v, want group %s", gb, gc, g.ID)
	}

	// Every node lists the three repos, keys and names; the table shows
	// the two phones apart by a short key.
	want := map[key.RecordKey]string{g.Repo: "desk", gb.Repo: "phone", gc.Repo: "phone"}
	listed := func(data string) map[key.RecordKey]string {
		t.Helper()
		var rs []core.RepoInfo
		cli(data, &rs, "repo", "list", "newsroom")
		out := map[key.RecordKey]string{}
		for _, r := range rs {
			out[r.Key] = r.Name
		}
		return out
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	sameNames := func(got map[key.RecordKey]string) bool {
		if len(got) != len(want) {
			return false
		}
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	}
	for _, data := range []string{dataA, dataB, dataC} {
		waitUntil("every repo listed on "+data, func() bool { return sameNames(listed(data)) })
	}
	phoneB := "phone (" + gb.Repo.String()[:4]
	phoneC := "phone (" + gc.Repo.String()[:4]
	table := cli(dataA, nil, "repo", "list", "newsroom")
	if !strings.HasPrefix(table, "NAME") || !strings.Contains(table, phoneB) || !strings.Contains(table, phoneC) ||
		!strings.Contains(table, gb.Repo.String()) || strings.Contains(table, "desk (") {
		t.Fatalf("repo list table:\n%s", table)
	}
	table = cli(dataB, nil, "repo", "list", "newsroom")
	for _, line := range strings.Split(table, "\n") {
		if strings.Contains(line, phoneB) != strings.HasSuffix(line, "true") && line != "" && !strings.HasPrefix(line, "NAME") {
			t.Fatalf("B's repo list marks the wrong repo as its own:\n%s", table)
		}
	}

	// file list shows whose file is whose.
	for _, m := range []struct{ data, file string }{{dataB, "b.txt"}, {dataC, "c.txt"}} {
		p := filepath.Join(t.TempDir(), m.file)
		if err := os.WriteFile(p, []byte(m.file), 0o600); err != nil {
			t.Fatal(err)
		}
		cli(m.data, nil, "file", "add", "newsroom", p)
	}
	var files []core.FileInfo
	waitUntil("both files listed on A", func() bool {
		files = nil
		cli(dataA, &files, "file", "list", "newsroom")
		return len(files) == 2
	})
	for _, f := range files {
		if want := map[string]key.RecordKey{"b.txt": gb.Repo, "c.txt": gc.Repo}[f.Name]; f.Repo != want || f.RepoName != "phone" {
			t.Fatalf("A lists %+v, want repo %s named phone", f, want)
		}
	}
	table = cli(dataA, nil, "file", "list", "newsroom")
	for _, line := range strings.Split(strings.TrimSpace(table), "\n")[1:] {
		if strings.HasPrefix(line, "b.txt") != strings.Contains(line, phoneB) || strings.HasPrefix(line, "c.txt") != strings.Contains(line, phoneC) {
			t.Fatalf("file list table:\n%s", table)
		}
	}

	// A rename shows on the others at their next listing; a bad one over
	// the API is 400 and changes nothing.
	var ri core.RepoInfo
	if cli(dataB, &ri, "repo", "rename", "newsroom", "bob's phone"); ri.Key != gb.Repo || ri.Name != "bob's phone" || !ri.CanWrite {
		t.Fatalf("rename answered %+v", ri)
	}
	c.wantErr("POST", "/api/groups/"+g.ID.String()+"/repos", `{"name":"x/y"}`, 400, "repo name")
	want[gb.Repo] = "bob's phone"
	for _, data := range []string{dataA, dataC} {
		waitUntil("the rename seen on "+data, func() bool { return sameNames(listed(data)) })
	}
	if table = cli(dataA, nil, "repo", "list", "newsroom"); strings.Contains(table, "(") {
		t.Fatalf("no name is shared any more, yet:\n%s", table)
	}
}
