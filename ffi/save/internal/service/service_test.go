package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder keeps the statuses a Service reports.
type recorder struct {
	mu   sync.Mutex
	got  []Status
	msgs []string
	ch   chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1)} }

func (r *recorder) status(code Status, msg string) {
	r.mu.Lock()
	r.got = append(r.got, code)
	r.msgs = append(r.msgs, msg)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

// wait returns the statuses once there are n of them (fails after 10 s).
func (r *recorder) wait(t *testing.T, n int) []Status {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		got := slices.Clone(r.got)
		msgs := slices.Clone(r.msgs)
		r.mu.Unlock()
		if len(got) >= n {
			for i, m := range msgs {
				if m == "" {
					t.Errorf("status %v #%d has an empty message", got[i], i)
				}
			}
			return got
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("got statuses %v (%q), waited for %d", got, msgs, n)
		}
	}
}

// nth waits for the nth (from 1) status code and returns its message.
func (r *recorder) nth(t *testing.T, code Status, n int) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		seen := 0
		for i, c := range r.got {
			if c == code {
				if seen++; seen == n {
					msg := r.msgs[i]
					r.mu.Unlock()
					return msg
				}
			}
		}
		got := slices.Clone(r.got)
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("got statuses %v, waited for %v #%d", got, code, n)
		}
	}
}

func testService(t *testing.T, rec *recorder) *Service {
	t.Helper()
	s := New(Options{HTTPAddr: "127.0.0.1:0", ListenAddr: "127.0.0.1:0", Status: rec.status, ShutdownGrace: time.Second})
	t.Cleanup(s.Stop)
	return s
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReady polls /health/ready as the app does, every 20 ms, and returns
// how long it took.
func waitReady(t *testing.T, base string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		code, body := get(t, http.DefaultClient, base+"/health/ready")
		if code == http.StatusOK {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("/health/ready not 200 after %v: %d %s", within, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

func postJSON(t *testing.T, url, body string, v any) {
	t.Helper()
	resp, err := http.Post(url, "application/json; charset=UTF-8", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("POST %s: %v in %s", url, err, b)
	}
}

func TestStartStopRestart(t *testing.T) {
	rec := newRecorder()
	s := testService(t, rec)
	base := t.TempDir()
	sock := filepath.Join(base, "rust_server.sock")

	msg, err := s.Start(base, sock)
	if err != nil {
		t.Fatal(err)
	}
	if want := StartedMessage(sock); msg != want {
		t.Fatalf("Start = %q, want %q", msg, want)
	}
	url := "http://" + s.HTTPAddr()
	// The port is open before Start returns: /status answers at once.
	if code, body := get(t, http.DefaultClient, url+"/status"); code != http.StatusOK {
		t.Fatalf("/status right after Start: %d %s", code, body)
	}
	took := waitReady(t, url, 2*time.Second)
	t.Logf("ready %v after Start", took)
	if got := rec.wait(t, 4); !slices.Equal(got, []Status{BackendInitializing, WebServerInitializing, WebServerRunning, BackendRunning}) {
		t.Fatalf("statuses %v", got)
	}

	// A second start while running changes nothing.
	if msg2, err := s.Start(base, sock); err != nil || msg2 != msg {
		t.Fatalf("second Start = %q, %v; want %q", msg2, err, msg)
	}

	// The socket: mode 0600, every route (dweb's own too).
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", fi, err)
	}
	if code, body := get(t, unixClient(sock), "http://save/dweb/v1/node"); code != http.StatusOK {
		t.Fatalf("dweb route on the socket: %d %s", code, body)
	}
	// Over TCP, dweb's own routes need a token the library does not set.
	if code, _ := get(t, http.DefaultClient, url+"/dweb/v1/node"); code != http.StatusForbidden {
		t.Fatalf("dweb route over TCP: %d, want 403", code)
	}

	var g struct{ Key, Name, URI string }
	postJSON(t, url+"/api/groups", `{"name":"newsroom"}`, &g)
	if g.Name != "newsroom" || g.Key == "" || g.URI == "" {
		t.Fatalf("created group %+v", g)
	}

	s.Stop()
	if got := rec.wait(t, 5); got[4] != Idle {
		t.Fatalf("statuses after Stop %v", got)
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), time.Second); err == nil {
		c.Close()
		t.Fatal("TCP port still open after Stop")
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket after Stop: %v", err)
	}
	if s.HTTPAddr() != "" {
		t.Fatal("HTTPAddr after Stop:", s.HTTPAddr())
	}
	s.Stop() // stopping a stopped service does nothing

	// Start again in the same process and directory: the group is there.
	if _, err := s.Start(base, sock); err != nil {
		t.Fatal(err)
	}
	url = "http://" + s.HTTPAddr()
	waitReady(t, url, 2*time.Second)
	code, body := get(t, http.DefaultClient, url+"/api/groups")
	if code != http.StatusOK || !strings.Contains(body, g.Key) {
		t.Fatalf("groups after restart: %d %s", code, body)
	}
	if got := rec.wait(t, 9); !slices.Equal(got[5:], []Status{BackendInitializing, WebServerInitializing, WebServerRunning, BackendRunning}) {
		t.Fatalf("statuses of the second start %v", got)
	}
	s.Stop()
	rec.wait(t, 10)
}

func TestHTTPAddrNotLoopback(t *testing.T) {
	rec := newRecorder()
	s := New(Options{HTTPAddr: "0.0.0.0:0", Status: rec.status})
	dir := t.TempDir()
	if _, err := s.Start(dir, filepath.Join(dir, "s.sock")); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("Start with a non-loopback HTTP address: %v", err)
	}
	if msg := rec.nth(t, Error, 1); !strings.Contains(msg, "loopback") {
		t.Fatalf("Error status %q", msg)
	}
}

func TestPortBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	rec := newRecorder()
	s := New(Options{HTTPAddr: busy.Addr().String(), ListenAddr: "127.0.0.1:0", Status: rec.status})
	t.Cleanup(s.Stop)
	base := t.TempDir()
	sock := filepath.Join(base, "s.sock")

	if _, err := s.Start(base, sock); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start on a busy port: %v", err)
	}
	if got := rec.wait(t, 3); got[2] != Error {
		t.Fatalf("statuses %v, want Error last", got)
	}
	if msg := rec.nth(t, Error, 1); !strings.Contains(msg, "address already in use") {
		t.Fatalf("Error message %q does not say why", msg)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	if s.HTTPAddr() != "" {
		t.Fatal("running after a failed start")
	}

	// Once the port is free, a start works.
	busy.Close()
	if _, err := s.Start(base, sock); err != nil {
		t.Fatal(err)
	}
	waitReady(t, "http://"+s.HTTPAddr(), 2*time.Second)
}

func TestBadArguments(t *testing.T) {
	rec := newRecorder()
	s := testService(t, rec)
	dir := t.TempDir()
	errors := 0
	for _, c := range []struct{ base, sock, want string }{
		{"", filepath.Join(dir, "s.sock"), "base directory"},
		{"relative", filepath.Join(dir, "s.sock"), "base directory"},
		{dir, "", "socket path"},
		{dir, filepath.Join(dir, "missing", "s.sock"), "no such file or directory"},
		{dir, "/" + strings.Repeat("s", 200), "longer than"},
		{dir, "relative.sock", "socket path"},
	} {
		if _, err := s.Start(c.base, c.sock); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Start(%q, %q) = %v, want an error with %q", c.base, c.sock, err, c.want)
		}
		errors++
		if msg := rec.nth(t, Error, errors); !strings.Contains(msg, c.want) {
			t.Errorf("Start(%q, %q): Error status %q", c.base, c.sock, msg)
		}
	}
}

// A node that cannot open ends the run: Error, the servers close, and the
// next Start starts afresh.
func TestNodeFailure(t *testing.T) {
	rec := newRecorder()
	s := testService(t, rec)
	base := t.TempDir()
	sock := filepath.Join(base, "s.sock")
	blocker := filepath.Join(base, DataDirName)
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(base, sock); err != nil {
		t.Fatal(err)
	}
	url := "http://" + s.HTTPAddr()
	got := rec.wait(t, 4)
	if !slices.Equal(got, []Status{BackendInitializing, WebServerInitializing, WebServerRunning, Error}) {
		t.Fatalf("statuses %v", got)
	}
	if msg := rec.nth(t, Error, 1); !strings.Contains(msg, "open node") {
		t.Fatalf("Error message %q", msg)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := get(t, http.DefaultClient, url+"/status")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still serving after the node failed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The listeners close a moment before the run is marked ended (the
	// socket file is removed in between).
	for s.HTTPAddr() != "" {
		if time.Now().After(deadline) {
			t.Fatalf("HTTPAddr after the node failed: %q", s.HTTPAddr())
		}
		time.Sleep(5 * time.Millisecond)
	}

	os.Remove(blocker)
	if _, err := s.Start(base, sock); err != nil {
		t.Fatal(err)
	}
	waitReady(t, "http://"+s.HTTPAddr(), 2*time.Second)
	if got := rec.wait(t, 8); got[7] != BackendRunning {
		t.Fatalf("statuses %v", got)
	}
}

// Stop right after Start, while the node is starting, stops everything.
func TestStopWhileStarting(t *testing.T) {
	rec := newRecorder()
	s := testService(t, rec)
	base := t.TempDir()
	for i := range 3 {
		sock := filepath.Join(base, fmt.Sprintf("s%d.sock", i))
		if _, err := s.Start(base, sock); err != nil {
			t.Fatal(err)
		}
		s.Stop()
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Fatalf("socket after Stop: %v", err)
		}
	}
	got := rec.wait(t, 12)
	if got[len(got)-1] != Idle {
		t.Fatalf("statuses %v", got)
	}
}

func TestStatusCallbackPanics(t *testing.T) {
	var mu sync.Mutex
	var got []Status
	s := New(Options{HTTPAddr: "127.0.0.1:0", ListenAddr: "127.0.0.1:0", Status: func(code Status, _ string) {
		mu.Lock()
		got = append(got, code)
		mu.Unlock()
		panic("callback")
	}})
	t.Cleanup(s.Stop)
	base := t.TempDir()
	if _, err := s.Start(base, filepath.Join(base, "s.sock")); err != nil {
		t.Fatal(err)
	}
	waitReady(t, "http://"+s.HTTPAddr(), 2*time.Second)
	s.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d statuses delivered through a panicking callback, want 5", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
