// Package httpapi is dweb's local HTTP API: the routes of the Save app
// (`/status`, `/health`, `/api/...`, shaped as the app's own client parses
// them: docs/http-api.md) and dweb's own routes (`/dweb/v1/...`, used by
// the CLI: docs/cli.md), with the checks that keep the API local to its
// owner (guard.go). The daemon (`dweb serve`) and the JNI library the Save
// app loads (ffi/save) both serve it.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/prometheus/client_golang/prometheus"
)

// Version is reported by GET /status; the daemon sets it from its build.
var Version = "dev"

// DefaultMaxUpload is the default limit of one media upload (bytes), the
// --max-upload flag of `dweb serve`.
const DefaultMaxUpload = 4 << 30

// maxBodyBytes bounds every JSON request body (a file add with thousands of
// paths stays well below it).
const maxBodyBytes = 1 << 20

// progressInterval is the least time between two NDJSON progress lines of a
// file get; the first and the last line are always sent.
const progressInterval = 100 * time.Millisecond

// Options configure New. The zero value works.
type Options struct {
	// Log gets request errors (5xx at error level, others at debug).
	// Nil: discarded.
	Log *slog.Logger
	// MaxUpload bounds one media upload, in bytes (413 above it).
	// 0: DefaultMaxUpload.
	MaxUpload int64
	// Registry, if not nil, gets the API's request metrics and is served
	// at GET /metrics in the Prometheus text format.
	Registry *prometheus.Registry
	// Token, if not empty, lets a TCP client reach dweb's own routes and
	// /metrics with "Authorization: Bearer TOKEN" (guard.go). Empty: those
	// routes answer only on the unix socket.
	Token string
	// EventHeartbeat is the interval of the comment lines that keep GET
	// /dweb/v1/events alive while no event comes. 0:
	// DefaultEventHeartbeat.
	EventHeartbeat time.Duration
}

// server is the API over a backend.
type server struct {
	b         Backend
	log       *slog.Logger
	maxUpload int64
	heartbeat time.Duration // of the event stream
}

// New returns the HTTP API of docs/http-api.md and docs/cli.md over b,
// behind the guard of guard.go. Serve it on a unix socket (every route) and
// optionally on a loopback TCP address (the Save routes; dweb's own with
// Options.Token).
func New(b Backend, o Options) http.Handler {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.MaxUpload <= 0 {
		o.MaxUpload = DefaultMaxUpload
	}
	if o.EventHeartbeat <= 0 {
		o.EventHeartbeat = DefaultEventHeartbeat
	}
	s := &server{b: b, log: log, maxUpload: o.MaxUpload, heartbeat: o.EventHeartbeat}
	mux := http.NewServeMux()
	s.routeSave(mux)
	s.routeDweb(mux)
	s.routeBackup(mux)
	var m *httpMetrics
	if o.Registry != nil {
		mux.Handle("GET /metrics", metricsHandler(o.Registry))
		m = newHTTPMetrics()
		o.Registry.MustRegister(m.collectors()...)
	}
	return guard(o.Token, withMetrics(m, mux))
}

// NotReady returns the API of a node that is still starting, behind the
// same guard: GET /status and GET /health answer as usual (the process is
// up), every other route 503 with the Save error shape, as save-rust
// answers before its backend is initialized. The JNI library serves it
// until the node has started.
func NotReady(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", status)
	mux.HandleFunc("GET /health", health)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusServiceUnavailable, "Backend not ready. Initialization in progress.")
	})
	return guard(token, mux)
}

// withMetrics counts every request in m (nil: none) and answers requests
// no route matches in the API's error shape (404, or 405 with Allow).
func withMetrics(m *httpMetrics, mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if m != nil {
			start := time.Now()
			m.inFlight.Inc()
			sw := &statusWriter{ResponseWriter: w}
			w = sw
			defer func() {
				m.inFlight.Dec()
				route := pattern
				if route == "" {
					route = "none"
				}
				code := sw.code
				if code == 0 {
					code = http.StatusOK
				}
				m.observe(route, code, time.Since(start))
			}()
		}
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		code := rec.code
		if code == 0 || code < 400 {
			code = http.StatusNotFound
		}
		writeError(w, r, code, "no route "+r.Method+" "+r.URL.Path)
	})
}

// statusRecorder keeps only the status and headers a handler writes.
type statusRecorder struct {
	header http.Header
	code   int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(code int)        { r.code = code }

// badRequestError is bad input found by the HTTP layer itself (a body that
// does not decode, a missing field).
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

// unsupportedTypeError is a JSON route's body sent with another media type
// (415).
type unsupportedTypeError struct{ got string }

func (e *unsupportedTypeError) Error() string {
	return fmt.Sprintf("request body: Content-Type %q, want application/json", e.got)
}

// StatusOf maps an error to the HTTP status of dweb's own routes: 400 bad
// input, 403 a write to another member's repo, 404 unknown group, repo,
// file or version of a file, 409 ambiguous name, 413 body too large, 415 a JSON route's body of
// another type, 507 storage quota reached, 503 node not started or request
// cancelled, 500 otherwise.
func StatusOf(err error) int {
	var mb *http.MaxBytesError
	var br *badRequestError
	var bi *core.BadInputError
	var ut *unsupportedTypeError
	switch {
	case errors.As(err, &mb), errors.Is(err, core.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &ut):
		return http.StatusUnsupportedMediaType
	case errors.As(err, &br), errors.As(err, &bi):
		return http.StatusBadRequest
	case isReadOnly(err):
		return http.StatusForbidden
	case errors.Is(err, core.ErrUnknownGroup), errors.Is(err, core.ErrUnknownRepo), errors.Is(err, core.ErrFileNotFound),
		errors.Is(err, core.ErrVersionNotFound):
		return http.StatusNotFound
	case errors.Is(err, core.ErrAmbiguous):
		return http.StatusConflict
	case errors.Is(err, core.ErrQuota):
		return http.StatusInsufficientStorage
	case errors.Is(err, core.ErrNotStarted), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// saveStatusOf maps an error to the status save-rust answers on the Save
// routes: 503 while the node is not ready (or the request was cancelled by
// a shutdown), 400 and 415 for a body that does not decode (actix's JSON
// extractor), 413 for a body over the limit, 500 for everything else.
func saveStatusOf(err error) int {
	switch c := StatusOf(err); c {
	case http.StatusServiceUnavailable, http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusRequestEntityTooLarge:
		return c
	}
	return http.StatusInternalServerError
}

// isSaveRoute reports whether a path is one of the Save app's (error body a
// JSON string) rather than dweb's own (error body an ErrorBody).
func isSaveRoute(path string) bool {
	return !strings.HasPrefix(path, "/dweb/") && path != "/metrics"
}

// handle adapts a handler that returns its failure: a non-nil error is
// answered by fail, so no handler writes an error response itself.
func (s *server) handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.fail(w, r, err)
		}
	}
}

// fail answers err: on the Save routes as save-rust does (a JSON string,
// saveStatusOf), on dweb's own routes as an ErrorBody (StatusOf).
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := StatusOf(err)
	if isSaveRoute(r.URL.Path) {
		code = saveStatusOf(err)
	}
	if code >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.log.Debug("request rejected", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	writeError(w, r, code, err.Error())
}

// writeError answers msg with code in the shape of r's route: a bare JSON
// string on the Save routes (the app decodes the body as a string and shows
// it), {"status":"error","error":msg} on dweb's own.
func writeError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if isSaveRoute(r.URL.Path) {
		writeJSON(w, code, msg)
		return
	}
	writeJSON(w, code, ErrorBody{"error", msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorBody{"error", "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// reply answers 200 with v as JSON, or, if err is not nil, returns err for
// handle to answer instead.
func reply(w http.ResponseWriter, v any, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// orEmpty returns s, or an empty slice if s is nil, so that a list in a
// response body encodes as [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// decodeOptions say how strict decode is.
type decodeOptions struct {
	// lenient ignores unknown fields, as save-rust's serde structs do (the
	// Save routes); dweb's own routes refuse them.
	lenient bool
}

// decode reads one JSON object of at most maxBodyBytes into v. The body
// must be declared application/json (a browser's cross-site "simple"
// request cannot be: guard.go); trailing data is refused.
func decode(w http.ResponseWriter, r *http.Request, v any, o decodeOptions) error {
	if ct := r.Header.Get("Content-Type"); ct != "" || r.ContentLength != 0 {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &unsupportedTypeError{ct}
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if !o.lenient {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return fmt.Errorf("request body: %w", err)
		}
		if errors.Is(err, io.EOF) {
			return &badRequestError{"request body: empty, want a JSON object"}
		}
		return &badRequestError{"request body: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &badRequestError{"request body: data after the JSON object"}
	}
	return nil
}

func status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "running", "version": Version})
}

func health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
}
