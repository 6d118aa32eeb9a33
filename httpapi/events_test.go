package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
)

// eventNode starts one real node and serves the API over it on a unix
// socket, as the daemon does, with a short heartbeat. It returns the node
// and a client of the socket.
func eventNode(t *testing.T) (*core.Backend, *http.Client, func()) {
	t.Helper()
	dir := t.TempDir()
	b, err := core.New(core.Options{DataDir: filepath.Join(dir, "node"), ListenAddr: "127.0.0.1:0", DeviceName: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		b.Close()
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: New(b, Options{EventHeartbeat: 50 * time.Millisecond})}
	go srv.Serve(ln)
	var once sync.Once
	closeNode := func() { once.Do(func() { b.Close() }) }
	t.Cleanup(func() {
		srv.Close()
		closeNode()
	})
	var d net.Dialer
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", sock)
	}}}
	return b, hc, closeNode
}

// openEvents opens the event stream with query q and Last-Event-ID last
// (0: none); it returns the response (status checked by the caller).
func openEvents(t *testing.T, hc *http.Client, q string, last uint64) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://dweb"+EventsPath+q, nil)
	if last != 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(last, 10))
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// nextSSE returns the next event of es, failing t after 5 s.
func nextSSE(t *testing.T, es *EventStream) core.Event {
	t.Helper()
	type res struct {
		ev  core.Event
		err error
	}
	ch := make(chan res, 1)
	go func() {
		ev, err := es.Next()
		ch <- res{ev, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("event stream: %v", r.err)
		}
		return r.ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	return core.Event{}
}

// TestEventsSSE: the stream's wire format (id, event, data lines, the
// heartbeat), the group and kinds filters, resuming with Last-Event-ID,
// the lagged event for an ID the ring no longer holds, refusals of bad
// queries, and the end of the stream when the node closes.
func TestEventsSSE(t *testing.T) {
	b, hc, closeNode := eventNode(t)
	ctx := context.Background()
	g, err := b.CreateGroup(ctx, "photos")
	if err != nil {
		t.Fatal(err)
	}
	resp := openEvents(t, hc, EventsQuery("photos", []string{core.KindFileAdded, core.KindFileRemoved}), 0)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET events: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	if l, _ := br.ReadString('\n'); l != ": dweb events\n" {
		t.Fatalf("first line %q", l)
	}

	p := filepath.Join(t.TempDir(), "a.jpg")
	os.WriteFile(p, []byte("jpeg bytes"), 0o600)
	fis, err := b.AddFiles(ctx, g.ID, []string{p})
	if err != nil {
		t.Fatal(err)
	}
	// The raw frame: a heartbeat may come first.
	var frame []string
	for len(frame) < 3 {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l = strings.TrimSuffix(l, "\n"); l != "" && l != ": ping" {
			frame = append(frame, l)
		}
	}
	var ev core.Event
	if !strings.HasPrefix(frame[0], "id: ") || frame[1] != "event: file.added" || !strings.HasPrefix(frame[2], "data: ") ||
		json.Unmarshal([]byte(strings.TrimPrefix(frame[2], "data: ")), &ev) != nil || frame[0] != "id: "+strconv.FormatUint(ev.ID, 10) {
		t.Fatalf("frame %q", frame)
	}
	if fe, ok := ev.Payload.(core.FileEvent); !ok || fe.Name != "a.jpg" || fe.Hash != fis[0].Hash || ev.Group != g.ID || !fe.Mine {
		t.Fatalf("file.added %+v", ev)
	}
	added := ev.ID
	es := NewEventStream(br)
	if err := b.RemoveFile(ctx, g.ID, "a.jpg"); err != nil {
		t.Fatal(err)
	}
	removed := nextSSE(t, es)
	if removed.Kind != core.KindFileRemoved || removed.Payload.(core.FileEvent).Name != "a.jpg" {
		t.Fatalf("after the remove: %+v", removed)
	}

	// Resume after the add: the remove comes again, and nothing else of
	// the kinds asked for happened in between.
	es2 := NewEventStream(openEvents(t, hc, EventsQuery(g.ID.String(), []string{core.KindFileAdded, core.KindFileRemoved}), added).Body)
	if again := nextSSE(t, es2); again.ID != removed.ID || again.Kind != core.KindFileRemoved {
		t.Fatalf("resumed with %+v, want %+v", again, removed)
	}
	// An ID from before this run: lagged first, then the whole ring.
	es3 := NewEventStream(openEvents(t, hc, "", 1).Body)
	if lag := nextSSE(t, es3); lag.Kind != core.KindLagged || lag.Payload.(core.LaggedEvent).Reason != "resume" {
		t.Fatalf("resume from 1: %+v", lag)
	}
	for {
		if ev := nextSSE(t, es3); ev.ID == removed.ID {
			break
		}
	}

	// Refusals.
	for _, c := range []struct {
		q    string
		last string
		code int
		part string
	}{
		{"?kinds=file.added,nope", "", 400, `"nope" is not an event kind`},
		{"?group=nope", "", 404, "nope"},
		{"", "x1", 400, "Last-Event-ID"},
	} {
		req, _ := http.NewRequest("GET", "http://dweb"+EventsPath+c.q, nil)
		if c.last != "" {
			req.Header.Set("Last-Event-ID", c.last)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(eb.Error, c.part) {
			t.Errorf("GET events%s (Last-Event-ID %q): %d %q, want %d with %q", c.q, c.last, resp.StatusCode, eb.Error, c.code, c.part)
		}
	}
	// Over TCP without the token, the guard refuses it.
	rec := httptest.NewRecorder()
	New(b, Options{}).ServeHTTP(rec, httptest.NewRequest("GET", EventsPath, nil))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("events over TCP without a token: %d", rec.Code)
	}

	// The node closing ends the stream.
	closeNode()
	for {
		if _, err := es.Next(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("stream end: %v", err)
			}
			break
		}
	}
}
