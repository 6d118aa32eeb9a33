package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/spf13/cobra"
)

func init() { benchCommands = append(benchCommands, benchOfflineCmd) }

// benchOfflineResult is the JSON that `dweb bench offline` prints: the
// offline-first issue's figures (docs/BENCHMARKS.md, "Offline-first"),
// each beside its baseline with the network up. Times are medians over
// Rounds, in milliseconds.
type benchOfflineResult struct {
	// ReadyDeadContacts: New and Start of a node restarted when every
	// contact it saved is down; ReadyLiveContacts: the same with them up.
	ReadyDeadContacts float64 `json:"ready_ms_dead_contacts"`
	ReadyLiveContacts float64 `json:"ready_ms_live_contacts"`
	// AddNoPeers: AddFiles of one file while every other member is down;
	// AddPeersUp: the same with them up.
	AddNoPeers float64 `json:"add_ms_no_peers"`
	AddPeersUp float64 `json:"add_ms_peers_up"`
	// PendingAfter: the publications waiting on the lone node after its
	// adds: its collection (rewritten by each add), and its name if that
	// was not out yet either.
	PendingAfter int `json:"publications_pending_after"`
	// ListProviderGone: List on a member restarted after the only other
	// member published a new collection and left (its new collection
	// cannot be fetched); ListProvidersUp: the same member's List with
	// everyone up. ListComplete: every listing with the provider gone
	// held every file the member had listed before, its own and the
	// other's; ListWarnings: the warnings of the last of them.
	ListProviderGone float64 `json:"list_ms_provider_gone"`
	// ListFirstProviderGone: the first of those listings, right after
	// the restart (the median's rounds follow it).
	ListFirstProviderGone float64 `json:"list_ms_provider_gone_first"`
	ListProvidersUp       float64 `json:"list_ms_providers_up"`
	ListComplete          bool    `json:"list_complete"`
	ListWarnings          int     `json:"list_warnings_provider_gone"`
	// FirstByteBackupOnly: from GetFile's call to its first verified byte
	// of a file that only a backup server can serve, every member that
	// added or held it having shut down cleanly just before;
	// FirstByteMembersUp: the same with them up. GetBackupOnly and
	// GetMembersUp: the whole GetFile. Files of BackupFileBytes.
	FirstByteBackupOnly float64 `json:"first_byte_ms_backup_only"`
	FirstByteMembersUp  float64 `json:"first_byte_ms_members_up"`
	GetBackupOnly       float64 `json:"get_ms_backup_only"`
	GetMembersUp        float64 `json:"get_ms_members_up"`
	BackupFileBytes     int64   `json:"backup_file_bytes"`
	// EventLatency: from alice's AddFiles call to the file.added event of
	// that file on bob, another member (its own node, through the DHT
	// watch and a fetch of her collection); EventAfterAdd: the same from
	// AddFiles returning. Files of FileBytes.
	EventLatency  float64 `json:"event_latency_ms"`
	EventAfterAdd float64 `json:"event_latency_ms_after_add"`
	// PausedWakeups: the wakeups per minute of the threads of a process
	// running one node, a member of a group with another node, while the
	// node is paused (core.Backend.Pause), counted by the kernel
	// (internal/wakeups) over WakeupWindowS; RunningWakeups: the same
	// node before its pause, idle on the network; IdleProcessWakeups: a
	// Go process (this binary) that opened no node, the floor the runtime
	// sets. ResumeReady and ResumeRepublished: from Resume's call to its
	// return, and to the publication of the node's tunnel descriptor (ms).
	PausedWakeups      float64 `json:"paused_wakeups_per_min"`
	RunningWakeups     float64 `json:"running_wakeups_per_min"`
	IdleProcessWakeups float64 `json:"idle_process_wakeups_per_min"`
	WakeupWindowS      float64 `json:"wakeup_window_s"`
	ResumeReady        float64 `json:"resume_ms"`
	ResumeRepublished  float64 `json:"resume_ms_republished"`
	FileBytes          int64   `json:"file_bytes"`
	Rounds             int     `json:"rounds"`
}

// benchOfflineCmd builds the offline situations with in-process nodes on
// loopback (real QUIC, real Pebble, each in its own directory): a phone
// whose saved contacts (two peers) are all down restarts; a member adds
// files while the only other member is down, after the other member's
// node timed hearing of its adds; a member lists after the other
// published a collection it cannot fetch and left; a phone's node, in a
// process of its own, pauses and resumes (bench_paused.go).
func benchOfflineCmd(a *app) *cobra.Command {
	var rounds int
	var sizeFlag, dir string
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "offline",
		Short: "start with every saved contact down, add with every peer down, list with the provider gone, beside the same with the network up",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rounds < 1 || rounds > 50 {
				return &usageError{fmt.Errorf("--rounds %d: want 1..50", rounds)}
			}
			size, err := bsParseSize(sizeFlag)
			if err != nil {
				return &usageError{err}
			}
			if size < 1 || size > 1<<30 {
				return &usageError{fmt.Errorf("--size %s: want 1 B..1 GiB", sizeFlag)}
			}
			if window < time.Second || window > 10*time.Minute {
				return &usageError{fmt.Errorf("--wakeup-window %v: want 1s..10m", window)}
			}
			tmp, err := os.MkdirTemp(dir, "dweb-bench-offline-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			res, err := benchOffline(cmd.Context(), tmp, rounds, size, window)
			if err != nil {
				return err
			}
			return a.printResult(res, "ready: %.1f ms with contacts dead, %.1f ms live; add: %.1f ms with no peers, %.1f ms with peers up; list: %.1f ms with the provider gone (complete %t), %.1f ms with it up; event: %.1f ms from an add to the other member's file.added; paused: %.1f wakeups/min (running %.1f, a bare Go process %.1f), resumed in %.1f ms, republished in %.1f ms\n",
				res.ReadyDeadContacts, res.ReadyLiveContacts, res.AddNoPeers, res.AddPeersUp, res.ListProviderGone, res.ListComplete, res.ListProvidersUp, res.EventLatency,
				res.PausedWakeups, res.RunningWakeups, res.IdleProcessWakeups, res.ResumeReady, res.ResumeRepublished)
		},
	}
	cmd.Flags().IntVar(&rounds, "rounds", 5, "measure each situation this many times; the median counts")
	cmd.Flags().StringVar(&sizeFlag, "size", "64KiB", "size of each file added (B, KiB, MiB, GiB, KB, MB, GB)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the nodes' data (default: the system temp dir)")
	cmd.Flags().DurationVar(&window, "wakeup-window", 20*time.Second, "how long to count the wakeups of the paused node's process, of it running, and of a bare Go process (each)")
	return cmd
}

// offlineNode starts a node in dir (New and Start) and returns it with the
// time that took.
func offlineNode(ctx context.Context, dir string, boot ...string) (*core.Backend, time.Duration, error) {
	t := time.Now()
	b, err := core.New(core.Options{DataDir: dir, Bootstrap: boot, DeviceName: filepath.Base(dir)})
	if err != nil {
		return nil, 0, err
	}
	if err := b.Start(ctx); err != nil {
		b.Close()
		return nil, 0, err
	}
	return b, time.Since(t), nil
}

func benchOffline(ctx context.Context, dir string, rounds int, size int64, window time.Duration) (*benchOfflineResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute+3*window)
	defer cancel()
	res := &benchOfflineResult{FileBytes: size, Rounds: rounds}
	var open []*core.Backend
	defer func() { closeAll(open...) }()
	start := func(name string, boot ...string) (*core.Backend, time.Duration, error) {
		b, took, err := offlineNode(ctx, filepath.Join(dir, name), boot...)
		if err == nil {
			open = append(open, b)
		}
		return b, took, err
	}
	startWith := func(name string, o core.Options) (*core.Backend, error) {
		o.DataDir, o.DeviceName = filepath.Join(dir, name), name
		b, err := core.New(o)
		if err != nil {
			return nil, err
		}
		if err := b.Start(ctx); err != nil {
			b.Close()
			return nil, err
		}
		open = append(open, b)
		return b, nil
	}
	closeNode := func(bs ...*core.Backend) {
		closeAll(bs...)
		open = slices.DeleteFunc(open, func(x *core.Backend) bool { return slices.Contains(bs, x) })
	}

	// A phone that knows two peers, saved at its Close.
	p1, _, err := start("p1")
	if err != nil {
		return nil, err
	}
	p2, _, err := start("p2", p1.Contact())
	if err != nil {
		return nil, err
	}
	phone, _, err := start("phone", p1.Contact())
	if err != nil {
		return nil, err
	}
	// Its group with p1 makes it read through the DHT, so it has met
	// both peers before it closes.
	g, err := p1.CreateGroup(ctx, "bench")
	if err != nil {
		return nil, err
	}
	inv, err := p1.Invite(g.ID)
	if err != nil {
		return nil, err
	}
	if _, err := phone.JoinGroup(ctx, inv); err != nil {
		return nil, err
	}
	closeNode(phone)
	restart := func() (float64, error) {
		var times []time.Duration
		for range rounds {
			b, took, err := start("phone")
			if err != nil {
				return 0, err
			}
			times = append(times, took)
			closeNode(b)
		}
		return median(times), nil
	}
	if res.ReadyLiveContacts, err = restart(); err != nil {
		return nil, err
	}
	closeNode(p1, p2)
	if res.ReadyDeadContacts, err = restart(); err != nil {
		return nil, err
	}

	// Adds: alice and bob in a group; alice adds with bob up, then down.
	alice, _, err := start("alice")
	if err != nil {
		return nil, err
	}
	bob, _, err := start("bob", alice.Contact())
	if err != nil {
		return nil, err
	}
	ga, err := alice.CreateGroup(ctx, "adds")
	if err != nil {
		return nil, err
	}
	if inv, err = alice.Invite(ga.ID); err != nil {
		return nil, err
	}
	if _, err := bob.JoinGroup(ctx, inv); err != nil {
		return nil, err
	}
	if res.EventLatency, res.EventAfterAdd, err = benchEventLatency(ctx, alice, bob, ga.ID, dir, rounds, size); err != nil {
		return nil, err
	}
	add := func(tag string) (float64, error) {
		var times []time.Duration
		for i := range rounds {
			p := filepath.Join(dir, fmt.Sprintf("%s-%d.bin", tag, i))
			data := make([]byte, size)
			rand.Read(data)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				return 0, err
			}
			t := time.Now()
			if _, err := alice.AddFiles(ctx, ga.ID, []string{p}); err != nil {
				return 0, err
			}
			times = append(times, time.Since(t))
		}
		return median(times), nil
	}
	if res.AddPeersUp, err = add("up"); err != nil {
		return nil, err
	}
	closeNode(bob)
	if res.AddNoPeers, err = add("down"); err != nil {
		return nil, err
	}
	res.PendingAfter = len(alice.Publications())
	closeNode(alice)
	if err := benchListGone(ctx, res, start, closeNode, dir, rounds); err != nil {
		return nil, err
	}
	if err := benchBackupOnly(ctx, res, startWith, closeNode, dir, rounds); err != nil {
		return nil, err
	}
	closeNode(slices.Clone(open)...) // the other situations' nodes are done
	if err := benchPaused(ctx, res, startWith, dir, window); err != nil {
		return nil, err
	}
	return res, nil
}

// benchEventLatency times, rounds times, alice's AddFiles of a new file
// until bob's node emits its file.added, from the call and from its
// return; a first file, not timed, waits for bob's watch to be up.
func benchEventLatency(ctx context.Context, alice, bob *core.Backend, g key.RecordKey, dir string, rounds int, size int64) (float64, float64, error) {
	sub := bob.Subscribe(core.SubscribeOptions{Groups: []key.RecordKey{g}, Kinds: []string{core.KindFileAdded}})
	defer sub.Close()
	var fromCall, fromReturn []time.Duration
	for i := -1; i < rounds; i++ {
		name := fmt.Sprintf("event-%d.bin", i+1)
		p := filepath.Join(dir, name)
		data := make([]byte, size)
		rand.Read(data)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return 0, 0, err
		}
		t := time.Now()
		if _, err := alice.AddFiles(ctx, g, []string{p}); err != nil {
			return 0, 0, err
		}
		returned := time.Now()
		wait := 5 * time.Second
		if i < 0 {
			wait = 30 * time.Second // bob's watch on alice's repo may not be up yet
		}
		timer := time.NewTimer(wait)
	events:
		for {
			select {
			case ev, ok := <-sub.C:
				if !ok {
					timer.Stop()
					return 0, 0, fmt.Errorf("bob's subscription closed")
				}
				if fe, ok := ev.Payload.(core.FileEvent); ok && fe.Name == name {
					break events
				}
			case <-timer.C:
				return 0, 0, fmt.Errorf("bob heard no file.added of %s within %v", name, wait)
			}
		}
		timer.Stop()
		if i >= 0 {
			now := time.Now()
			fromCall = append(fromCall, now.Sub(t))
			fromReturn = append(fromReturn, now.Sub(returned))
		}
	}
	return median(fromCall), median(fromReturn), nil
}

// benchBackupFile is the size of each file benchBackupOnly gets (the
// issue's 5 MB).
const benchBackupFile = 5 << 20

// benchBackupOnly times GetFile on erin of files alice added and bob
// holds, with alice and bob up, then of others right after both shut
// down cleanly, when the group's backup server is the one node that
// holds them. Each file is got once (rounds of each).
func benchBackupOnly(ctx context.Context, res *benchOfflineResult, start func(string, core.Options) (*core.Backend, error), closeNode func(...*core.Backend), dir string, rounds int) error {
	res.BackupFileBytes = benchBackupFile
	peer, err := start("bk-peer", core.Options{})
	if err != nil {
		return err
	}
	boot := []string{peer.Contact()}
	alice, err := start("bk-alice", core.Options{Bootstrap: boot})
	if err != nil {
		return err
	}
	bob, err := start("bk-bob", core.Options{Bootstrap: boot})
	if err != nil {
		return err
	}
	backup, err := start("bk-backup", core.Options{Bootstrap: boot, Backup: true})
	if err != nil {
		return err
	}
	erin, err := start("bk-erin", core.Options{Bootstrap: boot})
	if err != nil {
		return err
	}
	var paths []string
	for i := range 2 * rounds {
		p := filepath.Join(dir, fmt.Sprintf("bk-%d.bin", i))
		data := make([]byte, benchBackupFile)
		rand.Read(data)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
		paths = append(paths, p)
	}
	g, err := alice.CreateGroup(ctx, "backup-only")
	if err != nil {
		return err
	}
	if _, err := alice.AddFiles(ctx, g.ID, paths); err != nil {
		return err
	}
	inv, err := alice.Invite(g.ID)
	if err != nil {
		return err
	}
	for _, m := range []*core.Backend{bob, backup, erin} {
		if _, err := m.JoinGroup(ctx, inv); err != nil {
			return err
		}
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		st := backup.BackupStatus()
		if len(st.Groups) == 1 && st.Groups[0].Files == len(paths) && st.Groups[0].Missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the backup server does not hold the files: %+v", st.Groups)
		}
	}
	if _, err := bob.Refresh(ctx, g.ID); err != nil {
		return err
	}
	get := func(from int) (float64, float64, error) {
		var first, whole []time.Duration
		for i := from; i < from+rounds; i++ {
			name := filepath.Base(paths[i])
			var once sync.Once
			var fb time.Duration
			t := time.Now()
			_, err := erin.GetFile(ctx, g.ID, key.RecordKey{}, name, filepath.Join(dir, "got-"+name), func(p core.Progress) {
				if p.Done > 0 {
					once.Do(func() { fb = time.Since(t) })
				}
			})
			if err != nil {
				return 0, 0, fmt.Errorf("get %s: %w", name, err)
			}
			whole = append(whole, time.Since(t))
			if fb == 0 {
				fb = whole[len(whole)-1]
			}
			first = append(first, fb)
		}
		return median(first), median(whole), nil
	}
	if res.FirstByteMembersUp, res.GetMembersUp, err = get(0); err != nil {
		return err
	}
	closeNode(alice, bob)
	res.FirstByteBackupOnly, res.GetBackupOnly, err = get(rounds)
	return err
}

// benchListGone times List on carol, a member restarted after dave, the
// other member, published a new collection (to a DHT peer) and left,
// beside carol's List with everyone up.
func benchListGone(ctx context.Context, res *benchOfflineResult, start func(string, ...string) (*core.Backend, time.Duration, error), closeNode func(...*core.Backend), dir string, rounds int) error {
	peer, _, err := start("list-peer")
	if err != nil {
		return err
	}
	dave, _, err := start("dave", peer.Contact())
	if err != nil {
		return err
	}
	carol, _, err := start("carol", peer.Contact())
	if err != nil {
		return err
	}
	file := func(name string) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, []byte("offline-first listing: "+name), 0o600)
	}
	g, err := dave.CreateGroup(ctx, "listing")
	if err != nil {
		return err
	}
	inv, err := dave.Invite(g.ID)
	if err != nil {
		return err
	}
	if _, err := carol.JoinGroup(ctx, inv); err != nil {
		return err
	}
	for _, m := range []struct {
		b    *core.Backend
		name string
	}{{dave, "dave-1.txt"}, {carol, "carol-1.txt"}} {
		p, err := file(m.name)
		if err != nil {
			return err
		}
		if _, err := m.b.AddFiles(ctx, g.ID, []string{p}); err != nil {
			return err
		}
	}
	want := []string{"carol-1.txt", "dave-1.txt"}
	complete := func(l core.Listing) bool {
		var names []string
		for _, f := range l.Files {
			names = append(names, f.Name)
		}
		return slices.Equal(names, want)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l, err := carol.List(ctx, g.ID); err == nil && complete(l) && len(l.Warnings) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("carol does not list %v", want)
		}
	}
	var first time.Duration
	list := func() (float64, bool, int, error) {
		var times []time.Duration
		ok, warnings := true, 0
		for range rounds {
			t := time.Now()
			l, err := carol.List(ctx, g.ID)
			if err != nil {
				return 0, false, 0, err
			}
			times = append(times, time.Since(t))
			if len(times) == 1 {
				first = times[0]
			}
			ok = ok && complete(l)
			warnings = len(l.Warnings)
		}
		return median(times), ok, warnings, nil
	}
	if res.ListProvidersUp, _, _, err = list(); err != nil {
		return err
	}

	// Carol is away while dave publishes a new collection, then leaves.
	closeNode(carol)
	p, err := file("dave-2.txt")
	if err != nil {
		return err
	}
	if _, err := dave.AddFiles(ctx, g.ID, []string{p}); err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); len(dave.Publications()) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("dave's collection not published: %+v", dave.Publications())
		}
	}
	closeNode(dave)
	if carol, _, err = start("carol"); err != nil {
		return err
	}
	res.ListProviderGone, res.ListComplete, res.ListWarnings, err = list()
	res.ListFirstProviderGone = float64(first.Microseconds()) / 1000
	return err
}

// closeAll closes nodes at once: one closed after the others would wait
// out its shutdown's clearing of its tunnel descriptors on them.
func closeAll(bs ...*core.Backend) {
	var wg sync.WaitGroup
	for _, b := range bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Close()
		}()
	}
	wg.Wait()
}

// median returns the median of ds in milliseconds.
func median(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return float64(m.Microseconds()) / 1000
}
