package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestJoinBadURIWithoutDaemon(t *testing.T) {
	data := t.TempDir() // no daemon here: the URI must be rejected before any dial
	for _, tc := range []struct{ uri, param string }{
		{"save+dweb:?v=1&dht=xyz", "dht"},
		{"http://example.com/?dht=x", "scheme"},
	} {
		code, out, errOut := runCLI(t, "--data", data, "group", "join", tc.uri)
		if code != exitUsage {
			t.Errorf("%s: exit %d, want %d", tc.uri, code, exitUsage)
		}
		if out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.param) || strings.Contains(errOut, "no daemon") {
			t.Errorf("%s: stdout %q stderr %q, want one line naming %s", tc.uri, out, errOut, tc.param)
		}
	}
}

func TestNoDaemon(t *testing.T) {
	data := t.TempDir()
	sock := filepath.Join(data, "dweb.sock")
	want := "dweb: no daemon at " + sock + " (start one with: dweb serve --data " + data + ")\n"
	for _, args := range [][]string{
		{"group", "list"},
		{"node", "id"},
		{"file", "list", "g"},
		{"file", "get", "g", "name", "-o", "x"},
		{"repo", "list", "g"},
		{"repo", "rename", "g", "phone"},
	} {
		code, out, errOut := runCLI(t, append([]string{"--data", data}, args...)...)
		if code != exitNoDaemon || out != "" || errOut != want {
			t.Errorf("%v: exit %d stdout %q stderr %q; want exit %d and %q", args, code, out, errOut, exitNoDaemon, want)
		}
	}
	code, _, errOut := runCLI(t, "--json", "--data", data, "group", "list")
	var e map[string]string
	if err := json.Unmarshal([]byte(errOut), &e); err != nil || code != exitNoDaemon || !strings.Contains(e["error"], "no daemon at "+sock) {
		t.Fatalf("--json: exit %d stderr %q (%v)", code, errOut, err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bogus"},
		{"file", "get", "onlygroup"},
		{"group", "create"},
		{"serve", "--log-level", "loud"},
		{"serve", "--device-name", "a/b"},
		{"repo", "rename", "g"},
		{"repo", "rename", "g", "a/b"},
		{"group", "create", "g", "--repo-name", ".."},
		{"file", "get", "g", "n", "--repo", "not-a-key"},
		{"file", "get", "g", "n", "--version", "latest"},
		{"file", "restore", "g", "n"},
		{"file", "history", "g"},
		{"serve", "--keep-versions", "-2"},
		{"serve", "--keep-versions-for", "-1h"},
	} {
		code, _, errOut := runCLI(t, append([]string{"--data", t.TempDir()}, args...)...)
		if code != exitUsage || !strings.HasPrefix(errOut, "dweb: ") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d stderr %q, want exit %d and one line", args, code, errOut, exitUsage)
		}
	}
}
