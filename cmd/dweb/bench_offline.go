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
	PendingAfter int   `json:"publications_pending_after"`
	FileBytes    int64 `json:"file_bytes"`
	Rounds       int   `json:"rounds"`
}

// benchOfflineCmd builds the offline situations with in-process nodes on
// loopback (real QUIC, real Pebble, each in its own directory): a phone
// whose saved contacts (two peers) are all down restarts; a member adds
// files while the only other member is down.
func benchOfflineCmd(a *app) *cobra.Command {
	var rounds int
	var sizeFlag, dir string
	cmd := &cobra.Command{
		Use:   "offline",
		Short: "start with every saved contact down, and add with every peer down, beside the same with the network up",
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
			tmp, err := os.MkdirTemp(dir, "dweb-bench-offline-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			res, err := benchOffline(cmd.Context(), tmp, rounds, size)
			if err != nil {
				return err
			}
			return a.printResult(res, "ready: %.1f ms with contacts dead, %.1f ms live; add: %.1f ms with no peers, %.1f ms with peers up\n",
				res.ReadyDeadContacts, res.ReadyLiveContacts, res.AddNoPeers, res.AddPeersUp)
		},
	}
	cmd.Flags().IntVar(&rounds, "rounds", 5, "measure each situation this many times; the median counts")
	cmd.Flags().StringVar(&sizeFlag, "size", "64KiB", "size of each file added (B, KiB, MiB, GiB, KB, MB, GB)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the nodes' data (default: the system temp dir)")
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

func benchOffline(ctx context.Context, dir string, rounds int, size int64) (*benchOfflineResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
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
	return res, nil
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
