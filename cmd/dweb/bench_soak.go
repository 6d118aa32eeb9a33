package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/httpapi"
	"github.com/dwebkit/dweb/internal/netem"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/spf13/cobra"
)

func init() { benchCommands = append(benchCommands, benchSoakCmd) }

// benchSoakResult is the JSON line that `dweb bench soak` prints.
type benchSoakResult struct {
	FilesConfirmed  int     `json:"files_confirmed"`  // files added (add answered OK) found, with their BLAKE3, on the adder and on every member whose sync listed them
	FilesLost       int     `json:"files_lost"`       // files missing, or with other bytes, on at least one of those nodes
	UnverifiedBytes int64   `json:"unverified_bytes"` // bytes held under a file's hash whose BLAKE3 is another
	CopiesChecked   int     `json:"copies_checked"`   // (file, node) pairs checked on disk
	PeakRSSMB       float64 `json:"peak_rss_mb"`      // largest VmHWM of any daemon process, sampled every second and before each kill
	RSSBoundMB      float64 `json:"rss_bound_mb"`
	// Refused sums dweb_rcmgr_refused_total over the nodes, by
	// "scope/kind", scraped from each node's /metrics before every kill
	// and at the end (a restart starts its counters afresh).
	Refused    map[string]float64 `json:"refused"`
	Kills      int                `json:"kills"`
	Adds       int                `json:"adds"`        // adds answered OK
	AddErrors  int                `json:"add_errors"`  // adds that failed (node down or killed during the call, ...)
	Syncs      int                `json:"syncs"`       // syncs answered OK
	SyncErrors int                `json:"sync_errors"` // syncs that failed
	// SyncFailedFiles counts files a sync OK listed as not fetched this
	// time (their member down, say): no copy is required of them.
	SyncFailedFiles int        `json:"sync_failed_files"`
	Attack          soakAttack `json:"attack"`
	Groups          int        `json:"groups"`
	Link            soakLink   `json:"link"`
	DurationS       float64    `json:"duration_s"` // the churn phase; setup and the final check come on top
	Nodes           int        `json:"nodes"`
	Lost            []string   `json:"lost,omitempty"` // the first few losses, described
	// Errors are the first few failed adds and syncs, described.
	Errors []string `json:"errors,omitempty"`
}

// soakLink says which nodes sat behind an emulated lossy link: their own
// UDP socket shaped (`dweb serve --emulate-link`, netem.Conn), so every
// datagram they sent or received crossed it, whoever the peer.
type soakLink struct {
	Nodes []int  `json:"nodes"` // indexes of the shaped nodes
	Shape string `json:"shape"` // netem.ParseOptions syntax
}

// soakOptions are the settings of one soak run.
type soakOptions struct {
	nodes     int
	groups    int // 0: one per 6 nodes
	duration  time.Duration
	killFrac  float64 // fraction of the nodes killed (SIGKILL) and restarted once each
	rssBound  float64 // MB of VmHWM a daemon may reach
	maxFileKB int     // files added are 1 KiB..maxFileKB KiB
	attack    bool
	lossyFrac float64                          // fraction of the nodes whose socket is shaped by link
	link      string                           // netem.ParseOptions syntax
	logf      func(format string, args ...any) // progress; nil: none
}

func benchSoakCmd(a *app) *cobra.Command {
	o := soakOptions{}
	var dir string
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "run N daemons that add and sync files while some are killed and an attacker stalls streams; check every saved file survives",
		Long: `soak starts --nodes separate "dweb serve" processes (this binary again) on
loopback, puts them in a few groups, and for --duration has every member
add small random files and sync its group, while 30 % of the nodes are
killed with SIGKILL and restarted, and an attacker opens stalled streams and
Sybil DHT stores against a third of them. Then it stops every daemon and
checks on disk that each file whose add answered OK is held, with its
BLAKE3, by its adder and by every member whose sync listed it. Prints one
JSON line; exits 1 if a file is lost, bytes fail their hash, or a daemon's
peak RSS passes --rss-bound-mb.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.nodes < 3 || o.nodes > 200 {
				return &usageError{fmt.Errorf("--nodes %d: want 3..200", o.nodes)}
			}
			if o.duration < time.Second || o.duration > 24*time.Hour {
				return &usageError{fmt.Errorf("--duration %v: want 1s..24h", o.duration)}
			}
			if o.killFrac < 0 || o.killFrac > 0.9 {
				return &usageError{fmt.Errorf("--kill %v: want 0..0.9", o.killFrac)}
			}
			if o.groups < 0 || o.groups > o.nodes/2 {
				return &usageError{fmt.Errorf("--groups %d: want 0 (one per 6 nodes) up to nodes/2", o.groups)}
			}
			if o.lossyFrac < 0 || o.lossyFrac > 1 {
				return &usageError{fmt.Errorf("--lossy %v: want 0..1", o.lossyFrac)}
			}
			if _, err := netem.ParseOptions(o.link); err != nil {
				return &usageError{fmt.Errorf("--link: %w", err)}
			}
			if o.maxFileKB < 1 || o.maxFileKB > 64<<10 {
				return &usageError{fmt.Errorf("--max-file-kb %d: want 1..65536", o.maxFileKB)}
			}
			if !a.json {
				o.logf = func(format string, args ...any) { fmt.Fprintf(a.stderr, "soak: "+format+"\n", args...) }
			}
			tmp, err := os.MkdirTemp(dir, "dweb-soak-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			res, err := benchSoak(cmd.Context(), tmp, o)
			if err != nil {
				return err
			}
			bad := res.failure()
			if a.json {
				return errors.Join(a.printJSON(res), bad)
			}
			fmt.Fprintf(a.stdout, "%d nodes, %d kills, %.0f s: %d files confirmed, %d lost, %d unverified bytes; peak RSS %.0f MB (bound %.0f); refused %v\n",
				res.Nodes, res.Kills, res.DurationS, res.FilesConfirmed, res.FilesLost, res.UnverifiedBytes, res.PeakRSSMB, res.RSSBoundMB, res.Refused)
			return bad
		},
	}
	cmd.Flags().IntVar(&o.nodes, "nodes", 30, "daemons, each its own process")
	cmd.Flags().IntVar(&o.groups, "groups", 0, "groups the nodes are split into (default: one per 6 nodes)")
	cmd.Flags().DurationVar(&o.duration, "duration", 10*time.Minute, "how long the nodes add, sync and get killed")
	cmd.Flags().Float64Var(&o.killFrac, "kill", 0.3, "fraction of the nodes killed with SIGKILL and restarted during the run")
	cmd.Flags().Float64Var(&o.rssBound, "rss-bound-mb", 256, "largest peak RSS (VmHWM) a daemon may reach, MB")
	cmd.Flags().IntVar(&o.maxFileKB, "max-file-kb", 256, "largest file added, KiB (sizes are uniform from 1 KiB)")
	cmd.Flags().Float64Var(&o.lossyFrac, "lossy", 0.3, "fraction of the nodes behind an emulated lossy link (never node 0, the bootstrap)")
	cmd.Flags().StringVar(&o.link, "link", defaultSoakLink, "the lossy link: delay, jitter, loss, rate (bytes/s) as `dweb serve --emulate-link` takes them")
	cmd.Flags().BoolVar(&o.attack, "attack", true, "run the attacker (stalled streams, Sybil DHT stores)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the nodes' data (default: the system temp dir)")
	return cmd
}

// failure says why a result fails the bench, or nil.
func (r *benchSoakResult) failure() error {
	var errs []error
	if r.FilesLost > 0 || r.UnverifiedBytes > 0 {
		errs = append(errs, fmt.Errorf("bench soak: %d files lost, %d bytes fail their BLAKE3", r.FilesLost, r.UnverifiedBytes))
	}
	if r.PeakRSSMB > r.RSSBoundMB {
		errs = append(errs, fmt.Errorf("bench soak: a daemon's peak RSS reached %.0f MB, over the %.0f MB bound", r.PeakRSSMB, r.RSSBoundMB))
	}
	if r.FilesConfirmed == 0 {
		errs = append(errs, errors.New("bench soak: no file was confirmed: the run checked nothing"))
	}
	return errors.Join(errs...)
}

// soakFile is one file whose add answered OK.
type soakFile struct {
	name  string
	hash  blobsync.Hash
	size  int64
	adder int
	group int
	// holders are the nodes that must hold it: the adder, and every member
	// whose sync listed it as neither failed nor missing.
	holders map[int]bool
}

// soakNode is one daemon process and what the bench knows of it.
type soakNode struct {
	idx   int
	dir   string // --data
	src   string // the files it adds, kept to the end (adds may reference them)
	group int
	cli   *client
	log   *os.File

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	addr    string // host:port, reused on restart so others' contacts stay valid
	lossy   bool   // behind the emulated link
	contact string
	up      bool
}

// soak is one run's shared state.
type soak struct {
	o      soakOptions
	dir    string
	exe    string
	nodes  []*soakNode
	groups []string // group keys

	mu       sync.Mutex
	files    map[string]*soakFile
	res      benchSoakResult
	rss      float64
	killedAt map[int][]time.Time // when each node was killed
}

func benchSoak(ctx context.Context, dir string, o soakOptions) (*benchSoakResult, error) {
	if o.groups == 0 {
		o.groups = max(1, o.nodes/6)
	}
	if o.logf == nil {
		o.logf = func(string, ...any) {}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	s := &soak{o: o, dir: dir, exe: exe, files: make(map[string]*soakFile), killedAt: make(map[int][]time.Time)}
	s.res.Refused = map[string]float64{}
	s.res.RSSBoundMB = o.rssBound
	s.res.Nodes, s.res.Groups = o.nodes, o.groups
	// Every child is killed on the way out, whatever happened.
	defer s.killAll()
	// Setup, the run and the check are bounded together.
	ctx, cancel := context.WithTimeout(ctx, o.duration+5*time.Minute)
	defer cancel()

	if err := s.startAll(ctx); err != nil {
		return nil, err
	}
	if err := s.makeGroups(ctx); err != nil {
		return nil, err
	}
	o.logf("%d nodes up in %d groups; churn for %v", o.nodes, o.groups, o.duration)

	start := time.Now()
	runCtx, stopRun := context.WithTimeout(ctx, o.duration)
	defer stopRun()
	var wg sync.WaitGroup
	for _, n := range s.nodes {
		wg.Go(func() { s.work(runCtx, ctx, n) })
	}
	wg.Go(func() { s.sampleRSS(runCtx) })
	wg.Go(func() { s.churn(runCtx) })
	if o.attack {
		wg.Go(func() { s.res.Attack = soakAttackRun(runCtx, dir, s.victims(), s.killedSince) })
	}
	wg.Wait()
	s.res.DurationS = bsRound(time.Since(start).Seconds())

	// Every node up again, its counters and memory read; then stopped
	// cleanly, so that the check reads stores nobody writes.
	for _, n := range s.nodes {
		if !n.isUp() {
			if err := s.start(ctx, n); err != nil {
				return nil, err
			}
		}
	}
	for _, n := range s.nodes {
		wg.Go(func() {
			s.scrape(ctx, n)
			s.noteRSS(n)
			s.stop(n, syscall.SIGTERM, 20*time.Second)
		})
	}
	wg.Wait()
	s.check()
	s.res.PeakRSSMB = bsRound(s.rss)
	return &s.res, nil
}

// defaultSoakLink is a poor mobile path: 20 ms each way (±5 ms), 1 % of
// the datagrams lost each way, 2 MB/s.
const defaultSoakLink = "delay=20ms,jitter=5ms,loss=1%,rate=2000000"

// soakNodeAddr is node i's loopback address: eight nodes per /24
// (127.0.10.0/24, 127.0.11.0/24, ...), each on an address of its own, so
// that the resource manager's IP and prefix scopes (counted on loopback
// with --limits-loopback) see distinct hosts on a few networks, and the
// attacker (soakAttackAddr) a network of its own.
func soakNodeAddr(i int) string { return fmt.Sprintf("127.0.%d.%d", 10+i/8, 1+i%8) }

// startAll starts node 0 (everyone's bootstrap), then the others.
func (s *soak) startAll(ctx context.Context) error {
	lossy := int(s.o.lossyFrac*float64(s.o.nodes) + 0.5)
	lossy = min(lossy, s.o.nodes-1)
	s.res.Link = soakLink{Nodes: []int{}, Shape: s.o.link}
	for i := range s.o.nodes {
		n := &soakNode{idx: i, dir: filepath.Join(s.dir, fmt.Sprintf("n%03d", i)), group: i % s.o.groups, addr: soakNodeAddr(i) + ":0"}
		// The last nodes are the lossy ones: spread over the groups.
		if i >= s.o.nodes-lossy {
			n.lossy = true
			s.res.Link.Nodes = append(s.res.Link.Nodes, i)
		}
		n.src = filepath.Join(n.dir, "src")
		if err := os.MkdirAll(n.src, 0o700); err != nil {
			return err
		}
		a := &app{dataDir: n.dir}
		n.cli = a.client()
		s.nodes = append(s.nodes, n)
	}
	if err := s.start(ctx, s.nodes[0]); err != nil {
		return err
	}
	errs := make([]error, len(s.nodes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4) // starts at once: a daemon's start costs CPU
	for _, n := range s.nodes[1:] {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[n.idx] = s.start(ctx, n)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// start runs n's daemon and waits for its ready line.
func (s *soak) start(ctx context.Context, n *soakNode) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.up {
		return nil
	}
	if n.log == nil {
		f, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("n%03d.log", n.idx)))
		if err != nil {
			return err
		}
		n.log = f
	}
	args := []string{"--data", n.dir, "--json", "serve", "--listen", n.addr, "--log-level", "warn", "--limits-loopback"}
	if n.lossy {
		args = append(args, "--emulate-link", s.o.link)
	}
	if n.idx != 0 {
		args = append(args, "--bootstrap", s.nodes[0].contact)
	}
	cmd := exec.Command(s.exe, args...)
	cmd.Stderr = n.log
	dieWithParent(cmd) // the daemons die with the bench, even when it is killed itself
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	lines := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		l, _ := br.ReadString('\n')
		lines <- l
		io.Copy(io.Discard, br)
	}()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	var r readyLine
	if err := json.Unmarshal([]byte(line), &r); err != nil || r.Addr == "" {
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("bench soak: node %d did not start (ready line %q; log %s): %v", n.idx, line, n.log.Name(), err)
	}
	n.cmd, n.exited, n.addr, n.contact, n.up = cmd, exited, r.Addr, r.Contact, true
	return nil
}

func (n *soakNode) isUp() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.up
}

func (n *soakNode) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up {
		return 0
	}
	return n.cmd.Process.Pid
}

// stop sends sig to n's daemon and waits up to grace for it to exit,
// then kills it.
func (s *soak) stop(n *soakNode, sig syscall.Signal, grace time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up {
		return
	}
	n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
	case <-time.After(grace):
		n.cmd.Process.Kill()
		<-n.exited
	}
	n.up = false
}

// killAll kills every daemon still running and closes the logs.
func (s *soak) killAll() {
	for _, n := range s.nodes {
		s.stop(n, syscall.SIGKILL, 10*time.Second)
		if n.log != nil {
			n.log.Close()
		}
	}
}

// makeGroups has the first member of each group create it and the others
// join from its invite.
func (s *soak) makeGroups(ctx context.Context) error {
	s.groups = make([]string, s.o.groups)
	for g := range s.o.groups {
		creator := s.nodes[g]
		var grp httpapi.Group
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := creator.cli.call(cctx, http.MethodPost, "/api/groups", httpapi.CreateGroupRequest{Name: fmt.Sprintf("soak%d", g)}, &grp)
		var inv httpapi.InviteInfo
		if err == nil {
			s.groups[g] = grp.ID.String()
			err = creator.cli.call(cctx, http.MethodGet, "/dweb/v1/groups/"+s.groups[g]+"/invite", nil, &inv)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("bench soak: group %d: %w", g, err)
		}
		errs := make([]error, len(s.nodes))
		var wg sync.WaitGroup
		for _, n := range s.nodes {
			if n.group != g || n == creator {
				continue
			}
			wg.Go(func() {
				jctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				var j httpapi.Group
				if err := n.cli.call(jctx, http.MethodPost, "/api/groups/join_from_url", httpapi.JoinURLRequest{URL: inv.URI}, &j); err != nil {
					errs[n.idx] = fmt.Errorf("bench soak: node %d joins group %d: %w", n.idx, g, err)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return nil
}

// work is one member's life until run ends: add a file or sync its group,
// a pause, again. A call in flight when run ends finishes, bounded by ctx
// and its own timeout: the end of the churn phase is not a failure of the
// node. Calls to a node that is down (or killed during the call) fail and
// are counted; nothing is required of them.
func (s *soak) work(run, ctx context.Context, n *soakNode) {
	rng := mrand.New(mrand.NewPCG(uint64(n.idx), uint64(time.Now().UnixNano())))
	for seq := 0; run.Err() == nil; seq++ {
		pause := time.Duration(500+rng.IntN(1500)) * time.Millisecond
		select {
		case <-run.Done():
			return
		case <-time.After(pause):
		}
		if !n.isUp() {
			continue
		}
		// Every member adds first, then syncs, so that even a short run
		// has files to check and copies to confirm; then one call in
		// three is an add.
		if seq == 0 || seq > 1 && rng.IntN(3) == 0 {
			s.add(ctx, n, seq, 1024*(1+rng.IntN(s.o.maxFileKB)))
		} else {
			s.sync(ctx, n)
		}
	}
}

// noteError keeps the first few call failures for the result; s.mu held.
func (s *soak) noteError(n *soakNode, call string, err error) {
	if len(s.res.Errors) < 8 {
		s.res.Errors = append(s.res.Errors, fmt.Sprintf("node %d %s: %v", n.idx, call, err))
	}
}

// add writes a random file of size bytes and adds it to n's repo.
func (s *soak) add(ctx context.Context, n *soakNode, seq, size int) {
	name := fmt.Sprintf("n%03d-%06d.bin", n.idx, seq)
	path := filepath.Join(n.src, name)
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return
	}
	want, err := btHashReader(strings.NewReader(string(b)))
	if err != nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var body httpapi.FileInfosBody
	err = n.cli.call(cctx, http.MethodPost, "/dweb/v1/groups/"+s.groups[n.group]+"/files", httpapi.AddFilesRequest{Paths: []string{path}}, &body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && (len(body.Files) != 1 || body.Files[0].Hash.String() != want) {
		err = fmt.Errorf("answered %d files, want one with hash %s", len(body.Files), want)
	}
	if err != nil {
		s.res.AddErrors++
		s.noteError(n, "add", err)
		return
	}
	s.res.Adds++
	s.files[name] = &soakFile{name: name, hash: body.Files[0].Hash, size: int64(size), adder: n.idx, group: n.group, holders: map[int]bool{n.idx: true}}
}

// sync runs n's group sync and notes every file it listed as not failed:
// n must hold it from then on.
func (s *soak) sync(ctx context.Context, n *soakNode) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	repos, err := n.cli.syncGroup(cctx, url.PathEscape(s.groups[n.group]), nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.res.SyncErrors++
		s.noteError(n, "sync", err)
		return
	}
	s.res.Syncs++
	for _, r := range repos {
		failed := make(map[string]bool, len(r.FailedFiles))
		for _, f := range r.FailedFiles {
			failed[f] = true
		}
		s.res.SyncFailedFiles += len(failed)
		for _, name := range r.AllFiles {
			if f := s.files[name]; f != nil && !failed[name] && f.group == n.group {
				f.holders[n.idx] = true
			}
		}
	}
}

// churn kills killFrac of the nodes (never node 0, the bootstrap), one at
// a time at even intervals over the first 80 % of the run, and restarts
// each a second or three later on its address.
func (s *soak) churn(ctx context.Context) {
	k := int(s.o.killFrac*float64(s.o.nodes) + 0.5)
	k = min(k, s.o.nodes-1)
	if k == 0 {
		return
	}
	order := mrand.Perm(s.o.nodes - 1)
	every := s.o.duration * 8 / 10 / time.Duration(k+1)
	for i := range k {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		n := s.nodes[order[i]+1]
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		s.scrape(cctx, n)
		cancel()
		s.noteRSS(n)
		s.stop(n, syscall.SIGKILL, 10*time.Second)
		s.mu.Lock()
		s.res.Kills++
		s.killedAt[n.idx] = append(s.killedAt[n.idx], time.Now())
		s.mu.Unlock()
		s.o.logf("killed node %d", n.idx)
		time.Sleep(time.Duration(1000+mrand.IntN(2000)) * time.Millisecond)
		// The restart is not bound to the run's context: a node killed
		// late must be up again for the check.
		if err := s.start(context.Background(), n); err != nil {
			s.o.logf("restart node %d: %v (retried at the end)", n.idx, err)
		}
	}
}

// sampleRSS notes every daemon's VmHWM each second.
func (s *soak) sampleRSS(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, n := range s.nodes {
			s.noteRSS(n)
		}
	}
}

// noteRSS reads n's peak resident set (VmHWM) and keeps the largest.
func (s *soak) noteRSS(n *soakNode) {
	pid := n.pid()
	if pid == 0 {
		return
	}
	mb := procPeakRSS(pid)
	s.mu.Lock()
	s.rss = max(s.rss, mb)
	s.mu.Unlock()
}

// procPeakRSS returns process pid's VmHWM in MB (0 if unknown).
func procPeakRSS(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			if f := strings.Fields(rest); len(f) >= 1 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// scrape adds n's dweb_rcmgr_refused_total counters to the result.
func (s *soak) scrape(ctx context.Context, n *soakNode) {
	if !n.isUp() {
		return
	}
	resp, err := n.cli.send(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	got := parseRefused(io.LimitReader(resp.Body, maxResponseBytes))
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range got {
		s.res.Refused[k] += v
	}
}

// parseRefused reads dweb_rcmgr_refused_total{kind="K",scope="S"} V lines
// of a Prometheus text exposition, keyed "S/K".
func parseRefused(r io.Reader) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "dweb_rcmgr_refused_total{")
		if !ok {
			continue
		}
		labels, val, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || v == 0 {
			continue
		}
		var scope, kind string
		for _, l := range strings.Split(labels, ",") {
			k, lv, _ := strings.Cut(l, "=")
			lv = strings.Trim(lv, `"`)
			switch k {
			case "scope":
				scope = lv
			case "kind":
				kind = lv
			}
		}
		out[scope+"/"+kind] += v
	}
	return out
}

// victims are the addresses of every third node, node 0 included.
func (s *soak) victims() []soakVictim {
	var v []soakVictim
	for _, n := range s.nodes {
		if n.idx%3 == 0 {
			n.mu.Lock()
			v = append(v, soakVictim{idx: n.idx, contact: n.contact})
			n.mu.Unlock()
		}
	}
	return v
}

// killedSince reports whether node idx was killed after t.
func (s *soak) killedSince(idx int, t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.killedAt[idx] {
		if k.After(t) {
			return true
		}
	}
	return false
}

// check opens every node's store (the daemons are stopped) and hashes
// each file it must hold, as the store holds it on disk.
func (s *soak) check() {
	byNode := make(map[int][]*soakFile)
	names := make([]string, 0, len(s.files))
	for name, f := range s.files {
		names = append(names, name)
		for h := range f.holders {
			byNode[h] = append(byNode[h], f)
		}
	}
	sort.Strings(names)
	bad := make(map[string]bool)
	for idx, fs := range byNode {
		n := s.nodes[idx]
		missing := func(f *soakFile, why string) {
			bad[f.name] = true
			if len(s.res.Lost) < 10 {
				s.res.Lost = append(s.res.Lost, fmt.Sprintf("%s (added by node %d) on node %d: %s", f.name, f.adder, idx, why))
			}
		}
		db, err := store.Open(n.dir, store.Options{})
		if err != nil {
			for _, f := range fs {
				missing(f, "store: "+err.Error())
			}
			continue
		}
		bs, err := blobsync.OpenStore(db, filepath.Join(n.dir, "blobs"), blobsync.StoreOptions{})
		if err != nil {
			db.Close()
			for _, f := range fs {
				missing(f, "blob store: "+err.Error())
			}
			continue
		}
		for _, f := range fs {
			s.res.CopiesChecked++
			got, err := btHashStored(bs, f.hash)
			switch {
			case err != nil:
				missing(f, err.Error())
			case got != f.hash.String():
				missing(f, "BLAKE3 "+got)
				s.res.UnverifiedBytes += f.size
			}
		}
		db.Close()
	}
	s.res.FilesLost = len(bad)
	s.res.FilesConfirmed = len(names) - len(bad)
}
