package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/netem"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/tunnel"
	"github.com/quic-go/quic-go"
	"github.com/spf13/cobra"
	"github.com/zeebo/blake3"
)

func init() { benchCommands = append(benchCommands, benchTransferCmd) }

// benchTransferResult is the JSON that `dweb bench transfer` prints.
type benchTransferResult struct {
	Bytes            int64                    `json:"bytes"`
	Files            int                      `json:"files"`                 // blobs: 1, or the entries of one collection (--files)
	NoBatch          bool                     `json:"no_batch,omitempty"`    // --no-batch: every file its own download
	FilesPerSec      float64                  `json:"files_per_s,omitempty"` // with --files > 1: entries downloaded per second
	Providers        int                      `json:"providers"`
	Lanes            int                      `json:"lanes"` // connections per provider the download used: core.LanesFor: --lanes for a blob of 16 MiB and up over a path with a round trip of 5 ms or more, at most 2 (core.NearLanes) over a nearer one, else 1
	ProviderRateMBs  float64                  `json:"provider_rate_mb_s,omitempty"`
	BaselineMBs      float64                  `json:"baseline_mb_s"` // raw QUIC stream, same endpoints' config, loopback
	MBs              float64                  `json:"mb_s"`          // dweb download: tunnel + blobsync + verify + disk
	Ratio            float64                  `json:"ratio"`         // mb_s / baseline_mb_s
	ReceiverPeakRSS  float64                  `json:"receiver_peak_rss_mb"`
	OneProviderMBs   float64                  `json:"one_provider_mb_s,omitempty"` // same download from one provider (when --providers > 1)
	Speedup          float64                  `json:"speedup,omitempty"`           // mb_s / one_provider_mb_s
	Verified         bool                     `json:"verified"`                    // every dweb run's received blobs, hashed as the receiver's store holds them on disk, have their source files' BLAKE3 (zeebo/blake3, apart from blobsync)
	Hash             string                   `json:"hash"`
	ProviderBytes    []int64                  `json:"provider_bytes"`
	BaselineRSS      float64                  `json:"baseline_receiver_peak_rss_mb"`
	ReceiverSeconds  float64                  `json:"seconds"`
	BaselineSeconds  float64                  `json:"baseline_seconds"`
	OneProviderSecs  float64                  `json:"one_provider_seconds,omitempty"`
	ReceiverCPUUser  float64                  `json:"receiver_cpu_user_s"`
	ReceiverCPUSys   float64                  `json:"receiver_cpu_sys_s"`
	SenderDataOnDisk bool                     `json:"sender_reference_mode"`
	Rounds           []btRound                `json:"rounds,omitempty"`       // with --rounds > 1: each dweb run with the mean of the two baseline runs around it; the figures above are the medians (ratio: median of the rounds' ratios), peak RSS the largest
	BaselineCPU      btCPUSplit               `json:"baseline_cpu_s"`         // CPU seconds the raw stream cost each side (last round)
	CPU              btCPUSplit               `json:"cpu_s"`                  // CPU seconds the dweb download cost each side (last round)
	TunnelTransport  string                   `json:"tunnel_transport"`       // as the tunnels of every dweb run negotiated it (Session.TLSTransport): "tls": Noise handshake bound to the QUIC connection's TLS, no second encryption; "noise": every byte Noise-encrypted; "mixed": both
	TunnelAsked      string                   `json:"tunnel_transport_asked"` // --tunnel-transport; a provider may decline "tls"
	Tunnels          blobsync.StreamPoolStats `json:"tunnels"`                // tunnels the receiver opened and reused (pooled across a collection's blobs; with --no-pool: opened only; last round)
	NoPool           bool                     `json:"no_pool,omitempty"`      // --no-pool: every blob opens its own tunnels
	Link             *btLink                  `json:"link,omitempty"`         // with --rtt, --loss or --link-rate: the emulated path between receiver and each provider
	E2E              *btE2E                   `json:"e2e,omitempty"`          // with --e2e: the real file get between two daemons, and cp, in the same rounds
}

// btLink describes the emulated link (internal/netem) that every
// provider's traffic crossed, baseline and dweb alike, and what it
// dropped over the whole run, summed over providers and directions.
type btLink struct {
	RTTms      float64 `json:"rtt_ms"`
	Loss       float64 `json:"loss"`                // probability per datagram, each direction
	RateMBs    float64 `json:"rate_mb_s,omitempty"` // bottleneck per provider, each direction
	Lost       uint64  `json:"lost"`
	QueueDrops uint64  `json:"queue_drops"`
}

// btRound is one baseline/dweb pair of a --rounds run.
type btRound struct {
	BaselineMBs float64    `json:"baseline_mb_s"`
	MBs         float64    `json:"mb_s"`
	Ratio       float64    `json:"ratio"`
	BaselineCPU btCPUSplit `json:"baseline_cpu_s"`
	CPU         btCPUSplit `json:"cpu_s"`
}

// btCPUSplit is the CPU time (user + system seconds) one transfer cost
// the sending process and the receiving one.
type btCPUSplit struct {
	Sender   float64 `json:"sender"`
	Receiver float64 `json:"receiver"`
}

// bench transfer runs the senders in this process and each receiver in a
// child process (a re-exec of this binary with the hidden --role flag), so
// the receiver's peak RSS (VmHWM) is its own. The child reads its job from
// a JSON file and prints its result as JSON on stdout.
type btJob struct {
	Mode      string        `json:"mode"` // "raw" or "dweb"
	Hash      string        `json:"hash"`
	Size      int64         `json:"size"`
	Dir       string        `json:"dir"`
	Group     key.RecordKey `json:"group"`
	Secret    string        `json:"secret"`
	Providers []btPeer      `json:"providers"`
	TLS       bool          `json:"tls"`      // ask for the tunnel's TLS transport mode
	Files     int           `json:"files"`    // > 1: Hash is a collection of that many entries (DownloadCollection)
	NoBatch   bool          `json:"no_batch"` // no children requests: every entry its own download
	NoPool    bool          `json:"no_pool"`  // no StreamPool: every blob's download opens its own tunnels
	Lanes     int           `json:"lanes"`    // connections per provider for a blob of core.LaneMinSize and up, as core does
}

type btPeer struct {
	Node   key.NodeID `json:"node"`
	Addr   string     `json:"addr"`
	Static []byte     `json:"static"`
}

type btChildResult struct {
	Lanes   int                      `json:"lanes"` // connections per provider the download used
	Seconds float64                  `json:"seconds"`
	PeakRSS float64                  `json:"peak_rss_mb"`
	PerProv []int64                  `json:"per_provider"`
	CPUUser float64                  `json:"cpu_user"` // up to the end of the download, before Received is hashed
	CPUSys  float64                  `json:"cpu_sys"`
	Tunnels blobsync.StreamPoolStats `json:"tunnels"`
	// Received: the BLAKE3 hash of each blob the download stored, of its
	// bytes as the store holds them on disk (dweb runs).
	Received []btReceived `json:"received,omitempty"`
	// TLSTunnels and NoiseTunnels count the tunnels the receiver opened by
	// the transport each session negotiated (Session.TLSTransport).
	TLSTunnels   int64  `json:"tls_tunnels"`
	NoiseTunnels int64  `json:"noise_tunnels"`
	Err          string `json:"err,omitempty"`
}

// btReceived is one received blob: its name in the collection ("" for a
// lone blob) and the hex BLAKE3 hash of its bytes on disk.
type btReceived struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
}

func benchTransferCmd(a *app) *cobra.Command {
	var sizeFlag, rateFlag, dir, role, job, tt, lossFlag, linkRateFlag string
	var providers, rounds, files, lanes int
	var noBatch, noPool, e2e bool
	var rtt time.Duration
	cmd := &cobra.Command{
		Use:   "transfer",
		Short: "download a blob through the real stack (QUIC, Noise tunnel, blobsync) next to a raw QUIC stream",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if role == "receiver" {
				return btReceiver(cmd.Context(), a, job)
			}
			size, err := bsParseSize(sizeFlag)
			if err != nil {
				return &usageError{err}
			}
			var rate int64
			if rateFlag != "" {
				if rate, err = bsParseSize(strings.TrimSuffix(rateFlag, "/s")); err != nil {
					return &usageError{fmt.Errorf("--provider-rate: %w", err)}
				}
			}
			if providers < 1 || providers > 16 {
				return &usageError{fmt.Errorf("--providers %d: want 1..16", providers)}
			}
			tmp, err := os.MkdirTemp(dir, "dweb-bench-transfer-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			if tt != "tls" && tt != "noise" {
				return &usageError{fmt.Errorf("--tunnel-transport %q: want tls or noise", tt)}
			}
			if lanes < 1 || lanes > transport.MaxLanes {
				return &usageError{fmt.Errorf("--lanes %d: want 1..%d", lanes, transport.MaxLanes)}
			}
			if rounds < 1 || rounds > 15 {
				return &usageError{fmt.Errorf("--rounds %d: want 1..15", rounds)}
			}
			if files < 1 || int64(files) > size || files > blobsync.MaxEntries {
				return &usageError{fmt.Errorf("--files %d: want 1..%d and at most one per byte", files, blobsync.MaxEntries)}
			}
			var lo netem.Options
			if rtt < 0 || rtt > 2*time.Second {
				return &usageError{fmt.Errorf("--rtt %v: want 0 to 2s", rtt)}
			}
			lo.Delay = rtt / 2
			if lossFlag != "" {
				if lo.Loss, err = btParseLoss(lossFlag); err != nil {
					return &usageError{err}
				}
			}
			if linkRateFlag != "" {
				if lo.Rate, err = bsParseSize(strings.TrimSuffix(linkRateFlag, "/s")); err != nil {
					return &usageError{fmt.Errorf("--link-rate: %w", err)}
				}
			}
			if e2e && (providers != 1 || files != 1 || lo != (netem.Options{}) || rate != 0) {
				return &usageError{errors.New("--e2e: one provider, one file, no emulated link and no --provider-rate")}
			}
			opts := btOptions{rate: rate, tls: tt == "tls", rounds: rounds, files: files, noBatch: noBatch, noPool: noPool, link: lo, e2e: e2e, lanes: lanes}
			res, err := benchTransfer(cmd.Context(), tmp, size, providers, opts)
			if err != nil {
				return err
			}
			// The figures are printed either way; a download whose bytes
			// differ from the source also fails the command.
			var bad error
			if !res.Verified || (res.E2E != nil && !res.E2E.Verified) {
				bad = errors.New("bench transfer: the received bytes differ from the source files (BLAKE3)")
			}
			if a.json {
				return errors.Join(a.printJSON(res), bad)
			}
			fmt.Fprintf(a.stdout, "%d bytes from %d provider(s): dweb %.0f MB/s, raw QUIC %.0f MB/s, ratio %.2f, receiver peak RSS %.0f MB\n",
				res.Bytes, res.Providers, res.MBs, res.BaselineMBs, res.Ratio, res.ReceiverPeakRSS)
			fmt.Fprintf(a.stdout, "tunnel transport %s (asked %s); received bytes match the source's BLAKE3: %v\n", res.TunnelTransport, res.TunnelAsked, res.Verified)
			if res.Speedup > 0 {
				fmt.Fprintf(a.stdout, "one provider: %.0f MB/s; speedup %.2fx\n", res.OneProviderMBs, res.Speedup)
			}
			if res.Files > 1 {
				fmt.Fprintf(a.stdout, "%d files: %.1f files/s; tunnels opened %d, reused %d\n", res.Files, res.FilesPerSec, res.Tunnels.Opened, res.Tunnels.Reused)
			}
			if l := res.Link; l != nil {
				fmt.Fprintf(a.stdout, "emulated path to each provider: %.0f ms round trip, %.2f %% loss, bottleneck %.1f MB/s (0: none); %d datagrams lost, %d dropped at the queue\n",
					l.RTTms, l.Loss*100, l.RateMBs, l.Lost, l.QueueDrops)
			}
			if e := res.E2E; e != nil {
				fmt.Fprintf(a.stdout, "file get end to end: %.0f MB/s (%.2f of raw QUIC, %.2f of the bench); with the old copy export %.0f MB/s; --no-store-copy %.0f MB/s (%.2f of the bench, %s); cp %.0f MB/s (%s); outputs match: %v\n",
					e.MBs, e.RatioToRaw, e.RatioToBench, e.CopyMBs, e.MoveMBs, e.RatioToBenchMove, e.MoveExport, e.CpMBs, e.FileSystem, e.Verified)
			}
			return bad
		},
	}
	cmd.Flags().StringVar(&sizeFlag, "size", "1GiB", "blob size (B, KiB, MiB, GiB, KB, MB, GB)")
	cmd.Flags().IntVar(&providers, "providers", 1, "providers serving the blob at once")
	cmd.Flags().IntVar(&files, "files", 1, "split --size into a collection of this many files and download it with DownloadCollection (small files go in children requests)")
	cmd.Flags().BoolVar(&noBatch, "no-batch", false, "with --files: no children requests, every file its own download (to compare)")
	cmd.Flags().StringVar(&rateFlag, "provider-rate", "", "upload rate limit of each provider, e.g. 25MB/s (default: none)")
	cmd.Flags().IntVar(&lanes, "lanes", core.DefaultLanes, "QUIC connections per provider for a blob of 16 MiB and up, each with its own congestion window (core.Options.Lanes; at most 2 on a path under 5 ms); 1: one, as stock quic-go")
	cmd.Flags().BoolVar(&noPool, "no-pool", false, "no tunnel pool: every blob's download opens its own tunnels (to compare)")
	cmd.Flags().DurationVar(&rtt, "rtt", 0, "emulate a wide-area path to each provider with this round-trip time, e.g. 50ms (a loopback UDP relay, internal/netem; baseline and dweb alike)")
	cmd.Flags().StringVar(&lossFlag, "loss", "", "with the emulated path: datagrams lost at random each way, e.g. 0.1% (default: none)")
	cmd.Flags().StringVar(&linkRateFlag, "link-rate", "", "with the emulated path: its bottleneck each way, e.g. 12.5MB/s (default: none)")
	cmd.Flags().IntVar(&rounds, "rounds", 5, "dweb runs, each between two baseline runs (its ratio is to their mean); the figures are the medians (on a shared machine one run of either can swing by 20 %)")
	cmd.Flags().StringVar(&tt, "tunnel-transport", "tls", "tls: tunnel handshake bound to the direct QUIC connection, bytes protected by its TLS only (tunnel.DialConfig.TLSTransport); noise: Noise-encrypt every byte as over a relay")
	cmd.Flags().BoolVar(&e2e, "e2e", false, "also time, in each round, the real `dweb file get` of the file to a path between two `dweb serve` daemons (fresh receiver each time), with the default export, with DWEB_EXPORT=copy and with --no-store-copy, and `cp` of the file")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for stores and temp files (default: the system temp dir)")
	cmd.Flags().StringVar(&role, "role", "", "internal: run as the receiver child")
	cmd.Flags().StringVar(&job, "job", "", "internal: the receiver's job file")
	cmd.Flags().MarkHidden("role")
	cmd.Flags().MarkHidden("job")
	return cmd
}

// btProvider is one sender node: endpoint, store, tunnel key.
type btProvider struct {
	ep     *transport.Endpoint
	db     *store.DB
	blobs  *blobsync.Store
	static tunnel.StaticKey
}

// btOptions are bench transfer's settings besides size and providers.
type btOptions struct {
	rate            int64 // each provider's upload limit, bytes/s; 0: none
	tls             bool  // tunnel in TLS transport mode
	rounds, files   int
	noBatch, noPool bool
	lanes           int           // connections per provider for a large blob (core.Options.Lanes)
	link            netem.Options // the emulated path; zero: straight loopback
	e2e             bool          // also the real file get between daemons, and cp
	// providerNoTLS makes the providers decline the TLS transport mode
	// (tests: the result must report what was negotiated, not asked).
	providerNoTLS bool
}

// btParseLoss parses a loss probability: "0.1%" or "0.001".
func btParseLoss(s string) (float64, error) {
	v, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	f, err := strconv.ParseFloat(v, 64)
	if pct {
		f /= 100
	}
	if err != nil || !(f >= 0 && f < 0.5) {
		return 0, fmt.Errorf("--loss %q: want a probability under 50 %%, as 0.1%% or 0.001", s)
	}
	return f, nil
}

func benchTransfer(ctx context.Context, dir string, size int64, n int, o btOptions) (*benchTransferResult, error) {
	rate, tls, rounds, files, noBatch := o.rate, o.tls, o.rounds, o.files, o.noBatch
	// The data: one file, or files of size/files bytes (the last takes the
	// remainder) listed by a collection.
	var paths []string
	for i := range files {
		p := filepath.Join(dir, fmt.Sprintf("data%06d", i))
		sz := size / int64(files)
		if i == files-1 {
			sz = size - sz*int64(files-1)
		}
		if err := bsWriteRandom(p, sz, uint64(2+i)); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	// What the receivers must end up with, hashed from the source files
	// here, apart from the store that serves them.
	want, err := btSourceHashes(paths)
	if err != nil {
		return nil, err
	}
	group := key.RecordKey(key.NewSecret())
	secret := key.NewSecret()
	psk := tunnel.PSK(secret)
	var provs []*btProvider
	defer func() {
		for _, p := range provs {
			p.ep.Close()
			p.db.Close()
		}
	}()
	var h blobsync.Hash
	for i := range n {
		pdir := filepath.Join(dir, fmt.Sprintf("provider%d", i))
		db, err := store.Open(filepath.Join(pdir, "db"), store.Options{})
		if err != nil {
			return nil, err
		}
		bs, err := blobsync.OpenStore(db, filepath.Join(pdir, "blobs"), blobsync.StoreOptions{})
		if err != nil {
			db.Close()
			return nil, err
		}
		// Reference mode: the providers share the data files.
		if h, err = btAddData(ctx, bs, paths); err != nil {
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
			return nil, err
		}
		p := &btProvider{ep: ep, db: db, blobs: bs, static: st}
		provs = append(provs, p)
		lim := blobsync.NewPeerLimiter(blobsync.ServeLimits{UploadRate: rate})
		ep.Handle(transport.ProtoTunnel, func(ctx context.Context, peer transport.Peer, s *quic.Stream) {
			sess, err := tunnel.Accept(ctx, s, tunnel.AcceptConfig{Static: st, LookupPSK: func(g key.RecordKey) ([32]byte, bool) {
				return psk, g == group
			}, Binding: transport.StreamBinding(ctx), AllowTLSTransport: !o.providerNoTLS})
			if err != nil {
				return
			}
			transport.Opened(ctx)
			defer sess.Close()
			pl, release := lim.Acquire(peer.ID.String())
			defer release()
			p.blobs.ServeWith(ctx, sess, blobsync.ServeOptions{Limit: pl})
		})
		// The baseline: a raw stream that moves the requested count of
		// bytes, no tunnel, no blob protocol.
		ep.Handle(transport.ProtoBlobs, func(ctx context.Context, _ transport.Peer, s *quic.Stream) {
			var hdr [8]byte
			if _, err := io.ReadFull(s, hdr[:]); err != nil {
				return
			}
			transport.Opened(ctx)
			left := int64(binary.BigEndian.Uint64(hdr[:]))
			buf := make([]byte, 256<<10)
			for left > 0 {
				k := min(left, int64(len(buf)))
				if _, err := s.Write(buf[:k]); err != nil {
					return
				}
				left -= k
			}
			s.Close()
		})
	}
	job := btJob{Hash: h.String(), Size: size, Group: group, Secret: secret.Text(), TLS: tls, Files: files, NoBatch: noBatch, NoPool: o.noPool, Lanes: o.lanes}
	res := &benchTransferResult{Bytes: size, Files: files, NoBatch: noBatch, NoPool: o.noPool, Providers: n, Hash: h.String(), SenderDataOnDisk: true, TunnelAsked: "noise"}
	emulate := o.link != (netem.Options{})
	if emulate {
		res.Link = &btLink{RTTms: float64(2*o.link.Delay) / 1e6, Loss: o.link.Loss, RateMBs: float64(o.link.Rate) / 1e6}
	}
	for _, p := range provs {
		addr := p.ep.LocalAddr()
		if emulate {
			// The receiver reaches the provider through the link; the
			// link's counts go into the result when the run ends.
			l, err := netem.New(addr, o.link)
			if err != nil {
				return nil, err
			}
			defer func() {
				l.Close()
				up, down := l.Up(), l.Down()
				res.Link.Lost += up.Lost + down.Lost
				res.Link.QueueDrops += up.QueueDrops + down.QueueDrops
			}()
			addr = l.Addr()
		}
		job.Providers = append(job.Providers, btPeer{Node: p.ep.ID(), Addr: addr.String(), Static: p.static.Public[:]})
	}
	if tls {
		res.TunnelAsked = "tls"
	}
	// Every dweb run's received bytes are checked against the sources, and
	// its tunnels counted by the transport they negotiated.
	res.Verified = true
	var tlsTunnels, noiseTunnels int64
	check := func(name string, r *btChildResult) {
		if err := btVerify(want, r.Received); err != nil {
			fmt.Fprintf(os.Stderr, "bench transfer: %s run: %v\n", name, err)
			res.Verified = false
		}
		tlsTunnels += r.TLSTunnels
		noiseTunnels += r.NoiseTunnels
	}
	if rate > 0 {
		res.ProviderRateMBs = float64(rate) / 1e6
	}

	// Each dweb run is bracketed by two baseline runs, and its ratio is to
	// their mean: on a shared machine the speed of both drifts within
	// seconds, and bracketing cancels a drift between the two halves of a
	// round instead of charging it to one side.
	var base, dwebR, ratios []float64
	var e2eSetup *btE2ESetup
	var e2eMBs, e2eCopy, e2eMove, e2eCp, e2eRaw, e2eBench, e2eBenchMove, e2eVsCopy, e2eVsCp []float64
	if o.e2e {
		edir := filepath.Join(dir, "e2e")
		if err := os.Mkdir(edir, 0o700); err != nil {
			return nil, err
		}
		if e2eSetup, err = btE2EStart(ctx, edir, paths[0]); err != nil {
			return nil, err
		}
		defer e2eSetup.close()
		res.E2E = &btE2E{FileSystem: btFileSystem(edir), Verified: true}
	}
	prev, err := btRawRun(ctx, dir, job)
	if err != nil {
		return nil, err
	}
	for i := range rounds {
		d, err := btDwebRun(ctx, dir, job, i == rounds-1)
		if err != nil {
			return nil, err
		}
		var esecs [4]float64
		var emethods [3]string
		var ecpu btCPUSplit
		if o.e2e {
			var ok bool
			if esecs, emethods, ecpu, ok, err = btE2ERun(ctx, e2eSetup, want[""], i); err != nil {
				return nil, err
			}
			res.E2E.CPU = ecpu
			res.E2E.MoveExport = emethods[2]
			if res.E2E.Exports == nil {
				res.E2E.Exports = make(map[string]int)
			}
			res.E2E.Exports[emethods[0]]++
			res.E2E.Verified = res.E2E.Verified && ok
		}
		next, err := btRawRun(ctx, dir, job)
		if err != nil {
			return nil, err
		}
		res.BaselineMBs = bsRound((prev.mbs + next.mbs) / 2)
		res.BaselineSeconds = (prev.seconds + next.seconds) / 2
		res.BaselineRSS = max(res.BaselineRSS, prev.rss, next.rss)
		res.BaselineCPU = btCPUSplit{Sender: bsRound((prev.cpu.Sender + next.cpu.Sender) / 2), Receiver: bsRound((prev.cpu.Receiver + next.cpu.Receiver) / 2)}
		r := d.child
		check(fmt.Sprintf("round %d", i+1), r)
		res.ReceiverSeconds, res.ReceiverPeakRSS, res.ProviderBytes = r.Seconds, max(res.ReceiverPeakRSS, r.PeakRSS), r.PerProv
		res.Lanes = r.Lanes
		res.ReceiverCPUUser, res.ReceiverCPUSys = r.CPUUser, r.CPUSys
		res.CPU, res.MBs, res.Tunnels = d.cpu, d.mbs, r.Tunnels
		res.Ratio = bsRound(res.MBs / res.BaselineMBs)
		base, dwebR, ratios = append(base, res.BaselineMBs), append(dwebR, res.MBs), append(ratios, res.Ratio)
		res.Rounds = append(res.Rounds, btRound{res.BaselineMBs, res.MBs, res.Ratio, res.BaselineCPU, res.CPU})
		if o.e2e {
			mbs := func(sec float64) float64 { return bsRound(float64(size) / 1e6 / sec) }
			r := btE2ERound{MBs: mbs(esecs[0]), Export: emethods[0], CPU: ecpu, CopyMBs: mbs(esecs[1]), MoveMBs: mbs(esecs[2]), CpMBs: mbs(esecs[3])}
			e := res.E2E
			e.Rounds = append(e.Rounds, r)
			e.Seconds, e.CopySeconds, e.MoveSeconds, e.CpSeconds = esecs[0], esecs[1], esecs[2], esecs[3]
			e2eMBs, e2eCopy, e2eMove, e2eCp = append(e2eMBs, r.MBs), append(e2eCopy, r.CopyMBs), append(e2eMove, r.MoveMBs), append(e2eCp, r.CpMBs)
			e2eRaw = append(e2eRaw, bsRound(r.MBs/res.BaselineMBs))
			e2eBench = append(e2eBench, bsRound(r.MBs/res.MBs))
			e2eBenchMove = append(e2eBenchMove, bsRound(r.MoveMBs/res.MBs))
			e2eVsCopy = append(e2eVsCopy, bsRound(r.MBs/r.CopyMBs))
			e2eVsCp = append(e2eVsCp, bsRound(r.MBs/r.CpMBs))
		}
		prev = next
	}
	if e := res.E2E; e != nil {
		e.MBs, e.CopyMBs, e.MoveMBs, e.CpMBs = btMedian(e2eMBs), btMedian(e2eCopy), btMedian(e2eMove), btMedian(e2eCp)
		e.RatioToBenchMove = btMedian(e2eBenchMove)
		e.RatioToRaw, e.RatioToBench, e.RatioToCopy, e.RatioToCp = btMedian(e2eRaw), btMedian(e2eBench), btMedian(e2eVsCopy), btMedian(e2eVsCp)
		if rounds == 1 {
			e.Rounds = nil
		}
	}
	if rounds > 1 {
		res.BaselineMBs, res.MBs, res.Ratio = btMedian(base), btMedian(dwebR), btMedian(ratios)
	} else {
		res.Rounds = nil
	}
	if files > 1 {
		res.FilesPerSec = bsRound(float64(files) * res.MBs * 1e6 / float64(size))
	}

	if n > 1 {
		one := job
		one.Mode, one.Providers = "dweb", job.Providers[:1]
		one.Dir = filepath.Join(dir, "receiver1")
		r, err := btRunChild(ctx, dir, "one", one)
		if err != nil {
			return nil, err
		}
		check("one-provider", r)
		res.OneProviderSecs = r.Seconds
		res.OneProviderMBs = bsRound(float64(size) / 1e6 / r.Seconds)
		res.Speedup = bsRound(res.MBs / res.OneProviderMBs)
	}
	switch {
	case tlsTunnels > 0 && noiseTunnels == 0:
		res.TunnelTransport = "tls"
	case noiseTunnels > 0 && tlsTunnels == 0:
		res.TunnelTransport = "noise"
	case tlsTunnels > 0:
		res.TunnelTransport = "mixed"
	default:
		return nil, errors.New("bench transfer: the dweb runs opened no tunnel")
	}
	return res, nil
}

// btSourceHashes returns the hex BLAKE3 hash of each source file, keyed
// as the receiver names what it got: "" for a lone file, else its entry
// name in the collection (btAddData).
func btSourceHashes(paths []string) (map[string]string, error) {
	want := make(map[string]string, len(paths))
	for i, p := range paths {
		h, err := btHashFile(p)
		if err != nil {
			return nil, err
		}
		name := ""
		if len(paths) > 1 {
			name = btEntryName(i)
		}
		want[name] = h
	}
	return want, nil
}

// btHashFile returns the hex BLAKE3-256 hash of the file at path
// (github.com/zeebo/blake3, as b3sum prints it).
func btHashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return btHashReader(f)
}

func btHashReader(r io.Reader) (string, error) {
	h := blake3.New()
	if _, err := io.CopyBuffer(h, r, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// btVerify checks that got names each blob of want exactly once, with its
// hash.
func btVerify(want map[string]string, got []btReceived) error {
	seen := make(map[string]bool, len(got))
	for _, g := range got {
		w, ok := want[g.Name]
		switch {
		case !ok:
			return fmt.Errorf("received %q, which is not among the sources", g.Name)
		case seen[g.Name]:
			return fmt.Errorf("received %q twice", g.Name)
		case g.Hash != w:
			return fmt.Errorf("received %q with BLAKE3 %s, its source has %s", g.Name, g.Hash, w)
		}
		seen[g.Name] = true
	}
	if len(seen) != len(want) {
		return fmt.Errorf("received %d of the %d sources", len(seen), len(want))
	}
	return nil
}

// btMedian returns the median of v (not empty); it sorts v.
func btMedian(v []float64) float64 {
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return bsRound((v[len(v)/2-1] + v[len(v)/2]) / 2)
}

// btRun is one child's figures.
type btRun struct {
	mbs, seconds, rss float64
	cpu               btCPUSplit
	child             *btChildResult
}

// btRawRun runs one baseline receiver: a raw QUIC stream from the first
// provider's endpoint.
func btRawRun(ctx context.Context, dir string, job btJob) (*btRun, error) {
	raw := job
	raw.Mode, raw.Providers = "raw", job.Providers[:1]
	s0 := btSelfCPU()
	r, err := btRunChild(ctx, dir, "raw", raw)
	if err != nil {
		return nil, err
	}
	return &btRun{mbs: bsRound(float64(job.Size) / 1e6 / r.Seconds), seconds: r.Seconds, rss: r.PeakRSS, child: r,
		cpu: btCPUSplit{Sender: bsRound(btSelfCPU() - s0), Receiver: bsRound(r.CPUUser + r.CPUSys)}}, nil
}

// btDwebRun runs one dweb receiver on a fresh store (removed afterwards
// unless keep).
func btDwebRun(ctx context.Context, dir string, job btJob, keep bool) (*btRun, error) {
	dw := job
	dw.Mode = "dweb"
	dw.Dir = filepath.Join(dir, "receiver")
	if err := os.RemoveAll(dw.Dir); err != nil {
		return nil, err
	}
	if prefix := os.Getenv("DWEB_BENCH_CPUPROFILE"); prefix != "" {
		f, err := os.Create(prefix + ".senders")
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	s0 := btSelfCPU()
	r, err := btRunChild(ctx, dir, "dweb", dw)
	pprof.StopCPUProfile()
	if err != nil {
		return nil, err
	}
	if !keep {
		defer os.RemoveAll(dw.Dir)
	}
	return &btRun{mbs: bsRound(float64(job.Size) / 1e6 / r.Seconds), seconds: r.Seconds, rss: r.PeakRSS, child: r,
		cpu: btCPUSplit{Sender: bsRound(btSelfCPU() - s0), Receiver: bsRound(r.CPUUser + r.CPUSys)}}, nil
}

// btRunChild runs one receiver job in a child process and returns its result.
func btRunChild(ctx context.Context, dir, name string, job btJob) (*btChildResult, error) {
	path := filepath.Join(dir, "job-"+name+".json")
	b, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "bench", "transfer", "--role", "receiver", "--job", path)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bench transfer: %s receiver: %w", name, err)
	}
	var r btChildResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("bench transfer: %s receiver said %q: %w", name, out, err)
	}
	if r.Err != "" {
		return nil, fmt.Errorf("bench transfer: %s receiver: %s", name, r.Err)
	}
	return &r, nil
}

// btReceiver is the child: it runs the job and prints a btChildResult.
func btReceiver(ctx context.Context, a *app, jobPath string) error {
	b, err := os.ReadFile(jobPath)
	if err != nil {
		return err
	}
	var job btJob
	if err := json.Unmarshal(b, &job); err != nil {
		return err
	}
	// DWEB_BENCH_CPUPROFILE=<prefix> writes <prefix>.<mode> CPU profiles of
	// the receiver, for `go tool pprof`.
	if prefix := os.Getenv("DWEB_BENCH_CPUPROFILE"); prefix != "" {
		f, err := os.Create(prefix + "." + job.Mode + "." + strconv.Itoa(len(job.Providers)))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := btReceive(ctx, &job)
	if err != nil {
		res = &btChildResult{Err: err.Error()}
		res.CPUUser, res.CPUSys, _ = btCPU()
	}
	res.PeakRSS = btPeakRSS()
	return json.NewEncoder(a.stdout).Encode(res)
}

func btReceive(ctx context.Context, job *btJob) (*btChildResult, error) {
	ep, err := transport.Listen(transport.Options{Identity: key.NewKeypair(), ListenAddr: "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	defer ep.Close()
	peers := make([]struct {
		id   key.NodeID
		addr netip.AddrPort
		st   [32]byte
	}, len(job.Providers))
	for i, p := range job.Providers {
		peers[i].id = p.Node
		if peers[i].addr, err = netip.ParseAddrPort(p.Addr); err != nil {
			return nil, err
		}
		copy(peers[i].st[:], p.Static)
	}
	if job.Mode == "raw" {
		s, err := ep.OpenStream(ctx, peers[0].id, peers[0].addr, transport.ProtoBlobs)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		t := time.Now()
		var hdr [8]byte
		binary.BigEndian.PutUint64(hdr[:], uint64(job.Size))
		if _, err := s.Write(hdr[:]); err != nil {
			return nil, err
		}
		n, err := io.CopyBuffer(io.Discard, s, make([]byte, 256<<10))
		if err != nil {
			return nil, err
		}
		if n != job.Size {
			return nil, fmt.Errorf("raw stream moved %d bytes, want %d", n, job.Size)
		}
		res := &btChildResult{Seconds: time.Since(t).Seconds()}
		res.CPUUser, res.CPUSys, _ = btCPU()
		return res, nil
	}

	h, err := blobsync.ParseHash(job.Hash)
	if err != nil {
		return nil, err
	}
	secret, err := key.ParseSecret(job.Secret)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(filepath.Join(job.Dir, "db"), store.Options{})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	bs, err := blobsync.OpenStore(db, filepath.Join(job.Dir, "blobs"), blobsync.StoreOptions{})
	if err != nil {
		return nil, err
	}
	static, err := tunnel.NewStaticKey()
	if err != nil {
		return nil, err
	}
	// As core does: tunnels that a blob's download ended cleanly serve the
	// next blob's (a collection downloaded blob by blob).
	pool := blobsync.NewStreamPool(0, 0)
	defer pool.Close()
	var provs []blobsync.Provider
	var opened btOpened
	lanesUsed := 1
	// The raw run opens its stream before its clock starts, so the QUIC
	// handshake is outside its time; here too. The tunnel handshake, the
	// have query and the requests stay inside: they are dweb's own.
	for _, p := range peers {
		if err := ep.Connect(ctx, p.id, p.addr); err != nil {
			return nil, err
		}
	}
	for i, p := range peers {
		// As core does: a large blob is striped (core.LanesFor).
		lanes := 1
		if job.Files <= 1 {
			rtt, ok := ep.PeerRTT(p.id)
			lanes = core.LanesFor(job.Lanes, job.Size, rtt, ok)
		}
		lanesUsed = max(lanesUsed, lanes)
		for lane := range lanes {
			id := strconv.Itoa(i)
			if lane > 0 {
				id += "/" + strconv.Itoa(lane)
			}
			var bp blobsync.Provider = &btTunnelProvider{id: id, lane: lane, ep: ep, node: p.id, addr: p.addr, dial: tunnel.DialConfig{
				Static: static, RemoteStatic: p.st, Group: job.Group, PSK: tunnel.PSK(secret), TLSTransport: job.TLS,
			}, opened: &opened}
			if !job.NoPool {
				bp = pool.Provider(bp)
			}
			provs = append(provs, bp)
		}
	}
	var last blobsync.Progress
	opts := blobsync.DownloadOptions{Progress: func(p blobsync.Progress) { last = p }}
	if job.NoBatch {
		opts.BatchMax = -1
	}
	t := time.Now()
	var d time.Duration
	got := []btReceived{{Hash: h.String()}} // blobs to hash: the lone blob, or the collection's entries
	if job.Files > 1 {
		c, err := bs.DownloadCollection(ctx, h, provs, opts)
		if err != nil {
			return nil, err
		}
		d = time.Since(t)
		got = got[:0]
		for _, e := range c.Entries {
			got = append(got, btReceived{Name: e.Name, Hash: e.Hash.String()})
		}
	} else {
		opts.SizeHint = job.Size // as core passes a file's size from its collection entry
		if _, err := bs.Download(ctx, h, provs, opts); err != nil {
			return nil, err
		}
		d = time.Since(t)
	}
	res := &btChildResult{Lanes: lanesUsed, Seconds: d.Seconds(), Tunnels: pool.Stats(), TLSTunnels: opened.tls.Load(), NoiseTunnels: opened.noise.Load()}
	if job.NoPool {
		res.Tunnels.Opened = res.TLSTunnels + res.NoiseTunnels
	}
	// Bytes per provider node, its lanes summed.
	res.PerProv = make([]int64, len(peers))
	for _, p := range last.Providers {
		node, _, _ := strings.Cut(p.ID, "/")
		if i, err := strconv.Atoi(node); err == nil && i >= 0 && i < len(peers) {
			res.PerProv[i] += p.Bytes
		}
	}
	// The CPU figures end with the download; hashing what it stored is the
	// check's cost, not dweb's.
	res.CPUUser, res.CPUSys, _ = btCPU()
	for i, g := range got {
		hh, err := blobsync.ParseHash(g.Hash)
		if err != nil {
			return nil, err
		}
		if got[i].Hash, err = btHashStored(bs, hh); err != nil {
			return nil, err
		}
	}
	res.Received = got
	return res, nil
}

// btHashStored hashes blob h's bytes as bs holds them: its data file on
// disk, or its inline bytes for a small blob. Store.Open does not verify
// them, so the hash says what is there.
func btHashStored(bs *blobsync.Store, h blobsync.Hash) (string, error) {
	r, _, err := bs.Open(h)
	if err != nil {
		return "", fmt.Errorf("received blob %s: %w", h, err)
	}
	defer r.Close()
	return btHashReader(r)
}

// btOpened counts the tunnels a receiver opened, by the transport each
// negotiated.
type btOpened struct{ tls, noise atomic.Int64 }

// btAddData adds the files at paths to bs in reference mode and returns
// the blob's hash (one file) or that of a collection listing them.
func btAddData(ctx context.Context, bs *blobsync.Store, paths []string) (blobsync.Hash, error) {
	var c blobsync.Collection
	for i, p := range paths {
		h, n, err := bs.AddFileRef(ctx, p)
		if err != nil {
			return h, err
		}
		if len(paths) == 1 {
			return h, nil
		}
		c.Put(blobsync.Entry{Name: btEntryName(i), Hash: h, Size: n})
	}
	b, err := c.Encode()
	if err != nil {
		return blobsync.Hash{}, err
	}
	return bs.AddBytes(ctx, b)
}

// btEntryName is the name of the i-th file in the bench's collection.
func btEntryName(i int) string { return fmt.Sprintf("file%06d", i) }

// btTunnelProvider opens a Noise tunnel over a QUIC stream, as core does;
// with dial.TLSTransport the handshake is bound to the connection's TLS
// exporter and asks for TLS transport mode.
type btTunnelProvider struct {
	id     string
	lane   int // transport lane (transport.OpenStreamLane)
	ep     *transport.Endpoint
	node   key.NodeID
	addr   netip.AddrPort
	dial   tunnel.DialConfig
	opened *btOpened // tunnels opened, counted across providers
}

func (p *btTunnelProvider) ID() string { return p.id }

func (p *btTunnelProvider) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	s, binding, err := p.ep.OpenStreamLane(ctx, p.node, p.addr, transport.ProtoTunnel, p.lane)
	if err != nil {
		return nil, err
	}
	cfg := p.dial
	cfg.Binding = binding
	sess, err := tunnel.Dial(ctx, s, cfg)
	if err != nil {
		return nil, err
	}
	// A provider may decline the TLS transport mode; the session then
	// Noise-encrypts and the result reports it.
	if sess.TLSTransport() {
		p.opened.tls.Add(1)
	} else {
		p.opened.noise.Add(1)
	}
	return sess, nil
}

// btPeakRSS returns this process's peak resident set (VmHWM) in MB.
func btPeakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return bsRound(kb / 1024)
			}
		}
	}
	return 0
}

// btSelfCPU returns this process's user + system CPU seconds (0 if unknown).
func btSelfCPU() float64 {
	u, s, _ := btCPU()
	return u + s
}

// btCPU returns this process's user and system CPU seconds (/proc/self/stat).
func btCPU() (user, sys float64, ok bool) { return btProcCPU("self") }

// btProcCPU returns the user and system CPU seconds of process pid (a
// number, or "self") from /proc/PID/stat; ok is false where there is no
// such file (not Linux, or the process is gone).
func btProcCPU(pid string) (user, sys float64, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, 0, false
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if errors.Join(err1, err2) != nil {
		return 0, 0, false
	}
	return u / 100, st / 100, true // USER_HZ is 100 on Linux
}
