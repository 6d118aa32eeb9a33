package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/wakeups"
	"github.com/spf13/cobra"
)

func init() { benchCommands = append(benchCommands, benchPausedNodeCmd) }

// The pause part of `dweb bench offline`: a phone's node in a process of
// its own (this binary, `dweb bench paused-node`), so that the kernel's
// count of its threads' wakeups (internal/wakeups) is the node's and the
// Go runtime's alone. The parent drives it by lines on its stdin and reads
// its answers on its stdout:
//
//	child:  ready NODEID        (joined, heard of the first file)
//	parent: pause               child: paused
//	parent: resume              child: resumed {"ready_ms":..,"republished_ms":..}
//	parent: end (or EOF)        the child closes its node and exits
//
// With --idle the child opens no node: it says "ready" and waits, the
// wakeups of a Go process doing nothing (the floor the runtime sets).

// pausedResume is the child's "resumed" line: from Resume's call to its
// return (ready), and to the publication of its tunnel descriptor.
type pausedResume struct {
	ReadyMS       float64 `json:"ready_ms"`
	RepublishedMS float64 `json:"republished_ms"`
}

// Names of the files the pause bench adds.
const (
	pausedWarmFile   = "paused-warmup.bin"
	pausedDuringFile = "added-while-paused.bin"
)

func benchPausedNodeCmd(a *app) *cobra.Command {
	var dir, boot, invite string
	var idle bool
	cmd := &cobra.Command{
		Use:    "paused-node",
		Short:  "the node `dweb bench offline` pauses, in a process of its own (driven on stdin)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if idle {
				fmt.Fprintln(a.stdout, "ready")
				_, err := io.Copy(io.Discard, os.Stdin)
				return err
			}
			if dir == "" || boot == "" || invite == "" {
				return &usageError{errors.New("--dir, --boot and --invite are required")}
			}
			return pausedNode(cmd.Context(), a.stdout, os.Stdin, dir, boot, invite)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the node's data directory")
	cmd.Flags().StringVar(&boot, "boot", "", "the contact to enter the DHT through")
	cmd.Flags().StringVar(&invite, "invite", "", "the group to join")
	cmd.Flags().BoolVar(&idle, "idle", false, "open no node: a Go process that waits")
	return cmd
}

// pausedNode is the child's side of the protocol above.
func pausedNode(ctx context.Context, out io.Writer, stdin io.Reader, dir, boot, invite string) error {
	in := bufio.NewReader(stdin)
	expect := func(word string) error {
		l, err := in.ReadString('\n')
		if got := strings.TrimSpace(l); got != word {
			return fmt.Errorf("paused-node: read %q (%v), want %q", got, err, word)
		}
		return nil
	}
	b, err := core.New(core.Options{DataDir: dir, Bootstrap: []string{boot}, DeviceName: "phone"})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Start(ctx); err != nil {
		return err
	}
	sub := b.Subscribe(core.SubscribeOptions{Kinds: []string{core.KindFileAdded, core.KindPublicationState}})
	defer sub.Close()
	if _, err := b.JoinGroup(ctx, invite); err != nil {
		return err
	}
	wait := func(d time.Duration, what string, keep func(core.Event) bool) error {
		t := time.NewTimer(d)
		defer t.Stop()
		for {
			select {
			case ev := <-sub.C:
				if keep(ev) {
					return nil
				}
			case <-t.C:
				return fmt.Errorf("paused-node: no %s within %v", what, d)
			}
		}
	}
	added := func(name string) func(core.Event) bool {
		return func(ev core.Event) bool {
			fe, ok := ev.Payload.(core.FileEvent)
			return ev.Kind == core.KindFileAdded && ok && fe.Name == name
		}
	}
	if err := wait(30*time.Second, "file.added of "+pausedWarmFile, added(pausedWarmFile)); err != nil {
		return err
	}
	fmt.Fprintln(out, "ready", b.NodeID())
	if err := expect("pause"); err != nil {
		return err
	}
	if err := b.Pause(); err != nil {
		return err
	}
	fmt.Fprintln(out, "paused")
	if err := expect("resume"); err != nil {
		return err
	}
	last := b.LastEventID() // events before the resume are still queued
	t0 := time.Now()
	if err := b.Resume(ctx); err != nil {
		return err
	}
	ready := time.Since(t0)
	if err := wait(10*time.Second, "publication of the tunnel descriptor", func(ev core.Event) bool {
		pe, ok := ev.Payload.(core.PublicationEvent)
		return ok && ev.ID > last && pe.Record == "tunnel" && pe.State == "published"
	}); err != nil {
		return err
	}
	rep := pausedResume{ReadyMS: msOf(ready), RepublishedMS: msOf(time.Since(t0))}
	if err := wait(10*time.Second, "file.added of "+pausedDuringFile, added(pausedDuringFile)); err != nil {
		return err
	}
	js, _ := json.Marshal(rep)
	fmt.Fprintln(out, "resumed", string(js))
	in.ReadString('\n') // "end", or EOF when the parent went
	return nil
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pausedChild is a running `dweb bench paused-node`.
type pausedChild struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startPausedChild(ctx context.Context, args ...string) (*pausedChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, append([]string{"bench", "paused-node"}, args...)...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &pausedChild{cmd: cmd, in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c, nil
}

// expect returns the rest of the child's next line, which must start with
// word.
func (c *pausedChild) expect(word string, d time.Duration) (string, error) {
	select {
	case l, ok := <-c.lines:
		if !ok {
			return "", fmt.Errorf("the paused node's process ended before saying %q: %v", word, c.cmd.Wait())
		}
		rest, found := strings.CutPrefix(l, word)
		if !found {
			return "", fmt.Errorf("the paused node's process said %q, want %q", l, word)
		}
		return strings.TrimSpace(rest), nil
	case <-time.After(d):
		return "", fmt.Errorf("the paused node's process did not say %q within %v", word, d)
	}
}

func (c *pausedChild) say(word string) error {
	_, err := io.WriteString(c.in, word+"\n")
	return err
}

// stop ends the child and waits for it.
func (c *pausedChild) stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// wakeupsPerMin counts pid's wakeups over window, per minute.
func wakeupsPerMin(pid int, window time.Duration) (float64, error) {
	before, _, err := wakeups.Count(pid)
	if err != nil {
		return 0, err
	}
	time.Sleep(window)
	after, _, err := wakeups.Count(pid)
	if err != nil {
		return 0, err
	}
	return float64(after-before) * float64(time.Minute) / float64(window), nil
}

// benchPaused measures, on a phone's node in its own process that joined
// alice's group: its wakeups per minute idle and running, then paused,
// beside a Go process doing nothing; then its resume, with a file alice
// added meanwhile reaching it.
func benchPaused(ctx context.Context, res *benchOfflineResult, start func(string, core.Options) (*core.Backend, error), dir string, window time.Duration) error {
	res.WakeupWindowS = window.Seconds()
	if _, _, err := wakeups.Count(os.Getpid()); err != nil {
		return fmt.Errorf("paused wakeups: %w", err)
	}
	alice, err := start("pz-alice", core.Options{})
	if err != nil {
		return err
	}
	g, err := alice.CreateGroup(ctx, "pause")
	if err != nil {
		return err
	}
	add := func(name string) error {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("pause bench: "+name), 0o600); err != nil {
			return err
		}
		_, err := alice.AddFiles(ctx, g.ID, []string{p})
		return err
	}
	if err := add(pausedWarmFile); err != nil {
		return err
	}
	inv, err := alice.Invite(g.ID)
	if err != nil {
		return err
	}

	idle, err := startPausedChild(ctx, "--idle")
	if err != nil {
		return err
	}
	defer idle.stop()
	if _, err := idle.expect("ready", 30*time.Second); err != nil {
		return err
	}
	time.Sleep(time.Second) // the runtime's start-up work ends
	if res.IdleProcessWakeups, err = wakeupsPerMin(idle.cmd.Process.Pid, window); err != nil {
		return err
	}
	idle.stop()

	phone, err := startPausedChild(ctx, "--dir", filepath.Join(dir, "pz-phone"), "--boot", alice.Contact(), "--invite", inv)
	if err != nil {
		return err
	}
	defer phone.stop()
	id, err := phone.expect("ready", 60*time.Second)
	if err != nil {
		return err
	}
	if _, err := key.ParseNodeID(id); err != nil {
		return fmt.Errorf("the paused node's process said its ID is %q: %w", id, err)
	}
	if res.RunningWakeups, err = wakeupsPerMin(phone.cmd.Process.Pid, window); err != nil {
		return err
	}
	if err := phone.say("pause"); err != nil {
		return err
	}
	if _, err := phone.expect("paused", 30*time.Second); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond) // the pause's last goroutines end
	if res.PausedWakeups, err = wakeupsPerMin(phone.cmd.Process.Pid, window); err != nil {
		return err
	}
	if err := add(pausedDuringFile); err != nil {
		return err
	}
	if err := phone.say("resume"); err != nil {
		return err
	}
	line, err := phone.expect("resumed", 30*time.Second)
	if err != nil {
		return err
	}
	var rep pausedResume
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		return fmt.Errorf("the paused node's resume report %q: %w", line, err)
	}
	res.ResumeReady, res.ResumeRepublished = rep.ReadyMS, rep.RepublishedMS
	phone.say("end")
	return nil
}
