package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

// The core tests run real nodes in one process: QUIC on 127.0.0.1, a
// Pebble store and blob store in a temporary directory per node. The
// helpers here start them, write files, share a group among them, fetch
// files and wait. A node they start is closed when the test ends, unless
// the test closed it itself.

// testContext returns a context that ends after d or when the test ends,
// after the nodes started later are closed.
func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startNode starts a node in dir that enters the DHT through boot.
func startNode(t testing.TB, dir string, boot ...string) *Backend {
	t.Helper()
	return startWith(t, dir, Options{Bootstrap: boot}, false)
}

// startNodes starts a node in dir/name for each name, one after the
// other; the first is the bootstrap of the rest.
func startNodes(t testing.TB, dir string, names ...string) []*Backend {
	t.Helper()
	nodes := []*Backend{startNode(t, filepath.Join(dir, names[0]))}
	for _, name := range names[1:] {
		nodes = append(nodes, startNode(t, filepath.Join(dir, name), nodes[0].Contact()))
	}
	return nodes
}

// startWith starts a node in dir with opts (DataDir and Logger filled in,
// DeviceName too when empty: the directory's base name); hideDirect makes
// it publish no direct address.
func startWith(t testing.TB, dir string, opts Options, hideDirect bool) *Backend {
	t.Helper()
	b, err := start(t, dir, opts, hideDirect)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, b)
	return b
}

// startTogether starts a node in each directory (Options as startWith)
// concurrently.
func startTogether(t testing.TB, dirs map[string]Options) map[string]*Backend {
	t.Helper()
	type result struct {
		dir string
		b   *Backend
		err error
	}
	ch := make(chan result, len(dirs))
	for dir, o := range dirs {
		go func() {
			b, err := start(t, dir, o, false)
			ch <- result{dir, b, err}
		}()
	}
	out := make(map[string]*Backend)
	var firstErr error
	for range dirs {
		r := <-ch
		if r.err != nil {
			firstErr = r.err
			continue
		}
		closeAtEnd(t, r.b)
		out[r.dir] = r.b
	}
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	return out
}

// closeAtEnd closes b when the test ends, unless it is closed already.
func closeAtEnd(t testing.TB, b *Backend) {
	t.Cleanup(func() {
		b.mu.Lock()
		closed := b.closed
		b.mu.Unlock()
		if !closed {
			b.Close()
		}
	})
}

// start is startWith's work, safe to call from any goroutine: it returns
// the error rather than failing t.
func start(t testing.TB, dir string, opts Options, hideDirect bool) (*Backend, error) {
	opts.DataDir, opts.Logger = dir, testLogger(t, filepath.Base(dir))
	if opts.DeviceName == "" {
		opts.DeviceName = filepath.Base(dir)
	}
	b, err := New(opts)
	if err != nil {
		return nil, err
	}
	b.rs.hideDirect = hideDirect
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// testLogger logs a node's debug output to stderr under go test -v, and
// nothing otherwise.
func testLogger(t testing.TB, name string) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
}

// writeFile writes size random bytes to dir/name and returns its path and
// the bytes.
func writeFile(t testing.TB, dir, name string, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, data
}

// writeFiles writes a file of random bytes to dir for each name, of the
// size at the same index, and returns their paths in that order and their
// bytes by name.
func writeFiles(t testing.TB, dir string, names []string, sizes ...int) ([]string, map[string][]byte) {
	t.Helper()
	paths, data := make([]string, len(names)), make(map[string][]byte)
	for i, name := range names {
		paths[i], data[name] = writeFile(t, dir, name, sizes[i])
	}
	return paths, data
}

// newGroup creates group name on owner, adds the files at paths to it
// (none: the group stays empty) and returns the group, the files added
// and an invite to it.
func newGroup(ctx context.Context, t testing.TB, owner *Backend, name string, paths ...string) (GroupInfo, []FileInfo, string) {
	t.Helper()
	g, err := owner.CreateGroup(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var added []FileInfo
	if len(paths) > 0 {
		if added, err = owner.AddFiles(ctx, g.ID, paths); err != nil {
			t.Fatal(err)
		}
	}
	inv, err := owner.Invite(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	return g, added, inv
}

// join makes each member join the group of invite inv.
func join(ctx context.Context, t testing.TB, inv string, members ...*Backend) {
	t.Helper()
	for _, m := range members {
		if _, err := m.JoinGroup(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
}

// getFile downloads file name of group g, from whichever repo holds it,
// with b to out; it fails t unless out then holds want. It returns the
// file's info and the last progress reported.
func getFile(ctx context.Context, t testing.TB, b *Backend, g key.RecordKey, name, out string, want []byte) (FileInfo, Progress) {
	t.Helper()
	var last Progress
	fi, err := b.GetFile(ctx, g, key.RecordKey{}, name, out, func(p Progress) { last = p })
	if err != nil {
		t.Fatalf("%s gets %s: %v", b.DeviceName(), name, err)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s's %s differs from the bytes added (%v)", b.DeviceName(), name, err)
	}
	return fi, last
}

// waitBootedT waits until b's first bootstrap attempt has ended (Start
// returns before it), for tests whose premise is a node in the network.
func waitBootedT(t testing.TB, b *Backend) {
	t.Helper()
	select {
	case <-b.run().booted:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: the first bootstrap attempt did not end", b.DeviceName())
	}
}

// waitFor polls cond every 20 ms until it holds or 15 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
