package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dwebkit/dweb/httpapi"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/zeebo/blake3"
)

// apiClient speaks HTTP to one daemon over its unix socket.
type apiClient struct {
	t  *testing.T
	hc *http.Client
}

func newAPIClient(t *testing.T, sock string) *apiClient {
	var d net.Dialer
	return &apiClient{t: t, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		},
		DisableCompression: true,
	}}}
}

// do sends one request; body may be nil, a string or an io.Reader.
func (c *apiClient) do(method, path string, body any, hdr ...string) *http.Response {
	c.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case string:
		rd = strings.NewReader(b)
		if strings.HasPrefix(b, "{") {
			ct = "application/json" // as the app's Retrofit client declares its JSON bodies
		}
	case io.Reader:
		rd = b
	}
	req, err := http.NewRequest(method, "http://dweb"+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// raw sends a request and returns its JSON answer, which must have status
// want.
func (c *apiClient) raw(method, path string, body any, want int) []byte {
	c.t.Helper()
	resp := c.do(method, path, body)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		c.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	return raw
}

// json sends a request and decodes the JSON object it answers with status
// want.
func (c *apiClient) json(method, path string, body any, want int) map[string]any {
	c.t.Helper()
	raw := c.raw(method, path, body, want)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		c.t.Fatalf("%s %s: body %q: %v", method, path, raw, err)
	}
	return m
}

// wantErr checks an error answer and that its message contains part: on
// the Save routes a bare JSON string (save-rust's shape, which the app
// decodes and shows), on dweb's own {"status":"error","error":msg}.
func (c *apiClient) wantErr(method, path string, body any, code int, part string) {
	c.t.Helper()
	raw := c.raw(method, path, body, code)
	var msg string
	if strings.HasPrefix(path, "/dweb/") {
		var e httpapi.ErrorBody
		if err := json.Unmarshal(raw, &e); err != nil || e.Status != "error" || e.Error == "" {
			c.t.Fatalf("%s %s: error body %s, want {status:error, error:msg}", method, path, raw)
		}
		msg = e.Error
	} else if err := json.Unmarshal(raw, &msg); err != nil || msg == "" {
		c.t.Fatalf("%s %s: error body %s, want a JSON string", method, path, raw)
	}
	if !strings.Contains(msg, part) {
		c.t.Errorf("%s %s: error %q, want it to contain %q", method, path, msg, part)
	}
}

// heapWatch samples HeapInuse until stopped and reports the peak above the
// level at its start.
type heapWatch struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done sync.WaitGroup
}

func watchHeap() *heapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapWatch{base: ms.HeapInuse, stop: make(chan struct{})}
	h.peak.Store(ms.HeapInuse)
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tk.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > h.peak.Load() {
					h.peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	return h
}

// growth stops the watch and returns the peak growth in bytes.
func (h *heapWatch) growth() int64 {
	close(h.stop)
	h.done.Wait()
	return int64(h.peak.Load()) - int64(h.base)
}

// genReader returns n deterministic pseudo-random bytes for seed, never
// held in memory at once.
func genReader(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

func blake3Hex(r io.Reader) (string, int64) {
	h := blake3.New()
	n, _ := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n
}

// TestSaveAPI drives every route of ../shared/SAVE-API.md on two real
// daemons (real nodes on 127.0.0.1, the API on their unix sockets and one
// TCP port): A creates a group and uploads, B joins, refreshes and
// downloads from A. It checks the success shapes, each error status, and
// that a 64 MiB upload and download stream without holding the file in
// memory.
func TestSaveAPI(t *testing.T) {
	const bigSize = 64 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dataA, readyA := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error", http: "127.0.0.1:0", maxUpload: bigSize + 1<<20})
	_, readyB := startDaemonWith(t, ctx, serveOptions{listen: "127.0.0.1:0", logLevel: "error", maxUpload: 1 << 20})
	a, b := newAPIClient(t, readyA.Socket), newAPIClient(t, readyB.Socket)

	// Status and health, on the socket and on the TCP port.
	if m := a.json("GET", "/status", nil, 200); m["status"] != "running" || m["version"] != httpapi.Version {
		t.Fatalf("status %v", m)
	}
	if m := a.json("GET", "/health", nil, 200); m["status"] != "OK" {
		t.Fatalf("health %v", m)
	}
	if m := a.json("GET", "/health/ready", nil, 200); m["status"] != "OK" {
		t.Fatalf("ready %v", m)
	}
	if readyA.HTTP == "" || !strings.HasPrefix(readyA.HTTP, "127.0.0.1:") {
		t.Fatalf("ready line http %q", readyA.HTTP)
	}
	resp, err := http.Get("http://" + readyA.HTTP + "/status")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /status over TCP: %v %v", resp, err)
	}
	resp.Body.Close()

	// Groups.
	g := a.json("POST", "/api/groups", `{"name":"newsroom"}`, 200)
	gid, _ := g["key"].(string)
	if _, err := key.ParseRecordKey(gid); err != nil || g["name"] != "newsroom" {
		t.Fatalf("create group %v", g)
	}
	if _, err := time.Parse(time.RFC3339, g["created_at"].(string)); err != nil {
		t.Fatalf("created_at %v: %v", g["created_at"], err)
	}
	if gs := a.json("GET", "/api/groups", nil, 200)["groups"].([]any); len(gs) != 1 || gs[0].(map[string]any)["key"] != gid {
		t.Fatalf("groups %v", gs)
	}
	if m := a.json("GET", "/api/groups/"+gid, nil, 200); m["key"] != gid || m["name"] != "newsroom" {
		t.Fatalf("get group %v", m)
	}
	inv := a.json("GET", "/dweb/v1/groups/"+gid+"/invite", nil, 200)["uri"].(string)
	if m := b.json("POST", "/api/groups/join_from_url", `{"url":"`+inv+`"}`, 200); m["key"] != gid || m["name"] != "newsroom" || m["uri"] == "" {
		t.Fatalf("join %v", m)
	}
	if m := b.json("POST", "/api/memberships", `{"uri":"`+inv+`"}`, 200)["group"].(map[string]any); m["key"] != gid || m["uri"] == "" {
		t.Fatalf("membership %v", m)
	}

	// Repos: A's own, then both.
	own := a.json("POST", "/api/groups/"+gid+"/repos", `{"name":"phone"}`, 200)
	repoA, _ := own["key"].(string)
	if _, err := key.ParseRecordKey(repoA); err != nil || own["can_write"] != true || own["name"] != "phone" || own["created_at"] == nil {
		t.Fatalf("create repo %v", own)
	}
	if m := a.json("GET", "/api/groups/"+gid+"/repos/"+repoA, nil, 200); m["key"] != repoA || m["created_at"] != own["created_at"] {
		t.Fatalf("get repo %v, want %v", m, own)
	}
	if m := b.json("GET", "/api/groups/"+gid+"/repos/"+repoA, nil, 200); m["key"] != repoA || m["can_write"] != false {
		t.Fatalf("B gets A's repo %v", m)
	}
	if rs := b.json("GET", "/api/groups/"+gid+"/repos", nil, 200)["repos"].([]any); len(rs) != 2 {
		t.Fatalf("B lists repos %v", rs)
	}
	media := "/api/groups/" + gid + "/repos/" + repoA + "/media"

	// A small upload, then B refreshes and reads it.
	photo := make([]byte, 100<<10+7)
	for i := range photo {
		photo[i] = byte(i * 7)
	}
	up := a.json("POST", media+"/photo.jpg", bytes.NewReader(photo), 200)
	photoHash, _ := blake3Hex(bytes.NewReader(photo))
	if up["name"] != "photo.jpg" || up["file_hash"] != photoHash || len(up["updated_collection_hash"].(string)) != 64 {
		t.Fatalf("upload %v (want hash %s)", up, photoHash)
	}
	fs := a.json("GET", media, nil, 200)["files"].([]any)
	if len(fs) != 1 || fs[0].(map[string]any)["name"] != "photo.jpg" || fs[0].(map[string]any)["size"] != float64(len(photo)) || fs[0].(map[string]any)["created_at"] == nil {
		t.Fatalf("media list %v", fs)
	}
	ref := b.json("POST", "/api/groups/"+gid+"/refresh", nil, 200)
	var ra map[string]any
	for _, r := range ref["repos"].([]any) {
		if r.(map[string]any)["key"] == repoA {
			ra = r.(map[string]any)
		}
	}
	if ref["status"] != "success" || ra == nil || ra["can_write"] != false || ra["repo_hash"] != up["updated_collection_hash"] ||
		len(ra["refreshed_files"].([]any)) != 1 || len(ra["all_files"].([]any)) != 1 || ra["all_files"].([]any)[0] != "photo.jpg" {
		t.Fatalf("refresh %v", ref)
	}
	ref = b.json("POST", "/api/groups/"+gid+"/refresh", nil, 200)
	for _, r := range ref["repos"].([]any) {
		if n := len(r.(map[string]any)["refreshed_files"].([]any)); n != 0 {
			t.Fatalf("second refresh fetched %d files: %v", n, ref)
		}
	}
	resp = b.do("GET", media+"/photo.jpg", nil)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, photo) || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("B GET photo: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(got))
	}
	resp = b.do("GET", media+"/photo.jpg", nil, "Range", "bytes=1000-1999")
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, photo[1000:2000]) {
		t.Fatalf("B GET photo range: %d, %d bytes", resp.StatusCode, len(got))
	}

	// A 64 MiB upload on A and download on B stream: the heap of this
	// process (both daemons and the client) grows far less than the file.
	bigHash, _ := blake3Hex(genReader(1, bigSize))
	hw := watchHeap()
	start := time.Now()
	up = a.json("POST", media+"/big.bin", genReader(1, bigSize), 200)
	upTime := time.Since(start)
	if grow := hw.growth(); grow > 16<<20 {
		t.Errorf("upload of %d MiB grew the heap by %d MiB", bigSize>>20, grow>>20)
	} else {
		t.Logf("upload %d MiB in %v, heap growth %.1f MiB", bigSize>>20, upTime.Round(time.Millisecond), float64(grow)/(1<<20))
	}
	if up["file_hash"] != bigHash || up["size"] != float64(bigSize) {
		t.Fatalf("big upload %v, want hash %s", up, bigHash)
	}
	// The fetch behind the GET may hold up to a QUIC stream receive window
	// (16 MiB) in memory while the disk lags the link, plus its write
	// buffers; a download that buffered the file would grow by 64 MiB.
	hw = watchHeap()
	start = time.Now()
	resp = b.do("GET", media+"/big.bin", nil)
	gotHash, n := blake3Hex(resp.Body)
	resp.Body.Close()
	if grow := hw.growth(); grow > 24<<20 {
		t.Errorf("download of %d MiB grew the heap by %d MiB", bigSize>>20, grow>>20)
	} else {
		t.Logf("fetch and download %d MiB in %v, heap growth %.1f MiB", bigSize>>20, time.Since(start).Round(time.Millisecond), float64(grow)/(1<<20))
	}
	if resp.StatusCode != 200 || n != bigSize || gotHash != bigHash || resp.Header.Get("ETag") != `"`+bigHash+`"` {
		t.Fatalf("B GET big: %d, %d bytes, hash %s etag %s, want %s", resp.StatusCode, n, gotHash, resp.Header.Get("ETag"), bigHash)
	}

	// Delete: the collection changes and the file is gone.
	var ch string
	if err := json.Unmarshal(a.raw("DELETE", media+"/photo.jpg", nil, 200), &ch); err != nil || len(ch) != 64 || ch == up["updated_collection_hash"] {
		t.Fatalf("delete: collection %q, %v (before %v)", ch, err, up["updated_collection_hash"])
	}
	if fs := a.json("GET", media, nil, 200)["files"].([]any); len(fs) != 1 || fs[0].(map[string]any)["name"] != "big.bin" {
		t.Fatalf("after delete: %v", fs)
	}

	// Errors: the Save routes answer 400 for a body that does not decode,
	// 413 over the limit, 500 for the rest, as save-rust does.
	unknown := key.RecordKey{9, 9, 9}.String()
	a.wantErr("POST", "/api/groups", `{"name":`, 400, "request body")
	a.wantErr("POST", "/api/groups/"+gid+"/repos", `{"name":""}`, 400, "name")
	a.wantErr("GET", "/api/groups/"+gid+"/repos/zz", nil, 400, "repo id")
	a.wantErr("POST", media+"/"+strings.Repeat("n", 256), "x", 400, "bad name")
	a.wantErr("POST", media+"/a%00b", "x", 400, "NUL")
	a.wantErr("POST", "/api/groups", strings.NewReader(`{"name":"x"}`), 415, "application/json")
	b.wantErr("POST", media+"/mine.txt", "x", 500, "read-only")
	b.wantErr("DELETE", media+"/big.bin", nil, 500, "read-only")
	a.wantErr("GET", "/api/groups/"+unknown, nil, 500, "unknown group")
	a.wantErr("GET", "/api/groups/"+unknown+"/repos", nil, 500, "unknown group")
	a.wantErr("POST", "/api/groups/"+unknown+"/refresh", nil, 500, "unknown group")
	a.wantErr("GET", "/api/groups/"+gid+"/repos/"+unknown, nil, 500, "unknown repo")
	a.wantErr("GET", "/api/groups/"+gid+"/repos/"+unknown+"/media", nil, 500, "unknown repo")
	a.wantErr("GET", media+"/nope.bin", nil, 500, "not found")
	a.wantErr("DELETE", media+"/nope.bin", nil, 500, "not found")
	a.wantErr("PUT", media+"/big.bin", nil, 405, "no route")
	ownB := b.json("POST", "/api/groups/"+gid+"/repos", `{"name":"x"}`, 200)["key"].(string)
	mediaB := "/api/groups/" + gid + "/repos/" + ownB + "/media"
	// B's limit is 1 MiB: a declared length over it is refused unread, a
	// chunked body is cut off once it passes it.
	b.wantErr("POST", mediaB+"/big.bin", io.NopCloser(genReader(2, 2<<20)), 413, "too large")
	req, _ := http.NewRequest("POST", "http://dweb"+mediaB+"/big.bin", bytes.NewReader(make([]byte, 2<<20)))
	if resp, err := b.hc.Do(req); err != nil || resp.StatusCode != 413 {
		t.Fatalf("declared 2 MiB upload: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if fs := b.json("GET", mediaB, nil, 200)["files"].([]any); len(fs) != 0 {
		t.Fatalf("B's repo after refused uploads: %v", fs)
	}
	// A damaged local copy is a server error.
	up = a.json("POST", media+"/broken.bin", genReader(3, 1<<20), 200)
	if err := os.Remove(filepath.Join(dataA, "blobs", up["file_hash"].(string)+".data")); err != nil {
		t.Fatal(err)
	}
	a.wantErr("GET", media+"/broken.bin", nil, 500, "failed verification")

	// Leave: B's group is gone.
	if m := b.json("DELETE", "/api/groups/"+gid, nil, 200); len(m) != 0 {
		t.Fatalf("leave %v", m)
	}
	b.wantErr("GET", "/api/groups/"+gid, nil, 500, "unknown group")

	// Metrics count the requests above by route and status.
	resp = a.do("GET", "/metrics", nil)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`dweb_http_requests_total{code="200",route="GET /status"} 2`,
		`dweb_http_errors_total{code="500",route="GET /api/groups/{group}"} 1`,
		`dweb_http_errors_total{code="500",route="GET /api/groups/{group}/repos/{repo}/media/{name}"} 2`,
		`dweb_http_errors_total{code="405",route="none"} 1`,
		"dweb_groups 1", "dweb_peers ", "go_goroutines ",
		`dweb_dht_requests_total{op="get"}`,
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// A served B the 64 MiB file and holds the group's records.
	for name, min := range map[string]float64{"dweb_blob_bytes_sent_total": 64 << 20, "dweb_dht_records_held": 2} {
		v, ok := metricValue(string(raw), name)
		if !ok || v < min {
			t.Errorf("metric %s = %v (found %v), want at least %v", name, v, ok, min)
		}
	}
}

// metricValue returns the value of an unlabelled metric in a Prometheus
// text exposition.
func metricValue(text, name string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestHTTPListenLoopbackOnly: --http refuses a non-loopback address unless
// --http-allow-remote, before anything starts.
func TestHTTPListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "10.1.2.3:0", "example.com:0"} {
		if _, err := httpapi.ListenTCP(addr, false); err == nil || !strings.Contains(err.Error(), "--http-allow-remote") {
			t.Errorf("%s: %v, want a refusal naming --http-allow-remote", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1", "127.0.0.1:http-nope"} {
		if _, err := httpapi.ListenTCP(addr, false); err == nil {
			t.Errorf("%s: accepted", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		ln, err := httpapi.ListenTCP(addr, false)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		ln.Close()
	}
	code, _, e := runCLI(t, "--data", t.TempDir(), "serve", "--http", "0.0.0.0:8080")
	if code != exitUsage || !strings.Contains(e, "--http-allow-remote") {
		t.Fatalf("serve --http 0.0.0.0:8080: exit %d %q", code, e)
	}
}
