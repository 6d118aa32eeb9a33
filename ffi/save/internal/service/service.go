// Package service is the lifecycle behind libsave.so, the library the Save
// Android app loads (docs/ffi.md, "libsave.so"): start a dweb node in the
// app's files directory and serve the HTTP API on 127.0.0.1:8080 and on a
// unix socket, stop it, start it again, and report each step with the
// status codes of the app's SnowbirdServiceStatus. It is plain Go, tested
// without a JVM; package main in ffi/save adds only the JNI conversions.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
)

// Status is a state the library reports to the app, with the codes of its
// SnowbirdServiceStatus.fromCode.
type Status int

const (
	BackendInitializing   Status = 0 // Start was called; the node is not open yet
	BackendRunning        Status = 1 // the node has started: every route answers
	WebServerInitializing Status = 2 // opening the TCP port and the socket
	WebServerRunning      Status = 3 // /status answers; the node is starting
	Processing            Status = 4 // not sent
	Idle                  Status = 5 // Stop has stopped everything
	Error                 Status = 6 // a start failed or the server stopped by itself; the message says why
)

var statusNames = [...]string{"BackendInitializing", "BackendRunning", "WebServerInitializing", "WebServerRunning", "Processing", "Idle", "Error"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Defaults of Options.
const (
	// DefaultHTTPAddr is where the Save app looks for its backend
	// (http://localhost:8080).
	DefaultHTTPAddr = "127.0.0.1:8080"
	// DefaultListenAddr is the node's QUIC address: every interface, a
	// free port, so the group's members on the phone's networks can reach
	// it.
	DefaultListenAddr = "0.0.0.0:0"
	// DefaultShutdownGrace bounds how long Stop waits for requests in
	// flight once their contexts are cancelled.
	DefaultShutdownGrace = 5 * time.Second
	// DataDirName is the node's directory inside the app's base directory.
	DataDirName = "dweb"
)

// Options configure a Service. The zero value serves the Save app.
type Options struct {
	// HTTPAddr is the loopback TCP address of the API. "": DefaultHTTPAddr.
	// Port 0 picks a free port (tests); Service.HTTPAddr says which.
	HTTPAddr string
	// ListenAddr is the node's UDP address for QUIC. "": DefaultListenAddr.
	ListenAddr string
	// Bootstrap lists nodes to enter the DHT through ("nodeID@host:port").
	Bootstrap []string
	// DeviceName names this node's repos until the app names them (saved
	// in the node's store). "": the saved one, else core.DefaultDeviceName.
	DeviceName string
	// MaxUpload bounds one media upload in bytes. 0: httpapi's default.
	MaxUpload int64
	// ShutdownGrace: see DefaultShutdownGrace. 0: the default.
	ShutdownGrace time.Duration
	// Status, if not nil, gets every status in the order it happened, one
	// call at a time, from a goroutine of the service's own (never from
	// inside Start or Stop). message is never empty.
	Status func(code Status, message string)
	// Log gets the service's and the node's logs. Nil: discarded.
	Log *slog.Logger
}

// Service runs at most one node and its HTTP servers at a time. Its
// methods are safe for concurrent use.
type Service struct {
	opts Options
	log  *slog.Logger

	mu  sync.Mutex // serialises Start and Stop
	run *run       // nil when stopped

	qmu        sync.Mutex
	queue      []statusEvent
	delivering bool
}

// run is one start of the service, until Stop or a failure ends it.
type run struct {
	msg      string
	httpAddr string
	cancel   context.CancelFunc
	done     chan struct{} // closed once everything of the run is closed
}

type statusEvent struct {
	code Status
	msg  string
}

// New returns a stopped Service.
func New(o Options) *Service {
	if o.HTTPAddr == "" {
		o.HTTPAddr = DefaultHTTPAddr
	}
	if o.ListenAddr == "" {
		o.ListenAddr = DefaultListenAddr
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{opts: o, log: log}
}

// StartedMessage is what Start returns for a socket path, as save-rust's
// startServer did.
func StartedMessage(socketPath string) string {
	return "Server started on Unix socket: " + socketPath
}

// Start opens the API's TCP port (Options.HTTPAddr) and the unix socket at
// socketPath (mode 0600; its directory must exist), serves
// httpapi.NotReady on both, and returns; the node, in
// baseDir/DataDirName, starts in the background, and once it has started
// both serve the whole API (httpapi.New: the Save routes on TCP, every
// route on the socket). Statuses: BackendInitializing,
// WebServerInitializing, WebServerRunning before Start returns, then
// BackendRunning, or Error if the node fails to start (the servers then
// close and the service is stopped again).
//
// If the service is already running (or starting), Start does nothing and
// returns the message of that start. Otherwise it returns
// StartedMessage(socketPath), or an error (also reported as Error) if
// the arguments are bad or a listener cannot be opened (the port is busy,
// another server answers on the socket).
func (s *Service) Start(baseDir, socketPath string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.run; r != nil {
		select {
		case <-r.done: // ended by a failure, already reported
			s.run = nil
		default:
			return r.msg, nil
		}
	}
	msg, r, err := s.start(baseDir, socketPath)
	if err != nil {
		s.report(Error, err.Error())
		return "", err
	}
	s.run = r
	return msg, nil
}

func (s *Service) start(baseDir, socketPath string) (string, *run, error) {
	switch {
	case baseDir == "" || !filepath.IsAbs(baseDir):
		return "", nil, fmt.Errorf("base directory %q is not an absolute path", baseDir)
	case socketPath == "" || !filepath.IsAbs(socketPath):
		return "", nil, fmt.Errorf("socket path %q is not an absolute path", socketPath)
	}
	if host, _, err := net.SplitHostPort(s.opts.HTTPAddr); err != nil || !httpapi.IsLoopbackHost(host) {
		return "", nil, fmt.Errorf("HTTP address %q: want a loopback HOST:PORT", s.opts.HTTPAddr)
	}
	dataDir := filepath.Join(baseDir, DataDirName)
	s.report(BackendInitializing, "starting the node in "+dataDir)
	s.report(WebServerInitializing, "opening http://"+s.opts.HTTPAddr+" and "+socketPath)
	tcp, err := net.Listen("tcp", s.opts.HTTPAddr)
	if err != nil {
		return "", nil, fmt.Errorf("HTTP port: %w", err)
	}
	unix, err := httpapi.ListenUnix(socketPath)
	if err != nil {
		tcp.Close()
		return "", nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	r := &run{msg: StartedMessage(socketPath), httpAddr: tcp.Addr().String(), cancel: cancel, done: make(chan struct{})}
	h := &swapHandler{}
	h.set(httpapi.NotReady(""))
	reqCtx, cancelReqs := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(tcp) }()
	go func() { served <- srv.Serve(unix) }()
	s.report(WebServerRunning, "serving http://"+r.httpAddr+" and "+socketPath+"; the node is starting")
	s.log.Info("save: HTTP API up", "http", r.httpAddr, "socket", socketPath, "data", dataDir)

	go func() {
		defer close(r.done)
		defer func() {
			// Stop the servers first, so no request reaches a closed node.
			cancelReqs()
			sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownGrace)
			if err := srv.Shutdown(sctx); err != nil {
				srv.Close()
			}
			cancel()
			os.Remove(socketPath) // the listener unlinks it; a file left by a failed close goes too
		}()
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("save: panic", "panic", v)
				s.report(Error, fmt.Sprintf("internal error: %v", v))
			}
		}()
		s.runNode(ctx, dataDir, h, served)
	}()
	return r.msg, r, nil
}

// runNode opens and starts the node, swaps the handler to the whole API,
// and waits for Stop (ctx) or a server that stopped by itself. It closes
// the node before it returns; the caller then closes the servers.
func (s *Service) runNode(ctx context.Context, dataDir string, h *swapHandler, served <-chan error) {
	b, err := core.New(core.Options{DataDir: dataDir, ListenAddr: s.opts.ListenAddr, Bootstrap: s.opts.Bootstrap, DeviceName: s.opts.DeviceName, Logger: s.log})
	if err != nil {
		s.report(Error, fmt.Sprintf("open node in %s: %v", dataDir, err))
		return
	}
	defer func() {
		h.set(httpapi.NotReady(""))
		if err := b.Close(); err != nil {
			s.log.Error("save: close node", "err", err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return // stopped while the node was opening
	}
	if err := b.Start(ctx); err != nil {
		if ctx.Err() == nil {
			s.report(Error, "start node: "+err.Error())
		}
		return
	}
	if ctx.Err() != nil {
		return
	}
	h.set(httpapi.New(b, httpapi.Options{
		Log:       s.log,
		MaxUpload: s.opts.MaxUpload,
		Registry:  httpapi.NewRegistry(b, func() int { return len(b.Peers()) }, append(b.Collectors(), httpapi.NewBackupCollector(b))...),
	}))
	s.report(BackendRunning, fmt.Sprintf("node %s running, QUIC on %s", b.NodeID(), b.Addr()))
	select {
	case <-ctx.Done():
	case err := <-served:
		s.report(Error, "HTTP server stopped: "+err.Error())
	}
}

// Stop closes the HTTP servers (requests in flight are cancelled), closes
// the node and removes the socket, then reports Idle. It returns once all
// of it is done (at most about ShutdownGrace plus the node's own shutdown
// timeout). Stopping a stopped service does nothing.
func (s *Service) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.run
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
	s.run = nil
	s.report(Idle, "stopped")
	s.log.Info("save: stopped")
}

// HTTPAddr returns the address the API listens on while the service runs
// (the port picked when Options.HTTPAddr has port 0), or "".
func (s *Service) HTTPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return ""
	}
	select {
	case <-s.run.done: // ended by a failure
		return ""
	default:
		return s.run.httpAddr
	}
}

// report queues a status for Options.Status and logs it. Statuses are
// delivered in order by one goroutine at a time, which exits when the
// queue is empty; a panic in the callback is logged and dropped.
func (s *Service) report(code Status, msg string) {
	if code == Error {
		s.log.Error("save: "+msg, "status", code)
	} else {
		s.log.Debug("save: "+msg, "status", code)
	}
	if s.opts.Status == nil {
		return
	}
	if msg == "" {
		msg = code.String()
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.queue = append(s.queue, statusEvent{code, msg})
	if !s.delivering {
		s.delivering = true
		go s.deliver()
	}
}

func (s *Service) deliver() {
	for {
		s.qmu.Lock()
		if len(s.queue) == 0 {
			s.delivering = false
			s.qmu.Unlock()
			return
		}
		ev := s.queue[0]
		s.queue = s.queue[1:]
		s.qmu.Unlock()
		s.call(ev)
	}
}

func (s *Service) call(ev statusEvent) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("save: status callback panicked", "status", ev.code, "panic", v)
		}
	}()
	s.opts.Status(ev.code, ev.msg)
}

// swapHandler serves whichever handler was set last: httpapi.NotReady while
// the node starts, the whole API once it runs.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}
