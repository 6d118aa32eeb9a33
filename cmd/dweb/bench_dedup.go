package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/tunnel"
	"github.com/quic-go/quic-go"
	"github.com/spf13/cobra"
)

func init() { benchCommands = append(benchCommands, benchDedupCmd) }

// benchDedupResult is the JSON that `dweb bench dedup` prints.
type benchDedupResult struct {
	Size          int64 `json:"bytes"`           // the first version's size
	Chunks        int   `json:"chunks"`          // chunks of the first version
	AvgChunkBytes int64 `json:"avg_chunk_bytes"` // bytes / chunks of the first version
	// FreshRatio: the chunked download of the first version (list, then
	// every chunk) against the unchunked download of the same file as one
	// blob, both from the same provider to an empty store, MB/s over MB/s;
	// each round's unchunked figure is the mean of one run before and one
	// after it (rounds share those), and the three figures are medians
	// over the rounds (--rounds).
	FreshRatio   float64 `json:"fresh_ratio"`
	FreshMBs     float64 `json:"fresh_mb_s"`
	UnchunkedMBs float64 `json:"unchunked_mb_s"`
	// FreshRounds: each round's chunked download, each into a fresh
	// receiver store, against the unchunked runs around it.
	FreshRounds   []bdRound   `json:"fresh_rounds"`
	FreshSentByte int64       `json:"fresh_sent_bytes"` // on the wire, chunked (the last round)
	AddMBs        float64     `json:"add_chunked_mb_s"` // AddFileChunked of the first version on the sender
	Versions      []bdVersion `json:"versions"`
	// Rsync says where rsync_literal_bytes comes from: the rsync binary
	// that ran (`rsync --stats --no-whole-file`), or why none did.
	Rsync    string `json:"rsync"`
	Verified bool   `json:"verified"` // every version the receiver assembled has its source's BLAKE3
}

// bdRound is one round of the fresh figure.
type bdRound struct {
	Ratio        float64 `json:"ratio"`
	FreshMBs     float64 `json:"fresh_mb_s"`
	UnchunkedMBs float64 `json:"unchunked_mb_s"` // the mean of the runs before and after
}

// bdVersion is one new version of the file, synced to the receiver.
type bdVersion struct {
	Edit        string `json:"edit"`
	Size        int64  `json:"bytes"`
	ChangedByte int64  `json:"changed_bytes"` // bytes the edit wrote or inserted
	// SentBytes: bytes the receiver read from the provider's tunnel
	// streams for this version: chunk list, chunks, outboards, framing.
	SentBytes   int64 `json:"sent_bytes"`
	StoredBytes int64 `json:"stored_bytes"` // bytes of new blobs (chunks and list) in the receiver's store
	Chunks      int   `json:"chunks_fetched"`
	// DeltaRuns and DeltaBytes: of the chunks fetched, the runs rebuilt
	// from chunk-run deltas against the previous version and their chunks'
	// bytes (not the bytes sent); 0 with --no-delta.
	DeltaRuns  int   `json:"delta_runs"`
	DeltaBytes int64 `json:"delta_bytes"`
	// RsyncLiteral: rsync's "Literal data" for the same edit, from the
	// previous version to this one (rsync --stats --no-whole-file
	// --ignore-times); null when rsync is not installed.
	RsyncLiteral *int64 `json:"rsync_literal_bytes"`
	// Budget: the changed bytes plus two mean chunks plus 1 % (the
	// acceptance bound for sent_bytes).
	Budget int64 `json:"budget_bytes"`
}

func benchDedupCmd(a *app) *cobra.Command {
	var sizeFlag, dir string
	var noDelta bool
	var rounds int
	cmd := &cobra.Command{
		Use:   "dedup",
		Short: "sync a file and three edited versions between two nodes: bytes sent and stored per version, next to rsync",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := bsParseSize(sizeFlag)
			if err != nil {
				return &usageError{err}
			}
			if size < 16<<20 {
				return &usageError{fmt.Errorf("--size %d: want at least 16 MiB (the edits take 11 MiB)", size)}
			}
			if rounds < 1 {
				return &usageError{fmt.Errorf("--rounds %d: want at least 1", rounds)}
			}
			tmp, err := os.MkdirTemp(dir, "dweb-bench-dedup-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			res, err := benchDedup(cmd.Context(), tmp, size, rounds, noDelta)
			if err != nil {
				return err
			}
			if err := a.printResult(res, "%d bytes in %d chunks (mean %d): fresh %.0f MB/s, unchunked %.0f MB/s, ratio %.2f\n",
				res.Size, res.Chunks, res.AvgChunkBytes, res.FreshMBs, res.UnchunkedMBs, res.FreshRatio); err != nil {
				return err
			}
			if !res.Verified {
				return errors.New("bench dedup: a version the receiver assembled differs from its source")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&sizeFlag, "size", "1GiB", "size of the first version (B, KiB, MiB, GiB, KB, MB, GB); at least 16 MiB")
	cmd.Flags().BoolVar(&noDelta, "no-delta", false, "sync each version by whole chunks, without chunk-run deltas against the previous one")
	cmd.Flags().IntVar(&rounds, "rounds", 3, "rounds of the fresh figure: each a chunked download into a fresh store between two unchunked ones (N chunked, N+1 unchunked downloads of --size); the medians are reported")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the files and the stores (default: the system temp dir)")
	return cmd
}

// bdNode is one node of the bench: a Pebble store and a QUIC endpoint.
type bdNode struct {
	db     *store.DB
	blobs  *blobsync.Store
	ep     *transport.Endpoint
	static tunnel.StaticKey
}

func bdOpenNode(dir string) (*bdNode, error) {
	db, err := store.Open(filepath.Join(dir, "db"), store.Options{})
	if err != nil {
		return nil, err
	}
	bs, err := blobsync.OpenStore(db, filepath.Join(dir, "blobs"), blobsync.StoreOptions{})
	if err != nil {
		db.Close()
		return nil, err
	}
	ep, err := transport.Listen(transport.Options{Identity: key.NewKeypair(), ListenAddr: "127.0.0.1:0"})
	if err != nil {
		db.Close()
		return nil, err
	}
	st, err := tunnel.NewStaticKey()
	if err != nil {
		ep.Close()
		db.Close()
		return nil, err
	}
	return &bdNode{db: db, blobs: bs, ep: ep, static: st}, nil
}

func (n *bdNode) close() {
	n.ep.Close()
	n.db.Close()
}

// benchDedup runs the bench in dir with a first version of size bytes;
// the fresh figure takes rounds chunked downloads, each into a fresh
// receiver, between rounds+1 unchunked ones; each version after the first
// syncs to the last round's receiver by chunk-run deltas against the one
// before (blobsync.DownloadOptions.DeltaBase) unless noDelta.
func benchDedup(ctx context.Context, dir string, size int64, rounds int, noDelta bool) (*benchDedupResult, error) {
	group, secret := key.RecordKey(key.NewSecret()), key.NewSecret()
	psk := tunnel.PSK(secret)
	snd, err := bdOpenNode(filepath.Join(dir, "sender"))
	if err != nil {
		return nil, err
	}
	defer snd.close()
	// The sender serves its store in group tunnels, as core does.
	snd.ep.Handle(transport.ProtoTunnel, func(ctx context.Context, _ transport.Peer, s *quic.Stream) {
		sess, err := tunnel.Accept(ctx, s, tunnel.AcceptConfig{Static: snd.static, LookupPSK: func(g key.RecordKey) ([32]byte, bool) {
			return psk, g == group
		}, Binding: transport.StreamBinding(ctx), AllowTLSTransport: true})
		if err != nil {
			return
		}
		transport.Opened(ctx)
		defer sess.Close()
		snd.blobs.ServeWith(ctx, sess, blobsync.ServeOptions{})
	})
	// Each receiver dials the sender through a tunnel, counting the bytes
	// it reads.
	provider := func(n *bdNode, count *atomic.Int64) (blobsync.Provider, func(), error) {
		addr, err := netip.ParseAddrPort(snd.ep.LocalAddr().String())
		if err != nil {
			return nil, nil, err
		}
		if err := n.ep.Connect(ctx, snd.ep.ID(), addr); err != nil {
			return nil, nil, err
		}
		pool := blobsync.NewStreamPool(0, 0)
		p := pool.Provider(&bdCounting{count: count, p: &btTunnelProvider{id: "sender", ep: n.ep, node: snd.ep.ID(), addr: addr, dial: tunnel.DialConfig{
			Static: n.static, RemoteStatic: snd.static.Public, Group: group, PSK: psk, TLSTransport: true,
		}, opened: &btOpened{}}})
		return p, func() { pool.Close() }, nil
	}
	base, err := bdOpenNode(filepath.Join(dir, "unchunked"))
	if err != nil {
		return nil, err
	}
	defer base.close()
	var baseSent atomic.Int64
	bp, closeB, err := provider(base, &baseSent)
	if err != nil {
		return nil, err
	}
	defer closeB()
	baseProvs := []blobsync.Provider{bp}

	// The first version, added both ways on the sender.
	prev := filepath.Join(dir, "v0")
	if err := bsWriteRandom(prev, size, 11); err != nil {
		return nil, err
	}
	t := time.Now()
	cf, err := snd.blobs.AddFileChunked(ctx, prev)
	if err != nil {
		return nil, err
	}
	res := &benchDedupResult{Size: size, Chunks: len(cf.Chunks), AddMBs: bsRound(float64(size) / 1e6 / time.Since(t).Seconds()), Verified: true}
	res.AvgChunkBytes = size / int64(len(cf.Chunks))
	whole, _, err := snd.blobs.AddFileRef(ctx, prev)
	if err != nil {
		return nil, err
	}

	// Fresh: unchunked, then rounds times chunked (into a fresh receiver)
	// and unchunked. The last round's receiver takes the versions.
	unchunked := func() (float64, error) {
		if err := base.blobs.Delete(whole); err != nil {
			return 0, err
		}
		t := time.Now()
		if _, err := base.blobs.Download(ctx, whole, baseProvs, blobsync.DownloadOptions{SizeHint: size}); err != nil {
			return 0, fmt.Errorf("unchunked download: %w", err)
		}
		return float64(size) / 1e6 / time.Since(t).Seconds(), nil
	}
	var (
		rcv   *bdNode
		provs []blobsync.Provider
		sent  atomic.Int64
	)
	u, err := unchunked()
	if err != nil {
		return nil, err
	}
	for i := range rounds {
		rdir := filepath.Join(dir, fmt.Sprintf("receiver-%d", i))
		n, err := bdOpenNode(rdir)
		if err != nil {
			return nil, err
		}
		sent.Store(0)
		p, closeP, err := provider(n, &sent)
		if err != nil {
			n.close()
			return nil, err
		}
		t := time.Now()
		_, err = n.blobs.DownloadChunked(ctx, cf.List, cf.Size, []blobsync.Provider{p}, blobsync.DownloadOptions{})
		fresh := float64(size) / 1e6 / time.Since(t).Seconds()
		last := i == rounds-1
		if err == nil {
			if err := bdCheck(ctx, n.blobs, cf, prev); err != nil {
				fmt.Fprintf(os.Stderr, "bench dedup: first version, round %d: %v\n", i+1, err)
				res.Verified = false
			}
		}
		if err != nil || !last {
			closeP()
			n.close()
			if rerr := os.RemoveAll(rdir); rerr != nil && err == nil {
				err = rerr
			}
		}
		if err != nil {
			return nil, fmt.Errorf("chunked download: %w", err)
		}
		if last {
			rcv, provs = n, []blobsync.Provider{p}
			defer func() { closeP(); n.close() }()
		}
		u2, err := unchunked()
		if err != nil {
			return nil, err
		}
		r := bdRound{FreshMBs: fresh, UnchunkedMBs: (u + u2) / 2}
		r.Ratio = r.FreshMBs / r.UnchunkedMBs
		res.FreshRounds = append(res.FreshRounds, r)
		u = u2
	}
	res.FreshSentByte = sent.Load()
	res.FreshRatio = bsRound(bdMedian(res.FreshRounds, func(r bdRound) float64 { return r.Ratio }))
	res.FreshMBs = bsRound(bdMedian(res.FreshRounds, func(r bdRound) float64 { return r.FreshMBs }))
	res.UnchunkedMBs = bsRound(bdMedian(res.FreshRounds, func(r bdRound) float64 { return r.UnchunkedMBs }))
	for i := range res.FreshRounds {
		r := &res.FreshRounds[i]
		r.Ratio, r.FreshMBs, r.UnchunkedMBs = bsRound(r.Ratio), bsRound(r.FreshMBs), bsRound(r.UnchunkedMBs)
	}

	rsync, rsyncErr := exec.LookPath("rsync")
	res.Rsync = rsync
	if rsyncErr != nil {
		res.Rsync = "not installed: rsync_literal_bytes are null"
	}
	mean := res.AvgChunkBytes
	prevList := cf.List
	for i, e := range bdEdits {
		next := filepath.Join(dir, fmt.Sprintf("v%d", i+1))
		changed, err := e.apply(prev, next)
		if err != nil {
			return nil, fmt.Errorf("edit %q: %w", e.name, err)
		}
		cf, err := snd.blobs.AddFileChunked(ctx, next)
		if err != nil {
			return nil, err
		}
		before, beforeUsage := sent.Load(), bdStored(rcv.blobs, cf)
		dl, err := rcv.blobs.DownloadChunked(ctx, cf.List, cf.Size, provs, blobsync.DownloadOptions{DeltaBase: prevList, NoDelta: noDelta})
		if err != nil {
			return nil, fmt.Errorf("edit %q: download: %w", e.name, err)
		}
		v := bdVersion{Edit: e.name, Size: cf.Size, ChangedByte: changed, SentBytes: sent.Load() - before, Chunks: dl.Fetched,
			DeltaRuns: dl.DeltaRuns, DeltaBytes: dl.DeltaBytes, StoredBytes: beforeUsage, Budget: changed + 2*mean + cf.Size/100}
		prevList = cf.List
		if err := bdCheck(ctx, rcv.blobs, cf, next); err != nil {
			fmt.Fprintf(os.Stderr, "bench dedup: edit %q: %v\n", e.name, err)
			res.Verified = false
		}
		if rsyncErr == nil {
			n, err := bdRsyncLiteral(ctx, rsync, prev, next, filepath.Join(dir, "rsync"))
			if err != nil {
				return nil, fmt.Errorf("edit %q: %w", e.name, err)
			}
			v.RsyncLiteral = &n
		}
		res.Versions = append(res.Versions, v)
		if err := os.Remove(prev); err != nil {
			return nil, err
		}
		prev = next
	}
	return res, nil
}

// bdMedian is the median of f over rs (not empty).
func bdMedian(rs []bdRound, f func(bdRound) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return btMedian(v)
}

// bdEdits are the three versions, each made from the one before.
var bdEdits = []struct {
	name  string
	apply func(prev, next string) (changed int64, err error)
}{
	{"1 MiB overwritten in the middle", func(prev, next string) (int64, error) {
		return 1 << 20, bdRewrite(prev, next, func(size int64) (at, cut int64, insert []byte) {
			return size/2 - 1<<19, 1 << 20, bdRandom(1<<20, 21)
		})
	}},
	{"100 bytes inserted at the start", func(prev, next string) (int64, error) {
		return 100, bdRewrite(prev, next, func(int64) (int64, int64, []byte) { return 0, 0, bdRandom(100, 22) })
	}},
	{"10 MiB appended", func(prev, next string) (int64, error) {
		return 10 << 20, bdRewrite(prev, next, func(size int64) (int64, int64, []byte) { return size, 0, bdRandom(10<<20, 23) })
	}},
}

// bdRewrite writes next as prev with cut bytes at offset at replaced by
// insert (edit says where, given prev's size).
func bdRewrite(prev, next string, edit func(size int64) (at, cut int64, insert []byte)) error {
	src, err := os.Open(prev)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	at, cut, insert := edit(fi.Size())
	dst, err := os.Create(next)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(dst, 1<<20)
	if _, err := io.Copy(w, io.NewSectionReader(src, 0, at)); err != nil {
		dst.Close()
		return err
	}
	w.Write(insert)
	if _, err := io.Copy(w, io.NewSectionReader(src, at+cut, fi.Size()-at-cut)); err != nil {
		dst.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// bdRandom returns n pseudo-random bytes of seed.
func bdRandom(n int, seed uint64) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// bdStored returns the bytes of cf's chunk list and chunks that s does
// not hold yet: what a download of cf adds to it.
func bdStored(s *blobsync.Store, cf blobsync.ChunkedFile) int64 {
	var n int64
	seen := map[blobsync.Hash]bool{}
	if ok, _ := s.Has(cf.List); !ok {
		n += int64(9 + 36*len(cf.Chunks))
	}
	for _, c := range cf.Chunks {
		if ok, _ := s.Has(c.Hash); !ok && !seen[c.Hash] {
			n += c.Size
		}
		seen[c.Hash] = true
	}
	return n
}

// bdCheck reads cf back from s (OpenChunked, which checks the whole-file
// hash) and compares it with the source file's BLAKE3, computed apart.
func bdCheck(ctx context.Context, s *blobsync.Store, cf blobsync.ChunkedFile, src string) error {
	want, err := btHashFile(src)
	if err != nil {
		return err
	}
	r, _, err := s.OpenChunked(ctx, cf.Hash, cf.List)
	if err != nil {
		return err
	}
	defer r.Close()
	got, err := btHashReader(r)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("assembled %s, source %s", got, want)
	}
	return nil
}

// bdRsyncLiteral copies prev to work and runs rsync from next onto it,
// returning the "Literal data" its --stats report: the bytes rsync would
// send for the edit. --no-whole-file: rsync copies local files whole by
// default; --ignore-times: the copy may have next's size and mtime, and
// rsync's quick check would skip it; no --inplace, which stops rsync from
// matching blocks an insertion moved.
func bdRsyncLiteral(ctx context.Context, rsync, prev, next, work string) (int64, error) {
	if err := bdCopy(prev, work); err != nil {
		return 0, err
	}
	defer os.Remove(work)
	out, err := exec.CommandContext(ctx, rsync, "--stats", "--no-whole-file", "--ignore-times", next, work).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("rsync: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Literal data:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(strings.ReplaceAll(f[0], ",", ""), 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("rsync --stats printed no Literal data: %s", out)
}

func bdCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// bdCounting counts the bytes read from p's streams.
type bdCounting struct {
	count *atomic.Int64
	p     blobsync.Provider
}

func (c *bdCounting) ID() string { return c.p.ID() }

func (c *bdCounting) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	rw, err := c.p.Open(ctx)
	if err != nil {
		return nil, err
	}
	return &bdCountRW{ReadWriteCloser: rw, n: c.count}, nil
}

type bdCountRW struct {
	io.ReadWriteCloser
	n *atomic.Int64
}

func (c *bdCountRW) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}
