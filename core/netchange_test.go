package core

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// netChangeEnv carries TestNetChangeNode's role from TestNetworkChange.
const netChangeEnv = "DWEB_NETCHANGE_NODE"

type netChangeRole struct {
	Role   string `json:"role"` // "bob" or "phone"
	Dir    string `json:"dir"`
	Listen string `json:"listen"`
	Boot   string `json:"boot,omitempty"`
	Invite string `json:"invite,omitempty"`
}

// netnsCmd runs ip with args, failing t with its output.
func netnsCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestNetworkChange: a phone's node in a network namespace of its own
// (10.78.1.1 on a veth to bob's namespace, a default route over it)
// shares a file with bob; then its address changes, as from Wi-Fi to
// mobile data (10.78.2.1 added, 10.78.1.1 removed). The node must notice
// within 5 s, far below the one-minute poll it falls back to, so through
// the kernel's notifications; republish its tunnel descriptor with the
// new address; and redial, so that bob, who can no longer reach the old
// address, gets the next file it adds. Needs root and iproute2; every
// address is inside the two namespaces the test creates and removes.
func TestNetworkChange(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("network namespaces are Linux's")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (ip netns)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip for network namespaces:", err)
	}
	tag := fmt.Sprintf("dwnc%d", os.Getpid()%1000000)
	nsA, nsB := tag+"a", tag+"b"
	for _, ns := range []string{nsA, nsB} {
		netnsCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	netnsCmd(t, "link", "add", "name", "v0", "netns", nsA, "type", "veth", "peer", "name", "v1", "netns", nsB)
	for _, c := range [][]string{
		{"-n", nsA, "link", "set", "lo", "up"},
		{"-n", nsA, "link", "set", "v0", "up"},
		{"-n", nsA, "addr", "add", "10.78.1.1/24", "dev", "v0"},
		{"-n", nsA, "route", "add", "default", "dev", "v0"},
		{"-n", nsB, "link", "set", "lo", "up"},
		{"-n", nsB, "link", "set", "v1", "up"},
		{"-n", nsB, "addr", "add", "10.78.1.2/24", "dev", "v1"},
		{"-n", nsB, "addr", "add", "10.78.2.2/24", "dev", "v1"},
	} {
		netnsCmd(t, c...)
	}

	tmp := t.TempDir()
	bob := startNetChangeNode(t, nsB, netChangeRole{Role: "bob", Dir: filepath.Join(tmp, "bob"), Listen: "10.78.1.2:0"})
	ready := strings.Fields(bob.expect(t, "ready", 30*time.Second))
	if len(ready) != 2 {
		t.Fatalf("bob's ready line: %q", ready)
	}
	phone := startNetChangeNode(t, nsA, netChangeRole{Role: "phone", Dir: filepath.Join(tmp, "phone"), Listen: "0.0.0.0:0", Boot: ready[0], Invite: ready[1]})
	phone.expect(t, "ready", 30*time.Second)
	phone.say(t, "add before-change.txt")
	bob.expect(t, "got before-change.txt", 15*time.Second)

	t0 := time.Now()
	netnsCmd(t, "-n", nsA, "addr", "add", "10.78.2.1/24", "dev", "v0")
	netnsCmd(t, "-n", nsA, "addr", "del", "10.78.1.1/24", "dev", "v0")
	for {
		addrs := phone.expect(t, "tunnel", 5*time.Second)
		if strings.Contains(addrs, "10.78.2.1:") && !strings.Contains(addrs, "10.78.1.1:") {
			t.Logf("the phone republished its tunnel descriptor %v after its address changed: %s", time.Since(t0), addrs)
			break
		}
	}
	t1 := time.Now()
	phone.say(t, "add after-change.txt")
	bob.expect(t, "got after-change.txt", 15*time.Second)
	t.Logf("bob got the file the phone added after the change %v after its add", time.Since(t1))
}

// netChangeChild is one TestNetChangeNode process in its namespace.
type netChangeChild struct {
	in    io.WriteCloser
	lines chan string
}

func startNetChangeNode(t *testing.T, ns string, role netChangeRole) *netChangeChild {
	t.Helper()
	js, _ := json.Marshal(role)
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestNetChangeNode$", "-test.v")
	cmd.Env = append(os.Environ(), netChangeEnv+"="+string(js))
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	c := &netChangeChild{in: in, lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), "NODE "); ok {
				c.lines <- l
			}
		}
		close(c.lines)
	}()
	return c
}

// expect returns the rest of the child's next line that starts with
// prefix, skipping others; it fails t after d.
func (c *netChangeChild) expect(t *testing.T, prefix string, d time.Duration) string {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("the node's process ended before saying %q", prefix)
			}
			if rest, found := strings.CutPrefix(l, prefix); found {
				return strings.TrimSpace(rest)
			}
		case <-timer.C:
			t.Fatalf("the node did not say %q within %v", prefix, d)
		}
	}
}

func (c *netChangeChild) say(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// TestNetChangeNode is a node of TestNetworkChange, run in a namespace of
// its own; it is skipped unless that test runs it. It says "NODE ..."
// lines on stdout: bob "ready CONTACT INVITE" and "got NAME" for each of
// the phone's files; the phone "ready", "tunnel CONTACT" at each
// publication of its tunnel descriptor, and it adds a file at each "add
// NAME" line on stdin.
func TestNetChangeNode(t *testing.T) {
	env := os.Getenv(netChangeEnv)
	if env == "" {
		t.Skip("a node of TestNetworkChange, run in a network namespace")
	}
	var r netChangeRole
	if err := json.Unmarshal([]byte(env), &r); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, 2*time.Minute)
	opts := Options{ListenAddr: r.Listen, DeviceName: r.Role}
	if r.Boot != "" {
		opts.Bootstrap = []string{r.Boot}
	}
	b := startWith(t, r.Dir, opts, false)
	sub := b.Subscribe(SubscribeOptions{Kinds: []string{KindFileAdded, KindPublicationState}})
	defer sub.Close()
	say := func(format string, args ...any) { fmt.Printf("NODE "+format+"\n", args...) }
	var g key.RecordKey
	if r.Role == "bob" {
		gi, err := b.CreateGroup(ctx, "netchange")
		if err != nil {
			t.Fatal(err)
		}
		inv, err := b.Invite(gi.ID)
		if err != nil {
			t.Fatal(err)
		}
		say("ready %s %s", b.Contact(), inv)
	} else {
		gi, err := b.JoinGroup(ctx, r.Invite)
		if err != nil {
			t.Fatal(err)
		}
		g = gi.ID
		say("ready")
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			switch p := ev.Payload.(type) {
			case FileEvent:
				if !p.Mine {
					say("got %s", p.Name)
				}
			case PublicationEvent:
				if p.Record == "tunnel" && p.State == "published" {
					say("tunnel %s", strings.Join(b.tunnelDescriptor().Addrs, " "))
				}
			}
		case l, ok := <-lines:
			if !ok {
				return
			}
			if name, found := strings.CutPrefix(l, "add "); found {
				p, _ := writeFile(t, r.Dir, name, 2000)
				if _, err := b.AddFiles(ctx, g, []string{p}); err != nil {
					t.Fatal(err)
				}
			}
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

// TestNetworkChangedRedials: NetworkChanged (what an app calls when the
// platform tells it of a new network) closes the node's connections and
// redials its contacts; while paused it does nothing.
func TestNetworkChangedRedials(t *testing.T) {
	tmp := t.TempDir()
	nodes := startNodes(t, tmp, "boot", "phone")
	boot, phone := nodes[0], nodes[1]
	waitBootedT(t, phone)
	dials := phone.curEP().Stats().Dials
	phone.NetworkChanged()
	waitFor(t, "the phone to redial the boot node", func() bool {
		return phone.curEP().Stats().Dials > dials && slices.Contains(phone.Peers(), boot.Contact())
	})
	if err := phone.Pause(); err != nil {
		t.Fatal(err)
	}
	phone.NetworkChanged() // nothing to redial, nothing to fail
	if err := phone.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
}
