package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
)

// syncBuffer is a bytes.Buffer safe for one writer and a polling reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDaemon runs `dweb --json serve` in-process on a fresh data dir until
// the test ends, and returns the data dir and the ready line.
func startDaemon(t *testing.T, ctx context.Context, bootstrap ...string) (string, readyLine) {
	t.Helper()
	return startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", bootstrap: bootstrap, logLevel: "warn"})
}

// startDaemonWith is startDaemon with the serve options o.
func startDaemonWith(t *testing.T, ctx context.Context, o serveOptions) (string, readyLine) {
	t.Helper()
	data := t.TempDir()
	r, _ := runDaemon(t, ctx, data, o)
	return data, r
}

// runDaemon runs `dweb --json serve` in-process on data until stop is
// called or the test ends, and returns its ready line.
func runDaemon(t *testing.T, ctx context.Context, data string, o serveOptions) (ready readyLine, stop func()) {
	t.Helper()
	out, logs := &syncBuffer{}, &syncBuffer{}
	a := &app{dataDir: data, json: true, stdout: out, stderr: logs}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- a.serve(ctx, o)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve %s: %v", data, err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("serve %s did not stop within 15 s", data)
			}
			if _, err := os.Stat(filepath.Join(data, socketName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket left behind: %v", err)
			}
			if t.Failed() {
				t.Logf("daemon %s logs:\n%s", data, logs.String())
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if line, _, ok := strings.Cut(out.String(), "\n"); ok {
			var r readyLine
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("ready line %q: %v", line, err)
			}
			return r, stop
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited before ready: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("daemon not ready in 20 s\n%s", logs.String())
	return readyLine{}, stop
}

// jsonCLI runs dweb --data data --json args and returns its stdout; it
// fails t unless the command exits 0.
func jsonCLI(t *testing.T, data string, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, append([]string{"--data", data, "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("dweb %v: exit %d: %s", args, code, errOut)
	}
	return out
}

// TestEndToEnd runs two real nodes with their daemons and drives them with
// the CLI: create on A, join from the invite on B (no --bootstrap: the
// invite's hints must suffice), add on A, list and get on B.
func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dataA, readyA := startDaemon(t, ctx)
	dataB, _ := startDaemon(t, ctx)
	if !strings.HasSuffix(readyA.Contact, "@"+readyA.Addr) || readyA.Socket != filepath.Join(dataA, socketName) {
		t.Fatalf("ready line %+v", readyA)
	}
	cli := func(data string, args ...string) string { return jsonCLI(t, data, args...) }

	// A second daemon on the same data dir refuses to start.
	if err := (&app{dataDir: dataA, stdout: &syncBuffer{}, stderr: &syncBuffer{}}).serve(ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error"}); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Fatalf("second daemon on %s: %v", dataA, err)
	}

	var n httpapi.NodeInfo
	if err := json.Unmarshal([]byte(cli(dataA, "node", "id")), &n); err != nil || n.Contact != readyA.Contact {
		t.Fatalf("node id: %+v %v", n, err)
	}

	var g core.GroupInfo
	if err := json.Unmarshal([]byte(cli(dataA, "group", "create", "e2e")), &g); err != nil || g.Name != "e2e" || g.ID.IsZero() {
		t.Fatalf("group create: %+v %v", g, err)
	}
	content := make([]byte, 300<<10+123) // several 16 KiB chunk groups and a partial one
	rand.Read(content)
	src := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(src, content, 0o600); err != nil {
		t.Fatal(err)
	}
	cli(dataA, "file", "add", "e2e", src)

	var inv httpapi.InviteInfo
	if err := json.Unmarshal([]byte(cli(dataA, "group", "invite", g.ID.String())), &inv); err != nil || !strings.HasPrefix(inv.URI, "save+dweb:") {
		t.Fatalf("invite: %+v %v", inv, err)
	}
	var joined core.GroupInfo
	if err := json.Unmarshal([]byte(cli(dataB, "group", "join", inv.URI)), &joined); err != nil || joined.ID != g.ID || joined.Name != "e2e" {
		t.Fatalf("join: %+v %v (want %+v)", joined, err, g)
	}

	var files []core.FileInfo
	for deadline := time.Now().Add(20 * time.Second); ; {
		files = nil
		if err := json.Unmarshal([]byte(cli(dataB, "file", "list", g.ID.String())), &files); err != nil {
			t.Fatal(err)
		}
		if len(files) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(files) != 1 || files[0].Name != "payload.bin" || files[0].Size != int64(len(content)) || files[0].Mine || files[0].Local {
		t.Fatalf("B lists %+v", files)
	}

	// sync (the Save app's refresh) fetches it; a second sync fetches nothing.
	var synced []core.RepoRefresh
	if err := json.Unmarshal([]byte(cli(dataB, "group", "sync", "e2e")), &synced); err != nil {
		t.Fatal(err)
	}
	fetched := 0
	for _, r := range synced {
		fetched += len(r.RefreshedFiles)
		if len(r.FailedFiles) != 0 {
			t.Fatalf("sync failed files: %+v", synced)
		}
	}
	if fetched != 1 {
		t.Fatalf("sync fetched %d files, want 1: %+v", fetched, synced)
	}
	if code, out, e := runCLI(t, "--data", dataB, "group", "sync", "e2e"); code != 0 || !strings.Contains(out, "FETCHED") || strings.Count(out, "\n") != len(synced)+1 {
		t.Fatalf("second sync (table): exit %d %q %q", code, out, e)
	}
	files = nil
	if err := json.Unmarshal([]byte(cli(dataB, "file", "list", g.ID.String())), &files); err != nil || len(files) != 1 || !files[0].Local {
		t.Fatalf("after sync B lists %+v (%v), want payload.bin local", files, err)
	}

	dst := filepath.Join(t.TempDir(), "got.bin")
	cli(dataB, "file", "get", "e2e", "payload.bin", "-o", dst)
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("B got %d bytes (%v), want the %d bytes A added", len(got), err, len(content))
	}
	// The hash the daemon reports is the one `dweb hash` (b3sum) prints.
	if h := cli(dataB, "hash", dst); !strings.Contains(h, files[0].Hash.String()) {
		t.Fatalf("hash %s, listed %s", h, files[0].Hash)
	}

	// Errors through the whole stack: unknown file, unknown group.
	if code, _, e := runCLI(t, "--data", dataB, "file", "get", "e2e", "nope", "-o", dst); code != exitError || !strings.Contains(e, "nope") {
		t.Fatalf("get missing: exit %d %q", code, e)
	}
	if code, _, e := runCLI(t, "--data", dataB, "file", "list", "nope"); code != exitError || strings.Count(e, "\n") != 1 {
		t.Fatalf("list unknown group: exit %d %q", code, e)
	}
}
