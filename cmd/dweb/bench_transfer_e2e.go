package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// btE2E is what --e2e adds to bench transfer's result: the real `dweb
// file get` of the same file, between two `dweb serve` daemons on
// loopback, timed from the CLI's start to its exit, next to `cp` of the
// source file; the MB/s figures and ratios are the medians over the
// rounds (the ratios: of each round's), the seconds the last round's.
type btE2E struct {
	MBs     float64 `json:"mb_s"` // file get: CLI, daemon, DHT lookups, tunnel, verified download into the store, export to the path
	Seconds float64 `json:"seconds"`
	// Exports counts how the default get's daemon wrote the file, over
	// the rounds: "mirror" (as the download verified the bytes), or the
	// method of an export from the store after the download ("reflink"
	// where the file system clones).
	Exports map[string]int `json:"exports"`
	// CPU: the CPU seconds the default get cost the sending and the
	// receiving daemon (last round), to set beside the bench's cpu_s:
	// the same work per byte, or not.
	CPU btCPUSplit `json:"cpu_s"`
	// CopyMBs: the same with the daemon's DWEB_EXPORT=copy, the export
	// that read the blob back through a buffer before copy_file_range and
	// reflinks.
	CopyMBs     float64 `json:"copy_export_mb_s"`
	CopySeconds float64 `json:"copy_export_seconds"`
	// MoveMBs: the same with `file get --no-store-copy`: the store's file
	// moved to the path (MoveExport says what the daemon did: "move",
	// or a copy's method when it could not).
	MoveMBs          float64 `json:"move_mb_s"`
	MoveSeconds      float64 `json:"move_seconds"`
	MoveExport       string  `json:"move_export"`
	RatioToBenchMove float64 `json:"ratio_to_bench_move"` // move_mb_s / the bench's mb_s
	CpMBs            float64 `json:"cp_mb_s"`             // cp of the source file (page cache warm) to the same file system, then fsync
	CpSeconds        float64 `json:"cp_seconds"`
	RatioToRaw       float64 `json:"ratio_to_raw"`   // mb_s / baseline_mb_s
	RatioToBench     float64 `json:"ratio_to_bench"` // mb_s / the bench's mb_s (the download into the store alone)
	RatioToCopy      float64 `json:"ratio_to_copy_export"`
	RatioToCp        float64 `json:"ratio_to_cp"`
	FileSystem       string  `json:"file_system"` // of the receiver's store and output dir
	// Verified: every file get's output hashed (BLAKE3) to its source's.
	Verified bool         `json:"verified"`
	Rounds   []btE2ERound `json:"rounds,omitempty"`
}

// btE2ERound is one round's end-to-end figures. Export is what the
// default get's daemon did to write the file: "mirror" when it wrote the
// file as the download verified the bytes, "reflink" when it cloned the
// store's copy (a file system that clones), else the method of a copy
// from the store after the download (a slower round's first suspect).
type btE2ERound struct {
	MBs     float64    `json:"mb_s"`
	Export  string     `json:"export"`
	CPU     btCPUSplit `json:"cpu_s"` // the default get's, per daemon
	CopyMBs float64    `json:"copy_export_mb_s"`
	MoveMBs float64    `json:"move_mb_s"`
	CpMBs   float64    `json:"cp_mb_s"`
}

// btDaemon is one `dweb serve` child process.
type btDaemon struct {
	exe, data string
	cmd       *exec.Cmd
	ready     readyLine
	done      chan error
}

// cpu returns the daemon's user and system CPU seconds so far (0 where
// /proc cannot tell).
func (d *btDaemon) cpu() float64 {
	u, s, _ := btProcCPU(strconv.Itoa(d.cmd.Process.Pid))
	return u + s
}

// btStartDaemon starts `dweb --data data --json serve args...` with env
// added to this process's environment and waits (30 s at most) for its
// ready line. Its log goes to data.log.
func btStartDaemon(ctx context.Context, exe, data string, env []string, args ...string) (*btDaemon, error) {
	logf, err := os.Create(data + ".log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(exe, append([]string{"--data", data, "--json", "serve", "--log-level", "warn"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &btDaemon{exe: exe, data: data, cmd: cmd, done: make(chan error, 1)}
	line := make(chan []byte, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if bytes.Contains(sc.Bytes(), []byte(`"socket"`)) {
				line <- bytes.Clone(sc.Bytes())
				break
			}
		}
		close(line)
		for sc.Scan() { // drain until exit
		}
		d.done <- cmd.Wait()
	}()
	select {
	case b, ok := <-line:
		if ok {
			if err := json.Unmarshal(b, &d.ready); err == nil {
				return d, nil
			}
		}
		d.stop()
		return nil, fmt.Errorf("bench transfer: daemon %s did not start (log: %s.log)", data, data)
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	d.stop()
	return nil, fmt.Errorf("bench transfer: daemon %s not ready in 30 s (log: %s.log)", data, data)
}

// stop sends SIGTERM and waits up to 15 s, then kills.
func (d *btDaemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// cli runs `dweb --data d.data --json args...` against the daemon.
func (d *btDaemon) cli(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.exe, append([]string{"--data", d.data, "--json"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("dweb %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// btE2ESetup is a group that one daemon (alice, bootstrapped by a
// second) shares the source file in; each get starts a fresh receiver.
type btE2ESetup struct {
	exe, dir, src string
	group, invite string
	boot, alice   *btDaemon
}

func btE2EStart(ctx context.Context, dir, src string) (_ *btE2ESetup, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	s := &btE2ESetup{exe: exe, dir: dir, src: src}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.boot, err = btStartDaemon(ctx, exe, filepath.Join(dir, "boot"), nil); err != nil {
		return nil, err
	}
	if s.alice, err = btStartDaemon(ctx, exe, filepath.Join(dir, "alice"), nil, "--bootstrap", s.boot.ready.Contact); err != nil {
		return nil, err
	}
	out, err := s.alice.cli(ctx, "group", "create", "bench")
	if err != nil {
		return nil, err
	}
	var g struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(out, &g); err != nil || g.Key == "" {
		return nil, fmt.Errorf("bench transfer: group create said %q (%v)", out, err)
	}
	s.group = g.Key
	if _, err := s.alice.cli(ctx, "file", "add", s.group, src); err != nil {
		return nil, err
	}
	if out, err = exec.CommandContext(ctx, exe, "--data", s.alice.data, "group", "invite", s.group).Output(); err != nil {
		return nil, fmt.Errorf("bench transfer: group invite: %w", err)
	}
	s.invite = strings.TrimSpace(string(out))
	return s, nil
}

func (s *btE2ESetup) close() {
	for _, d := range []*btDaemon{s.alice, s.boot} {
		if d != nil {
			d.stop()
		}
	}
}

// get starts a fresh receiver daemon (env added to its environment), has
// it join the group and list the file, then times `dweb file get` of the
// file (with flags added) to a path beside its data dir; it returns the
// seconds, the BLAKE3 hash of the output and the export method the get
// reported, and removes the receiver and the output.
func (s *btE2ESetup) get(ctx context.Context, env []string, flags ...string) (float64, string, string, btCPUSplit, error) {
	data := filepath.Join(s.dir, "bob")
	out := filepath.Join(s.dir, "got")
	defer os.RemoveAll(data)
	defer os.Remove(out)
	bob, err := btStartDaemon(ctx, s.exe, data, env)
	if err != nil {
		return 0, "", "", btCPUSplit{}, err
	}
	defer bob.stop()
	if _, err := bob.cli(ctx, "group", "join", s.invite); err != nil {
		return 0, "", "", btCPUSplit{}, err
	}
	name := filepath.Base(s.src)
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := bob.cli(ctx, "file", "list", s.group)
		var files []struct {
			Name string `json:"name"`
		}
		if err == nil && json.Unmarshal(b, &files) == nil && len(files) == 1 && files[0].Name == name {
			break
		}
		if time.Now().After(deadline) {
			return 0, "", "", btCPUSplit{}, fmt.Errorf("bench transfer: the receiver does not list %s after 60 s (%s, %v)", name, b, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	a0, b0 := s.alice.cpu(), bob.cpu()
	t := time.Now()
	got, err := bob.cli(ctx, append([]string{"file", "get", s.group, name, "-o", out}, flags...)...)
	if err != nil {
		return 0, "", "", btCPUSplit{}, err
	}
	sec := time.Since(t).Seconds()
	cpu := btCPUSplit{Sender: bsRound(s.alice.cpu() - a0), Receiver: bsRound(bob.cpu() - b0)}
	var fi struct {
		Export string `json:"export"`
	}
	json.Unmarshal(got, &fi)
	h, err := btHashFile(out)
	return sec, h, fi.Export, cpu, err
}

// btCp times `cp src dst` and an fsync of dst, then removes dst.
func btCp(ctx context.Context, src, dst string) (float64, error) {
	defer os.Remove(dst)
	t := time.Now()
	if out, err := exec.CommandContext(ctx, "cp", src, dst).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("cp: %w: %s", err, out)
	}
	f, err := os.Open(dst)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return time.Since(t).Seconds(), nil
}

// btE2ERun is round number round of --e2e: file get with the default
// export, with DWEB_EXPORT=copy and with --no-store-copy (the order
// turning with the round, so that a drift of the machine's speed does not
// always favour one), then cp. secs are those four times, methods the
// exports the three gets reported, cpu the default get's CPU seconds per
// daemon; verified is false if a get's output differs from the source
// (BLAKE3 want).
func btE2ERun(ctx context.Context, s *btE2ESetup, want string, round int) (secs [4]float64, methods [3]string, cpu btCPUSplit, verified bool, err error) {
	verified = true
	for k := range 3 {
		i := (k + round) % 3
		var env, flags []string
		switch i {
		case 1:
			env = []string{"DWEB_EXPORT=copy"}
		case 2:
			flags = []string{"--no-store-copy"}
		}
		sec, h, m, c, err := s.get(ctx, env, flags...)
		if err != nil {
			return secs, methods, cpu, false, err
		}
		if i == 0 {
			cpu = c
		}
		if h != want {
			fmt.Fprintf(os.Stderr, "bench transfer: file get (env %q, flags %q) wrote BLAKE3 %s, the source has %s\n", env, flags, h, want)
			verified = false
		}
		secs[i], methods[i] = sec, m
	}
	secs[3], err = btCp(ctx, s.src, filepath.Join(s.dir, "cp-copy"))
	return secs, methods, cpu, verified, err
}
