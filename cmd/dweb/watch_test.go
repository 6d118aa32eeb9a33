package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
)

// lineWriter sends each complete line written to it to C, with the time
// it was written.
type lineWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	C   chan timedLine
}

type timedLine struct {
	text string
	at   time.Time
}

func newLineWriter() *lineWriter { return &lineWriter{C: make(chan timedLine, 4096)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line) // no newline yet: keep it
			return len(p), nil
		}
		w.C <- timedLine{strings.TrimSuffix(line, "\n"), time.Now()}
	}
}

// watcher is `dweb watch` running in-process until stop.
type watcher struct {
	out, errs *lineWriter
	stop      func() int // cancels it and returns its exit code
	done      chan int
	at        time.Time // when the line nextJSON last returned was printed
}

func startWatch(t *testing.T, ctx context.Context, args ...string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{out: newLineWriter(), errs: newLineWriter(), done: make(chan int, 1)}
	go func() { w.done <- run(ctx, append([]string{"watch"}, args...), w.out, w.errs) }()
	w.stop = func() int {
		cancel()
		return <-w.done
	}
	t.Cleanup(func() { cancel() })
	return w
}

// nextJSON returns the next event line of w that keep accepts, as an
// event; it fails t after d.
func (w *watcher) nextJSON(t *testing.T, d time.Duration, what string, keep func(core.Event) bool) core.Event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case l := <-w.out.C:
			var ev core.Event
			if err := json.Unmarshal([]byte(l.text), &ev); err != nil {
				t.Fatalf("dweb watch --json printed %q: %v", l.text, err)
			}
			if keep(ev) {
				w.at = l.at
				return ev
			}
		case code := <-w.done:
			w.done <- code
			t.Fatalf("dweb watch exited %d before %s", code, what)
		case <-timer.C:
			t.Fatalf("dweb watch printed no %s within %v", what, d)
		}
	}
}

func fileEvent(kind, name string) func(core.Event) bool {
	return func(ev core.Event) bool {
		fe, ok := ev.Payload.(core.FileEvent)
		return ev.Kind == kind && ok && fe.Name == name
	}
}

// sseClient reads bob's GET /dweb/v1/events over his daemon's socket.
type sseClient struct {
	evs  chan core.Event
	body interface{ Close() error }
}

func openSSE(t *testing.T, sock, q string, last uint64) *sseClient {
	t.Helper()
	c := newAPIClient(t, sock)
	req, _ := http.NewRequest("GET", "http://dweb"+httpapi.EventsPath+q, nil)
	if last != 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(last, 10))
	}
	resp, err := c.hc.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET events: %v %v", resp, err)
	}
	s := &sseClient{evs: make(chan core.Event, 1024), body: resp.Body}
	t.Cleanup(func() { resp.Body.Close() })
	go func() {
		defer close(s.evs)
		es := httpapi.NewEventStream(resp.Body)
		for {
			ev, err := es.Next()
			if err != nil {
				return
			}
			s.evs <- ev
		}
	}()
	return s
}

func (s *sseClient) next(t *testing.T, d time.Duration, what string, keep func(core.Event) bool) core.Event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-s.evs:
			if !ok {
				t.Fatalf("event stream ended before %s", what)
			}
			if keep(ev) {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %s on the event stream within %v", what, d)
		}
	}
}

// eventPair is two daemons, alice and bob (bob restartable), in one group
// "g", with a helper to run the CLI.
type eventPair struct {
	t            *testing.T
	ctx          context.Context
	dataA, dataB string
	readyB       readyLine
	stopB        func()
	boot         string
	nodeA        string // alice's node ID
}

func newEventPair(t *testing.T, ctx context.Context) *eventPair {
	t.Helper()
	dataA, readyA := startDaemon(t, ctx)
	p := &eventPair{t: t, ctx: ctx, dataA: dataA, dataB: t.TempDir(), boot: readyA.Contact, nodeA: readyA.NodeID}
	p.startB()
	var inv httpapi.InviteInfo
	p.cli(dataA, nil, "group", "create", "g")
	p.cli(dataA, &inv, "group", "invite", "g")
	p.cli(p.dataB, nil, "group", "join", inv.URI)
	return p
}

func (p *eventPair) startB() {
	p.readyB, p.stopB = runDaemon(p.t, p.ctx, p.dataB, serveOptions{listen: "127.0.0.1:0", bootstrap: []string{p.boot}, logLevel: "warn"})
}

// cli runs dweb --json ARGS against data and decodes its output into v
// (if not nil).
func (p *eventPair) cli(data string, v any, args ...string) {
	p.t.Helper()
	code, out, errOut := runCLI(p.t, append([]string{"--data", data, "--json"}, args...)...)
	if code != 0 {
		p.t.Fatalf("dweb %v: exit %d: %s", args, code, errOut)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			p.t.Fatalf("dweb %v: %q: %v", args, out, err)
		}
	}
}

// add adds a new file of size bytes named name to alice's repo, and
// returns its info.
func (p *eventPair) add(name string, size int) core.FileInfo {
	p.t.Helper()
	path := filepath.Join(p.t.TempDir(), name)
	os.WriteFile(path, bytes.Repeat([]byte(name), size/len(name)+1)[:size], 0o600)
	var fis []core.FileInfo
	p.cli(p.dataA, &fis, "file", "add", "g", path)
	return fis[0]
}

// TestWatchAndEventStream: a file alice adds reaches bob's `dweb watch
// --json` and a client of bob's GET /dweb/v1/events within a second, with
// its name and hash; so does its removal. Both tell that alice's node
// became reachable as bob fetched her first collection. Both resume after an event ID;
// when bob's daemon stops, watch exits with an error that says so, and
// `watch --reconnect` waits for the daemon and goes on (after a lagged
// line: the IDs are of an earlier run).
func TestWatchAndEventStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p := newEventPair(t, ctx)
	kinds := []string{core.KindFileAdded, core.KindFileRemoved}
	// --since 1 replays what bob already has, so the warm-up file is seen
	// whenever the watch connects.
	w := startWatch(t, ctx, "--data", p.dataB, "--json", "g", "--kinds", strings.Join(kinds, ","), "--since", "1")
	sse := openSSE(t, p.readyB.Socket, httpapi.EventsQuery("g", kinds), 0)
	p.add("warmup.txt", 10)
	w.nextJSON(t, 15*time.Second, "warm-up file.added", fileEvent(core.KindFileAdded, "warmup.txt"))
	sse.next(t, 15*time.Second, "warm-up file.added", fileEvent(core.KindFileAdded, "warmup.txt"))
	// Bob's fetch of alice's collection opened a tunnel to her node: told
	// before the file events of that collection, so replayed here.
	peerKinds := []string{core.KindPeerReachable}
	wp := startWatch(t, ctx, "--data", p.dataB, "--json", "g", "--kinds", strings.Join(peerKinds, ","), "--since", "1")
	ssep := openSSE(t, p.readyB.Socket, httpapi.EventsQuery("g", peerKinds), 1)
	isAlice := func(ev core.Event) bool {
		pe, ok := ev.Payload.(core.PeerEvent)
		return ev.Kind == core.KindPeerReachable && ok && pe.Node.String() == p.nodeA
	}
	for _, ev := range []core.Event{
		wp.nextJSON(t, 5*time.Second, "peer.reachable of alice's node", isAlice),
		ssep.next(t, 5*time.Second, "peer.reachable of alice's node", isAlice),
	} {
		if pe := ev.Payload.(core.PeerEvent); pe.Reason != core.PeerTunnel || ev.Repo.IsZero() {
			t.Fatalf("peer.reachable %+v", ev)
		}
	}
	if code := wp.stop(); code != exitOK {
		t.Fatalf("interrupted watch: exit %d", code)
	}

	fi := p.add("photo.jpg", 50000)
	returned := time.Now()
	added := w.nextJSON(t, time.Second, "file.added of photo.jpg", fileEvent(core.KindFileAdded, "photo.jpg"))
	t.Logf("dweb watch on bob printed alice's file %v after her add returned", w.at.Sub(returned))
	sseAdded := sse.next(t, time.Second, "file.added of photo.jpg", fileEvent(core.KindFileAdded, "photo.jpg"))
	for _, ev := range []core.Event{added, sseAdded} {
		if fe := ev.Payload.(core.FileEvent); fe.Hash != fi.Hash || fe.Size != 50000 || fe.Mine || ev.Repo != fi.Repo || ev.ID != added.ID {
			t.Fatalf("file.added %+v %+v, want %+v", ev, fe, fi)
		}
	}

	p.cli(p.dataA, nil, "file", "rm", "g", "photo.jpg")
	removed := w.nextJSON(t, time.Second, "file.removed of photo.jpg", fileEvent(core.KindFileRemoved, "photo.jpg"))
	sse.next(t, time.Second, "file.removed of photo.jpg", fileEvent(core.KindFileRemoved, "photo.jpg"))

	// Resume after the add: the removal is replayed.
	again := openSSE(t, p.readyB.Socket, httpapi.EventsQuery("g", kinds), added.ID)
	if ev := again.next(t, time.Second, "replayed event", func(core.Event) bool { return true }); ev.ID != removed.ID {
		t.Fatalf("Last-Event-ID %d replayed %+v, want %+v", added.ID, ev, removed)
	}
	w2 := startWatch(t, ctx, "--data", p.dataB, "--json", "watch-nothing-else", "--since", strconv.FormatUint(added.ID, 10))
	if code := <-w2.done; code != exitError {
		t.Fatalf("watch of an unknown group: exit %d", code)
	}
	w3 := startWatch(t, ctx, "--data", p.dataB, "--json", "--kinds", "file.removed", "--since", strconv.FormatUint(added.ID, 10))
	if ev := w3.nextJSON(t, time.Second, "replayed file.removed", func(core.Event) bool { return true }); ev.ID != removed.ID {
		t.Fatalf("watch --since %d replayed %+v, want %+v", added.ID, ev, removed)
	}
	if code := w3.stop(); code != exitOK {
		t.Fatalf("interrupted watch: exit %d", code)
	}
	// Without --json: one readable line per event.
	w4 := startWatch(t, ctx, "--data", p.dataB, "g", "--kinds", "file.added", "--since", strconv.FormatUint(added.ID-1, 10))
	select {
	case l := <-w4.out.C:
		if !strings.Contains(l.text, "file.added") || !strings.Contains(l.text, "  g  ") || !strings.Contains(l.text, "/photo.jpg  50000 bytes  "+fi.Hash.String()) {
			t.Fatalf("readable line %q", l.text)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no readable line")
	}
	if code := w4.stop(); code != exitOK {
		t.Fatalf("interrupted watch: exit %d", code)
	}

	// bob's daemon stops: the plain watch exits with an error, the SSE
	// stream ends; a --reconnect watch waits for the daemon and resumes.
	p.stopB()
	select {
	case code := <-w.done:
		var e map[string]string
		errLine := (<-w.errs.C).text
		if code != exitError || json.Unmarshal([]byte(errLine), &e) != nil || !strings.Contains(e["error"], "ended the event stream") {
			t.Fatalf("watch after the daemon stopped: exit %d, stderr %q", code, errLine)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch still running 10 s after the daemon stopped")
	}
	for range sse.evs {
	}
	rw := startWatch(t, ctx, "--data", p.dataB, "--reconnect", "--json", "g", "--kinds", "file.added", "--since", strconv.FormatUint(removed.ID, 10))
	time.Sleep(3 * reconnectWait / 2) // it finds no daemon at least once
	p.startB()
	lag := rw.nextJSON(t, 15*time.Second, "lagged after reconnecting", func(core.Event) bool { return true })
	if lp, ok := lag.Payload.(core.LaggedEvent); lag.Kind != core.KindLagged || !ok || lp.Reason != "resume" {
		t.Fatalf("first line after reconnecting: %+v", lag)
	}
	p.add("after-restart.txt", 100)
	rw.nextJSON(t, 15*time.Second, "file.added after the restart", fileEvent(core.KindFileAdded, "after-restart.txt"))
	if code := rw.stop(); code != exitOK {
		t.Fatalf("interrupted --reconnect watch: exit %d", code)
	}
}

// TestEventLatency measures how long a file alice adds takes to reach
// bob's `dweb watch --json` line, from her `dweb file add` returning (a
// negative time: the line came first) and from its start: both daemons on
// loopback, 20 adds one after the other (docs/BENCHMARKS.md, "Events
// (offline-first issue)").
func TestEventLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("latency figure: not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p := newEventPair(t, ctx)
	w := startWatch(t, ctx, "--data", p.dataB, "--json", "g", "--kinds", core.KindFileAdded, "--since", "1")
	p.add("warmup.txt", 10)
	w.nextJSON(t, 15*time.Second, "warm-up file.added", fileEvent(core.KindFileAdded, "warmup.txt"))
	const adds = 20
	var fromReturn, fromStart []time.Duration
	for i := range adds {
		name := "photo-" + strconv.Itoa(i) + ".jpg"
		start := time.Now()
		p.add(name, 40000)
		returned := time.Now()
		w.nextJSON(t, 5*time.Second, "file.added of "+name, fileEvent(core.KindFileAdded, name))
		fromReturn = append(fromReturn, w.at.Sub(returned))
		fromStart = append(fromStart, w.at.Sub(start))
	}
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
	}
	for _, m := range []struct {
		what string
		lat  []time.Duration
	}{{"returning", fromReturn}, {"starting", fromStart}} {
		slices.Sort(m.lat)
		t.Logf("event latency, alice's dweb file add %s -> bob's dweb watch line, %d adds: median %s (min %s, p90 %s, max %s)",
			m.what, adds, ms(m.lat[adds/2]), ms(m.lat[0]), ms(m.lat[adds*9/10]), ms(m.lat[adds-1]))
	}
}

// TestWatchUsage: a bad kind or too many arguments is a usage error,
// found before any daemon is contacted; with no daemon, exit 3.
func TestWatchUsage(t *testing.T) {
	data := t.TempDir()
	for _, args := range [][]string{{"watch", "--kinds", "file.added,nope"}, {"watch", "a", "b"}} {
		if code, _, e := runCLI(t, append([]string{"--data", data}, args...)...); code != exitUsage || e == "" {
			t.Errorf("dweb %v: exit %d %q, want %d", args, code, e, exitUsage)
		}
	}
	if code, _, e := runCLI(t, "--data", data, "watch"); code != exitNoDaemon || !strings.Contains(e, "no daemon") {
		t.Errorf("dweb watch without a daemon: exit %d %q", code, e)
	}
}
