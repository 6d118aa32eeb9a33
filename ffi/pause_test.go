package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwebkit/dweb/ffi/internal/cabi"
	"github.com/dwebkit/dweb/internal/wakeups"
)

// cnode is a node opened through the C exports, with the events its
// callback received.
type cnode struct {
	h    int64
	mu   sync.Mutex
	cond *sync.Cond
	evs  []map[string]any
}

func openC(t *testing.T, cfg map[string]any) *cnode {
	t.Helper()
	b, _ := json.Marshal(cfg)
	n := &cnode{h: cabi.New(string(b))}
	if n.h <= 0 {
		t.Fatalf("dweb_new(%s) = %d", b, n.h)
	}
	n.cond = sync.NewCond(&n.mu)
	if rc := cabi.OnEvents(n.h, n.event); rc != 0 {
		t.Fatalf("dweb_set_event_callback = %d", rc)
	}
	return n
}

func (n *cnode) event(js string) {
	var m map[string]any
	json.Unmarshal([]byte(js), &m)
	n.mu.Lock()
	n.evs = append(n.evs, m)
	n.cond.Broadcast()
	n.mu.Unlock()
}

// call makes a dweb_call and decodes its result into out (if not nil); an
// error response fails t.
func (n *cnode) call(t *testing.T, method string, params any, out any) {
	t.Helper()
	p, _ := json.Marshal(params)
	raw := cabi.Call(n.h, method, string(p))
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(raw), &r); err != nil || r.Error != nil {
		t.Fatalf("dweb_call %s %s: %s", method, p, raw)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result, out); err != nil {
			t.Fatalf("%s result %s: %v", method, r.Result, err)
		}
	}
}

// wait returns the first event since index from that keep accepts, and
// the index after it; it fails t after d.
func (n *cnode) wait(t *testing.T, from int, d time.Duration, what string, keep func(map[string]any) bool) (map[string]any, int) {
	t.Helper()
	stop := time.AfterFunc(d, func() { n.mu.Lock(); n.cond.Broadcast(); n.mu.Unlock() })
	defer stop.Stop()
	start := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		for i := from; i < len(n.evs); i++ {
			if keep(n.evs[i]) {
				return n.evs[i], i + 1
			}
		}
		from = len(n.evs)
		if time.Since(start) >= d {
			t.Fatalf("no %s event within %v", what, d)
		}
		n.cond.Wait()
	}
}

func fileAdded(name string) func(map[string]any) bool {
	return func(e map[string]any) bool {
		p, _ := e["payload"].(map[string]any)
		return e["type"] == "file.added" && p["name"] == name
	}
}

func tunnelPublished(e map[string]any) bool {
	p, _ := e["payload"].(map[string]any)
	return e["type"] == "publication.state" && p["record"] == "tunnel" && p["state"] == "published"
}

// childEnv carries TestPausedNodeChild's setup from its parent.
const childEnv = "DWEB_FFI_PAUSE_CHILD"

type childSetup struct {
	DataDir string `json:"data_dir"`
	Boot    string `json:"boot"`
	Invite  string `json:"invite"`
}

// resumeReport is what the child prints after its resume.
type resumeReport struct {
	ReadyMS       float64 `json:"ready_ms"`
	RepublishedMS float64 `json:"republished_ms"`
}

// TestPauseThroughABI: a node in a process of its own (this test binary
// run as TestPausedNodeChild), driven only through the C exports, joins
// alice's group and pauses with node.pause. Its threads then do not wake
// at all over a 3 s window (counted by the kernel: wakeups.Count; a
// second window if the runtime's own once-a-minute wakeup fell in the
// first), and
// alice's node hears of its shutdown; node.resume answers once it
// listens again, its tunnel descriptor is published within a second, and
// it hears of the file alice added while it was paused.
func TestPauseThroughABI(t *testing.T) {
	if _, _, err := wakeups.Count(os.Getpid()); errors.Is(err, wakeups.ErrUnsupported) {
		t.Skip(err)
	}
	tmp := t.TempDir()
	alice := openC(t, map[string]any{"data_dir": filepath.Join(tmp, "alice"), "listen": "127.0.0.1:0", "device_name": "alice"})
	defer cabi.Close(alice.h)
	var id struct {
		NodeID  string `json:"node_id"`
		Contact string `json:"contact"`
	}
	alice.call(t, "node.id", map[string]any{}, &id)
	var g struct{ Key string }
	alice.call(t, "group.create", map[string]any{"name": "pause"}, &g)
	warm := filepath.Join(tmp, "warmup.txt")
	os.WriteFile(warm, []byte("warm-up"), 0o600)
	alice.call(t, "file.add", map[string]any{"group": g.Key, "path": warm}, nil)
	var inv struct{ URI string }
	alice.call(t, "group.invite", map[string]any{"group": g.Key}, &inv)

	setup, _ := json.Marshal(childSetup{DataDir: filepath.Join(tmp, "phone"), Boot: id.Contact, Invite: inv.URI})
	cmd := exec.Command(os.Args[0], "-test.run=^TestPausedNodeChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+string(setup))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), "CHILD "); ok {
				lines <- l
			} else {
				t.Logf("child: %s", sc.Text())
			}
		}
		close(lines)
	}()
	expect := func(prefix string, d time.Duration) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok || !strings.HasPrefix(l, prefix) {
				t.Fatalf("child said %q (open %t), want %q", l, ok, prefix)
			}
			return strings.TrimSpace(strings.TrimPrefix(l, prefix))
		case <-time.After(d):
			t.Fatalf("child did not say %q within %v", prefix, d)
		}
		return ""
	}
	phoneID := expect("paused", 60*time.Second)
	alice.wait(t, 0, 5*time.Second, "peer.unreachable of the paused phone", func(e map[string]any) bool {
		p, _ := e["payload"].(map[string]any)
		return e["type"] == "peer.unreachable" && p["node"] == phoneID && p["reason"] == "shutdown"
	})

	// Two windows: the Go runtime's own monitor thread wakes up to once a
	// minute in an idle process (and a forced GC every two), which may
	// fall in one of them, never in both; a timer or loop of the node
	// firing every few seconds falls in each.
	const window = 3 * time.Second
	time.Sleep(300 * time.Millisecond) // the pause's last goroutines end
	var woke []int64
	for range 2 {
		before, threads, err := wakeups.Count(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(window)
		after, _, err := wakeups.Count(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("paused node's process: %d wakeups in %v over %d threads", after-before, window, threads)
		if woke = append(woke, after-before); after == before {
			break
		}
	}
	if !slices.Contains(woke, 0) {
		t.Errorf("the paused node's process woke %v times in two windows of %v, want 0 in one", woke, window)
	}

	during := filepath.Join(tmp, "during-pause.txt")
	os.WriteFile(during, []byte("added while the phone was paused"), 0o600)
	alice.call(t, "file.add", map[string]any{"group": g.Key, "path": during}, nil)
	io.WriteString(stdin, "resume\n")
	var rep resumeReport
	if err := json.Unmarshal([]byte(expect("resumed", 30*time.Second)), &rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("resume: ready in %.1f ms, tunnel descriptor republished in %.1f ms", rep.ReadyMS, rep.RepublishedMS)
	if rep.ReadyMS <= 0 || rep.ReadyMS >= 1000 || rep.RepublishedMS < rep.ReadyMS || rep.RepublishedMS >= 1000 {
		t.Errorf("resume: ready %.1f ms, republished %.1f ms; want both under 1 s", rep.ReadyMS, rep.RepublishedMS)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

// TestPausedNodeChild is TestPauseThroughABI's paused node, in a process
// of its own; it is skipped unless that test runs it. It says "CHILD ..."
// lines on stdout and waits for "resume" on stdin.
func TestPausedNodeChild(t *testing.T) {
	env := os.Getenv(childEnv)
	if env == "" {
		t.Skip("the paused node of TestPauseThroughABI, run in a process of its own")
	}
	var s childSetup
	if err := json.Unmarshal([]byte(env), &s); err != nil {
		t.Fatal(err)
	}
	n := openC(t, map[string]any{"data_dir": s.DataDir, "listen": "127.0.0.1:0", "device_name": "phone", "bootstrap": []string{s.Boot}})
	defer cabi.Close(n.h)
	var id struct {
		NodeID string `json:"node_id"`
	}
	n.call(t, "node.id", map[string]any{}, &id)
	n.call(t, "group.join", map[string]any{"uri": s.Invite}, nil)
	_, next := n.wait(t, 0, 15*time.Second, "file.added of warmup.txt", fileAdded("warmup.txt"))
	var st struct{ Paused bool }
	n.call(t, "node.pause", map[string]any{}, &st)
	if !st.Paused {
		t.Fatal("node.pause answered paused false")
	}
	fmt.Println("CHILD paused", id.NodeID)
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "resume" {
		t.Fatalf("stdin: %q, %v", line, err)
	}
	n.mu.Lock()
	next = len(n.evs) // only what the resume brings
	n.mu.Unlock()
	t0 := time.Now()
	n.call(t, "node.resume", map[string]any{}, &st)
	ready := time.Since(t0)
	if st.Paused {
		t.Fatal("node.resume answered paused true")
	}
	n.wait(t, next, 5*time.Second, "publication.state of the tunnel descriptor", tunnelPublished)
	republished := time.Since(t0)
	n.wait(t, 0, 10*time.Second, "file.added of during-pause.txt", fileAdded("during-pause.txt"))
	rep, _ := json.Marshal(resumeReport{ReadyMS: ms(ready), RepublishedMS: ms(republished)})
	fmt.Println("CHILD resumed", string(rep))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
