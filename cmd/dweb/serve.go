package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/httpapi"
	"github.com/dwebkit/dweb/internal/netem"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/spf13/cobra"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes including the terminating NUL).
const maxSocketPath = 107

// shutdownGrace bounds how long a stopping daemon waits for requests in
// flight before it closes their connections.
const shutdownGrace = 5 * time.Second

// serveOptions are the flags of `dweb serve`.
type serveOptions struct {
	listen    string
	bootstrap []string
	logLevel  string
	relay     bool     // serve as a relay for nodes behind NAT
	relays    []string // relays to keep reservations on
	device    string   // this node's device name, saved in its store; "": the saved one
	relayDump string   // with relay: write every spliced byte to files in this directory

	http            string // also serve the API on this TCP host:port
	httpAllowRemote bool   // allow a non-loopback --http address
	maxUpload       int64  // bytes of one media upload; 0: httpapi.DefaultMaxUpload

	backup            bool          // keep a full copy of every group's repos (docs/backup.md)
	backupInterval    time.Duration // full reconciliation period; 0: core.DefaultBackupInterval
	backupConcurrency int           // blobs downloaded at once; 0: core.DefaultBackupConcurrency
	quota             string        // storage quota, core.ParseSize syntax ("50GiB"); "" or "0": none
	link              string        // --emulate-link, netem.ParseOptions
	chunking          bool          // --chunking, core.Options.Chunking
	noStoreCopy       bool          // --no-store-copy, core.Options.NoStoreCopy
	keepVersions      int           // --keep-versions, core.Options.KeepVersions
	keepVersionsFor   time.Duration // --keep-versions-for, core.Options.KeepVersionsFor
	limitsLoopback    bool          // count loopback addresses in the IP and prefix scopes
	limits            string        // "phone", "server" or "" (by role: server with --relay or --backup)
}

// readyLine is what `dweb serve --json` prints once the node is up.
type readyLine struct {
	NodeID  string `json:"node_id"`
	Addr    string `json:"addr"`
	Contact string `json:"contact"`
	Socket  string `json:"socket"`
	HTTP    string `json:"http,omitempty"` // the --http listener's address
	// AdminURI is a --backup server's admin URI, printed on its first start
	// only (later: dweb backup admin-uri); docs/backup.md.
	AdminURI string `json:"admin_uri,omitempty"`
}

func (a *app) serveCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "run a node and its local API on DIR/dweb.sock until SIGINT or SIGTERM",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:0", "UDP host:port for QUIC")
	cmd.Flags().StringArrayVar(&o.bootstrap, "bootstrap", nil, "bootstrap node as nodeID@host:port (repeatable)")
	cmd.Flags().StringVar(&o.device, "device-name", "", `name of this node's repo in the groups it creates or joins (saved: later runs keep it); default the saved one, else "`+core.DefaultDeviceName+`"`)
	cmd.Flags().BoolVar(&o.relay, "relay", false, "relay tunnels for nodes behind NAT (accept reservations)")
	cmd.Flags().StringArrayVar(&o.relays, "relays", nil, "relay to keep a reservation on, as nodeID@host:port (repeatable)")
	cmd.Flags().StringVar(&o.relayDump, "relay-dump", "", "with --relay: write every byte this relay splices to files in DIR, one per circuit and direction, to check it sees only ciphertext (they grow with the traffic)")
	cmd.Flags().StringVar(&o.http, "http", "", "also serve the HTTP API on this TCP HOST:PORT, e.g. 127.0.0.1:8080 (loopback only unless --http-allow-remote)")
	cmd.Flags().BoolVar(&o.httpAllowRemote, "http-allow-remote", false, "allow a non-loopback --http address: the API has no authentication")
	cmd.Flags().Int64Var(&o.maxUpload, "max-upload", httpapi.DefaultMaxUpload, "largest media upload through the HTTP API, in bytes (413 above)")
	cmd.Flags().BoolVar(&o.backup, "backup", false, "backup server: keep a full, verified copy of every repo of every group joined, and serve it (docs/backup.md)")
	cmd.Flags().DurationVar(&o.backupInterval, "backup-interval", core.DefaultBackupInterval, "with --backup: period of the full reconciliation")
	cmd.Flags().IntVar(&o.backupConcurrency, "backup-concurrency", core.DefaultBackupConcurrency, "with --backup: blobs downloaded at once")
	cmd.Flags().StringVar(&o.quota, "quota", "", "storage quota of the blob store, e.g. 50GiB (B, KiB..TiB, KB..TB); downloads and adds past it fail (507); default none")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	cmd.Flags().StringVar(&o.limits, "limits", "", "limits on what peers may make the node hold: phone or server (docs/limits.md); default server with --relay or --backup, else phone")
	cmd.Flags().BoolVar(&o.limitsLoopback, "limits-loopback", false, "for tests: count loopback, private and link-local addresses in the per-IP and per-prefix limits, so that nodes on 127.x.y.z act as hosts of distinct networks")
	cmd.Flags().IntVar(&o.keepVersions, "keep-versions", 0, "older versions of each file this node's repos keep: 0 every one (the default, up to 1000 per name), N the N newest, -1 none (core.Options.KeepVersions)")
	cmd.Flags().DurationVar(&o.keepVersionsFor, "keep-versions-for", 0, "also drop older versions replaced longer ago than this, e.g. 720h (0: no age limit; core.Options.KeepVersionsFor)")
	cmd.Flags().BoolVar(&o.noStoreCopy, "no-store-copy", false, "every file get to a path moves the store's file there and keeps it as a reference to that path, as file get --no-store-copy (core.Options.NoStoreCopy)")
	cmd.Flags().BoolVar(&o.chunking, "chunking", false, "store this node's files above 4 MiB as content-defined chunks, so an edit costs what changed (core.Options.Chunking; off by default: nodes older than collection version 2 cannot read such repos)")
	cmd.Flags().StringVar(&o.link, "emulate-link", "", "for tests: shape this node's UDP socket as a lossy link, e.g. delay=20ms,jitter=5ms,loss=2%,rate=1000000 (bytes/s) (docs/limits.md)")
	return cmd
}

// serve runs the daemon until ctx ends: the node, then the HTTP API on the
// unix socket. It prints one ready line on stdout once both are up.
func (a *app) serve(ctx context.Context, o serveOptions) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return &usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)}
	}
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))

	sock := a.socketPath()
	dataDir := filepath.Dir(sock)
	if len(sock) > maxSocketPath {
		return &usageError{fmt.Errorf("socket path %s is %d bytes, longer than the %d a unix socket allows: use a shorter --data", sock, len(sock), maxSocketPath)}
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := clearStaleSocket(ctx, sock); err != nil {
		return err
	}
	var tcpLn net.Listener
	var token string
	if o.http != "" {
		var err error
		if tcpLn, err = httpapi.ListenTCP(o.http, o.httpAllowRemote); err != nil {
			var ae *httpapi.AddrError
			if errors.As(err, &ae) {
				return &usageError{err}
			}
			return err
		}
		defer tcpLn.Close()
		// dweb's own routes over TCP need this token (docs/http-api.md).
		if token, err = httpapi.LoadOrCreateToken(filepath.Join(dataDir, httpapi.TokenFile)); err != nil {
			return err
		}
	}

	if o.backupInterval < 0 || o.backupConcurrency < 0 {
		return &usageError{errors.New("--backup-interval and --backup-concurrency must not be negative")}
	}
	if o.keepVersions < -1 || o.keepVersions > blobsync.MaxVersions || o.keepVersionsFor < 0 {
		return &usageError{fmt.Errorf("--keep-versions is -1 (none), 0 (all) or 1..%d; --keep-versions-for must not be negative", blobsync.MaxVersions)}
	}
	if o.device != "" {
		if err := datarepo.CheckName(o.device); err != nil {
			return &usageError{fmt.Errorf("--device-name: %w", err)}
		}
	}
	var limits rcmgr.Limits
	switch o.limits {
	case "":
	case "phone":
		limits = rcmgr.PhoneLimits()
	case "server":
		limits = rcmgr.ServerLimits()
	default:
		return &usageError{fmt.Errorf("--limits %q: want phone or server", o.limits)}
	}
	limits.LocalAddrs = o.limitsLoopback
	var link *netem.Options
	if o.link != "" {
		l, err := netem.ParseOptions(o.link)
		if err != nil {
			return &usageError{fmt.Errorf("--emulate-link: %w", err)}
		}
		link = &l
	}
	var quota int64
	if o.quota != "" {
		var err error
		if quota, err = core.ParseSize(o.quota); err != nil {
			return &usageError{fmt.Errorf("--quota: %w", err)}
		}
	}
	var relayTap func(uint64, bool) io.WriteCloser
	if o.relayDump != "" {
		if !o.relay {
			return &usageError{errors.New("--relay-dump needs --relay")}
		}
		d, err := newRelayDumper(o.relayDump, log)
		if err != nil {
			return err
		}
		relayTap = d.tap
	}
	b, err := core.New(core.Options{DataDir: dataDir, ListenAddr: o.listen, Bootstrap: o.bootstrap, DeviceName: o.device, Logger: log, ServeRelay: o.relay, Relays: o.relays, RelayTap: relayTap,
		Backup: o.backup, BackupInterval: o.backupInterval, BackupConcurrency: o.backupConcurrency, StorageQuota: quota, Limits: limits, Link: link, Chunking: o.chunking,
		NoStoreCopy: o.noStoreCopy, KeepVersions: o.keepVersions, KeepVersionsFor: o.keepVersionsFor})
	if err != nil {
		return fmt.Errorf("open node in %s: %w", dataDir, err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			log.Error("close node", "err", err)
		}
	}()
	if err := b.Start(ctx); err != nil {
		return fmt.Errorf("start node: %w", err)
	}

	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	defer os.Remove(sock)
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("socket permissions: %w", err)
	}

	reqCtx, cancelReqs := context.WithCancel(context.Background())
	defer cancelReqs()
	srv := &http.Server{
		Handler:           httpapi.New(b, httpapi.Options{Log: log, MaxUpload: o.maxUpload, Token: token, Registry: httpapi.NewRegistry(b, func() int { return len(b.Peers()) }, append(b.Collectors(), httpapi.NewBackupCollector(b))...)}),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	served := make(chan error, 2) // one per listener
	go func() { served <- srv.Serve(ln) }()
	ready := readyLine{NodeID: b.NodeID().String(), Addr: b.Addr().String(), Contact: b.Contact(), Socket: sock}
	if tcpLn != nil {
		go func() { served <- srv.Serve(tcpLn) }()
		ready.HTTP = tcpLn.Addr().String()
	}
	if o.backup {
		if uri, first, err := b.AdminURI(); err != nil {
			log.Warn("no admin URI", "err", err)
		} else if first {
			ready.AdminURI = uri
		}
	}
	if a.json {
		if err := a.printJSON(ready); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.stdout, "node %s listening on %s (QUIC), API on %s\n", ready.NodeID, ready.Addr, ready.Socket)
		if ready.HTTP != "" {
			fmt.Fprintf(a.stdout, "HTTP API also on http://%s\n", ready.HTTP)
		}
		if ready.AdminURI != "" {
			fmt.Fprintf(a.stdout, "admin URI (shown once; keep it secret, it controls this backup server; dweb backup admin-uri shows it again):\n%s\n", ready.AdminURI)
		}
	}
	log.Info("ready", "node", ready.NodeID, "addr", ready.Addr, "socket", sock, "http", ready.HTTP)

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-served:
		log.Error("API server stopped", "err", serveErr)
	}
	cancelReqs() // ends streams in flight (file get) so Shutdown need not wait them out
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("API server: %w", serveErr)
	}
	return nil
}

// clearStaleSocket removes a socket file that nothing answers on, and fails
// if a daemon answers on it.
func clearStaleSocket(ctx context.Context, sock string) error {
	if _, err := os.Lstat(sock); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "unix", sock)
	if err == nil {
		conn.Close()
		return fmt.Errorf("another daemon is running on %s", sock)
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}
