// Package abi is the C ABI's logic in plain Go: a registry of integer
// handles to running nodes, the JSON request/response dispatcher that
// mirrors core.Backend, long operations with IDs, progress and
// cancellation, and the serialised event queue. Package ffi (package main)
// only converts C arguments and calls in here, so everything but the C
// conversions is testable with go test.
//
// The contract (ownership, threading, methods, events, error codes) is
// documented in docs/ffi.md and ffi/dweb.h.
package abi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
)

// MaxInput bounds every string argument (config, method, params): 1 MiB.
const MaxInput = 1 << 20

// Defaults of Config.
const (
	DefaultCallTimeout = 60 * time.Second
	startTimeout       = 30 * time.Second
)

// Config is the JSON object dweb_new takes. Unknown fields are an error.
type Config struct {
	// DataDir is the node's state directory (required, absolute).
	DataDir string `json:"data_dir"`
	// Listen is the UDP host:port for QUIC; "" reuses the last port on
	// 127.0.0.1 or picks one. Phones pass "0.0.0.0:0" to be reachable.
	Listen string `json:"listen"`
	// Bootstrap lists "nodeID@host:port" contacts.
	Bootstrap []string `json:"bootstrap"`
	// DeviceName names this node's repo in the groups it creates or joins
	// unless the call asks for another (core.Options.DeviceName): saved in
	// the node's store; "" keeps the saved one, else "dweb device".
	DeviceName string `json:"device_name"`
	// DeviceKey is the 32-byte key sealing the protected store, in the
	// URL-safe base64 text form of key.Secret (from the phone's keystore).
	// "": a device.key file in DataDir.
	DeviceKey string `json:"device_key"`
	// CallTimeoutMS bounds each synchronous dweb_call; 0 = 60000.
	CallTimeoutMS int64 `json:"call_timeout_ms"`
	// LogLevel "debug", "info", "warn" or "error" logs to stderr; "" = none.
	LogLevel string `json:"log_level"`
}

// node is one open handle.
type node struct {
	h       int64
	b       *core.Backend
	cfg     Config
	timeout time.Duration
	ctx     context.Context // cancelled (cause errClosed) by Close
	cancel  context.CancelCauseFunc
	ev      *events
	fwd     chan struct{} // closed when forwardEvents has ended

	mu       sync.Mutex
	closing  bool
	inflight sync.WaitGroup // calls and operations
	lastErr  string
	ops      map[int64]*op
	synced   map[key.RecordKey]groupSync // last sync.refresh / file.list per group
}

var (
	regMu     sync.Mutex
	reg       = map[int64]*node{}
	nextH     int64
	nextOp    atomic.Int64
	newErrMu  sync.Mutex
	newErrMsg string
)

func lookup(h int64) (*node, error) {
	regMu.Lock()
	defer regMu.Unlock()
	n, ok := reg[h]
	if !ok {
		return nil, Errorf(CodeUnknownHandle, "unknown handle %d", h)
	}
	return n, nil
}

// enter registers a call on the node; false once Close has begun.
func (n *node) enter() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closing {
		return false
	}
	n.inflight.Add(1)
	return true
}

func (n *node) setErr(err error) {
	n.mu.Lock()
	n.lastErr = err.Error()
	n.mu.Unlock()
}

// CheckString validates a string argument's bytes: not over MaxInput and
// UTF-8. what names it in the error.
func CheckString(what string, b []byte) error {
	if len(b) > MaxInput {
		return Errorf(CodeTooLarge, "%s is over %d bytes", what, MaxInput)
	}
	if !utf8.Valid(b) {
		return Errorf(CodeInvalidUTF8, "%s is not valid UTF-8", what)
	}
	return nil
}

// decodeStrict decodes one JSON object into v, rejecting unknown fields and
// trailing data.
func decodeStrict(what string, b []byte, v any) error {
	if !json.Valid(b) {
		return Errorf(CodeInvalidJSON, "%s is not valid JSON", what)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return Errorf(CodeBadParams, "%s: %v", what, err)
	}
	return nil
}

// New validates config (JSON bytes), opens and starts a node, and returns
// its handle (> 0). It blocks while the node bootstraps (at most 30 s).
// On error the returned code's message is also kept for LastError(0).
func New(config []byte) (h int64, err error) {
	defer func() {
		if err != nil {
			newErrMu.Lock()
			newErrMsg = err.Error()
			newErrMu.Unlock()
		}
	}()
	if err := CheckString("config", config); err != nil {
		return 0, err
	}
	var cfg Config
	if err := decodeStrict("config", config, &cfg); err != nil {
		return 0, err
	}
	opts, timeout, err := cfg.options()
	if err != nil {
		return 0, err
	}
	b, err := core.New(opts)
	if err != nil {
		return 0, fmt.Errorf("open node: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := b.Start(sctx); err != nil {
		b.Close()
		return 0, fmt.Errorf("start node: %w", err)
	}
	n := &node{
		b: b, cfg: cfg, timeout: timeout,
		ev:     newEvents(),
		ops:    map[int64]*op{},
		synced: map[key.RecordKey]groupSync{},
	}
	n.ctx, n.cancel = context.WithCancelCause(context.Background())
	n.fwd = make(chan struct{})
	go n.forwardEvents(b.Subscribe(core.SubscribeOptions{}))
	regMu.Lock()
	nextH++
	n.h = nextH
	reg[n.h] = n
	regMu.Unlock()
	return n.h, nil
}

func (c Config) options() (core.Options, time.Duration, error) {
	if c.DataDir == "" {
		return core.Options{}, 0, Errorf(CodeBadParams, "config: data_dir is required")
	}
	timeout := DefaultCallTimeout
	if c.CallTimeoutMS < 0 {
		return core.Options{}, 0, Errorf(CodeBadParams, "config: call_timeout_ms is negative")
	} else if c.CallTimeoutMS > 0 {
		timeout = time.Duration(c.CallTimeoutMS) * time.Millisecond
	}
	opts := core.Options{DataDir: c.DataDir, ListenAddr: c.Listen, Bootstrap: c.Bootstrap, DeviceName: c.DeviceName}
	if c.DeviceKey != "" {
		s, err := key.ParseSecret(c.DeviceKey)
		if err != nil {
			return core.Options{}, 0, Errorf(CodeBadParams, "config: device_key: %v", err)
		}
		opts.DeviceKey = &s
	}
	var lv slog.Level
	switch c.LogLevel {
	case "":
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	case "debug", "info", "warn", "error":
		lv.UnmarshalText([]byte(c.LogLevel))
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	default:
		return core.Options{}, 0, Errorf(CodeBadParams, "config: log_level %q is not debug, info, warn or error", c.LogLevel)
	}
	return opts, timeout, nil
}

// Close stops the node h: it cancels its operations (each ends with an
// op.failed event, code "cancelled"), waits for in-flight calls, stops the
// node, delivers the remaining events and stops the event goroutine. After
// Close returns the callback is never called again for h.
func Close(h int64) error {
	regMu.Lock()
	n, ok := reg[h]
	if ok {
		delete(reg, h)
	}
	regMu.Unlock()
	if !ok {
		return Errorf(CodeUnknownHandle, "unknown handle %d", h)
	}
	n.mu.Lock()
	n.closing = true
	n.mu.Unlock()
	n.cancel(errClosed)
	n.inflight.Wait()
	err := n.b.Close()
	<-n.fwd // the node's events are all queued
	n.ev.close()
	if err != nil {
		return fmt.Errorf("close node: %w", err)
	}
	return nil
}

// LastError returns the message of the last failed call on h, or for h ==
// 0 the last failure of New in this process.
func LastError(h int64) (string, error) {
	if h == 0 {
		newErrMu.Lock()
		defer newErrMu.Unlock()
		return newErrMsg, nil
	}
	n, err := lookup(h)
	if err != nil {
		return "", err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lastErr, nil
}

// SetEventSink sets (nil: removes) the function that receives h's events,
// one at a time, from a single goroutine. When SetEventSink returns, the
// previous sink is not running and will not be called again, unless
// fromSink is true: the caller is the sink itself, which then must not
// wait for itself.
func SetEventSink(h int64, sink func([]byte), fromSink bool) error {
	n, err := lookup(h)
	if err != nil {
		return err
	}
	n.ev.setSink(sink, fromSink)
	return nil
}

// Stats is what the test-only export reports.
type Stats struct {
	Handles    int `json:"handles"`
	Operations int `json:"operations"`
	Goroutines int `json:"goroutines"`
}

// GetStats counts open handles, running operations and goroutines.
func GetStats() Stats {
	regMu.Lock()
	s := Stats{Handles: len(reg)}
	nodes := make([]*node, 0, len(reg))
	for _, n := range reg {
		nodes = append(nodes, n)
	}
	regMu.Unlock()
	for _, n := range nodes {
		n.mu.Lock()
		s.Operations += len(n.ops)
		n.mu.Unlock()
	}
	s.Goroutines = runtime.NumGoroutine()
	return s
}

// Recovered turns a recovered panic value into an internal error.
func Recovered(v any) error {
	var st [4096]byte
	k := runtime.Stack(st[:], false)
	return Errorf(CodeInternal, "internal error: panic: %v\n%s", v, st[:k])
}
