package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/prometheus/client_golang/prometheus"
)

// version is reported by GET /status; set with -ldflags "-X main.version=...".
var version = "dev"

// maxBodyBytes bounds every JSON request body (a file add with thousands of
// paths stays well below it).
const maxBodyBytes = 1 << 20

// progressInterval is the least time between two NDJSON progress lines of a
// file get; the first and the last line are always sent.
const progressInterval = 100 * time.Millisecond

// apiError is the error body of every route: {"status":"error","error":msg},
// as the Save app's API (see /work/shared/SAVE-API.md).
type apiError struct {
	Status string `json:"status"`
	Error  string `json:"error"`
}

// nodeInfo is the body of GET /dweb/v1/node and of `dweb node id --json`.
type nodeInfo struct {
	NodeID  string `json:"node_id"`
	Addr    string `json:"addr"`
	Contact string `json:"contact"`
}

// inviteInfo is the body of GET /dweb/v1/groups/{group}/invite.
type inviteInfo struct {
	Key  key.RecordKey `json:"key"`
	Name string        `json:"name"`
	URI  string        `json:"uri"`
}

type groupsBody struct {
	Groups []core.GroupInfo `json:"groups"`
}

type filesBody struct {
	Files []core.FileInfo `json:"files"`
}

type nameRequest struct {
	Name string `json:"name"`
}

type groupURLRequest struct {
	GroupURL string `json:"group_url"`
}

type addFilesRequest struct {
	Paths []string `json:"paths"`
}

// getFileRequest is the body of POST /dweb/v1/groups/{group}/files/get.
// Repo is a record key text or "" (any repo, own first); Out is an absolute
// path on the daemon's machine.
type getFileRequest struct {
	Name string `json:"name"`
	Repo string `json:"repo"`
	Out  string `json:"out"`
}

// getFileLine is one NDJSON line of a file get: progress ({"done","total"}),
// then exactly one final line, {"file":...} or {"error":...,"code":status}.
type getFileLine struct {
	Done  *int64         `json:"done,omitempty"`
	Total *int64         `json:"total,omitempty"`
	File  *core.FileInfo `json:"file,omitempty"`
	Error string         `json:"error,omitempty"`
	Code  int            `json:"code,omitempty"`
}

// syncLine is one NDJSON line of a group sync: progress
// ({"progress":{"files","files_done","done","total"}}), then exactly one
// final line, {"repos":[...]} (the refresh body's repos) or
// {"error":...,"code":status}.
type syncLine struct {
	Progress *core.RefreshProgress `json:"progress,omitempty"`
	Repos    *[]core.RepoRefresh   `json:"repos,omitempty"`
	Error    string                `json:"error,omitempty"`
	Code     int                   `json:"code,omitempty"`
}

// badRequestError is bad input found by the HTTP layer itself (a body that
// does not decode, a missing field).
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

// server is the daemon's local HTTP API over a backend.
type server struct {
	b         apiBackend
	log       *slog.Logger
	maxUpload int64
}

// apiOptions configure newAPI. The zero value works.
type apiOptions struct {
	// Log gets request errors (5xx at error level, others at debug).
	// Nil: discarded.
	Log *slog.Logger
	// MaxUpload bounds one media upload, in bytes (413 above it).
	// 0: DefaultMaxUpload.
	MaxUpload int64
	// Registry, if not nil, gets the API's request metrics and is served
	// at GET /metrics in the Prometheus text format.
	Registry *prometheus.Registry
}

// newHandler returns the HTTP API of docs/cli.md and docs/http-api.md over
// b, without metrics. log may be nil.
func newHandler(b apiBackend, log *slog.Logger) http.Handler {
	return newAPI(b, apiOptions{Log: log})
}

// newAPI returns the HTTP API of docs/cli.md and docs/http-api.md over b.
func newAPI(b apiBackend, o apiOptions) http.Handler {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.MaxUpload <= 0 {
		o.MaxUpload = DefaultMaxUpload
	}
	s := &server{b: b, log: log, maxUpload: o.MaxUpload}
	mux := http.NewServeMux()
	// Paths of the Save app's API.
	mux.HandleFunc("GET /status", s.handle(s.status))
	mux.HandleFunc("GET /health", s.handle(s.health))
	mux.HandleFunc("GET /health/ready", s.handle(s.ready))
	mux.HandleFunc("GET /api/groups", s.handle(s.listGroups))
	mux.HandleFunc("POST /api/groups", s.handle(s.createGroup))
	mux.HandleFunc("POST /api/groups/join_from_url", s.handle(s.joinGroup))
	mux.HandleFunc("POST /api/memberships", s.handle(s.joinMembership))
	mux.HandleFunc("GET /api/groups/{group}", s.handle(s.getGroup))
	mux.HandleFunc("DELETE /api/groups/{group}", s.handle(s.leaveGroup))
	s.routeSave(mux)
	// dweb's own routes.
	mux.HandleFunc("GET /dweb/v1/node", s.handle(s.node))
	mux.HandleFunc("GET /dweb/v1/groups/{group}/invite", s.handle(s.invite))
	mux.HandleFunc("POST /dweb/v1/groups/{group}/files", s.handle(s.addFiles))
	mux.HandleFunc("GET /dweb/v1/groups/{group}/files", s.handle(s.listFiles))
	mux.HandleFunc("POST /dweb/v1/groups/{group}/files/get", s.handle(s.getFile))
	mux.HandleFunc("POST /dweb/v1/groups/{group}/sync", s.handle(s.syncGroup))
	mux.HandleFunc("DELETE /dweb/v1/groups/{group}/files/{name}", s.handle(s.removeFile))
	var m *httpMetrics
	if o.Registry != nil {
		mux.Handle("GET /metrics", metricsHandler(o.Registry))
		m = newHTTPMetrics()
		o.Registry.MustRegister(m.collectors()...)
	}
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
		// No route: let the mux decide between 404 and 405 (with Allow),
		// then answer in the API's error shape.
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		code := rec.code
		if code == 0 || code < 400 {
			code = http.StatusNotFound
		}
		writeJSON(w, code, apiError{"error", "no route " + r.Method + " " + r.URL.Path})
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

// statusOf maps an error to its HTTP status: 400 bad input, 403 a write
// to another member's repo, 404 unknown group, repo or file, 409 ambiguous
// name, 413 body too large, 507 storage quota reached, 503 request
// cancelled, 500 otherwise.
func statusOf(err error) int {
	var mb *http.MaxBytesError
	var br *badRequestError
	var bi *core.BadInputError
	switch {
	case errors.As(err, &mb), errors.Is(err, core.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &br), errors.As(err, &bi):
		return http.StatusBadRequest
	case isReadOnly(err):
		return http.StatusForbidden
	case errors.Is(err, core.ErrUnknownGroup), errors.Is(err, core.ErrUnknownRepo), errors.Is(err, core.ErrFileNotFound):
		return http.StatusNotFound
	case errors.Is(err, core.ErrAmbiguous):
		return http.StatusConflict
	case errors.Is(err, core.ErrQuota):
		return http.StatusInsufficientStorage
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// handle adapts a handler that returns its failure: a non-nil error is
// answered by fail (status from statusOf, the error shape of
// docs/http-api.md), so no handler writes an error response itself.
func (s *server) handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.fail(w, r, err)
		}
	}
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	if code >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.log.Debug("request rejected", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	writeJSON(w, code, apiError{"error", err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(apiError{"error", "encode response: " + err.Error()})
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

// decode reads one JSON object of at most maxBodyBytes into v, rejecting
// unknown fields and trailing data.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
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

func (s *server) status(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "running", "version": version})
	return nil
}

func (s *server) health(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
	return nil
}

// ready answers 200 once the node has started (its QUIC endpoint is
// listening), 503 before. The daemon serves the API only after the start,
// so 503 is seen only by embedders that serve it earlier.
func (s *server) ready(w http.ResponseWriter, r *http.Request) error {
	if !s.b.Addr().IsValid() {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"error", "node not started"})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
	return nil
}

func (s *server) node(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, nodeInfo{
		NodeID:  s.b.NodeID().String(),
		Addr:    s.b.Addr().String(),
		Contact: s.b.Contact(),
	})
	return nil
}

func (s *server) listGroups(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, groupsBody{orEmpty(s.b.Groups())})
	return nil
}

// decodeName reads a nameRequest body; a missing name is bad input.
func decodeName(w http.ResponseWriter, r *http.Request) (string, error) {
	var req nameRequest
	if err := decode(w, r, &req); err != nil {
		return "", err
	}
	if req.Name == "" {
		return "", &badRequestError{"name: missing"}
	}
	return req.Name, nil
}

func (s *server) createGroup(w http.ResponseWriter, r *http.Request) error {
	name, err := decodeName(w, r)
	if err != nil {
		return err
	}
	g, err := s.b.CreateGroup(r.Context(), name)
	return reply(w, g, err)
}

func (s *server) join(w http.ResponseWriter, r *http.Request) (core.GroupInfo, error) {
	var req groupURLRequest
	if err := decode(w, r, &req); err != nil {
		return core.GroupInfo{}, err
	}
	if req.GroupURL == "" {
		return core.GroupInfo{}, &badRequestError{"group_url: missing"}
	}
	return s.b.JoinGroup(r.Context(), req.GroupURL)
}

func (s *server) joinGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.join(w, r)
	return reply(w, g, err)
}

func (s *server) joinMembership(w http.ResponseWriter, r *http.Request) error {
	g, err := s.join(w, r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status_message": "joined group " + g.Name + " (" + g.ID.String() + ")"})
	return nil
}

// group resolves the {group} path value (record key text or unique name).
func (s *server) group(r *http.Request) (core.GroupInfo, error) {
	return s.b.ResolveGroup(r.PathValue("group"))
}

func (s *server) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	return reply(w, g, err)
}

func (s *server) leaveGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err == nil {
		err = s.b.LeaveGroup(r.Context(), g.ID)
	}
	return reply(w, map[string]string{"status": "success"}, err)
}

func (s *server) invite(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	u, err := s.b.Invite(g.ID)
	return reply(w, inviteInfo{Key: g.ID, Name: g.Name, URI: u}, err)
}

func (s *server) addFiles(w http.ResponseWriter, r *http.Request) error {
	var req addFilesRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if len(req.Paths) == 0 {
		return &badRequestError{"paths: empty, want at least one absolute path"}
	}
	for _, p := range req.Paths {
		if !filepath.IsAbs(p) {
			return &badRequestError{fmt.Sprintf("paths: %q is not absolute", p)}
		}
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}
	fs, err := s.b.AddFiles(r.Context(), g.ID, req.Paths)
	return reply(w, filesBody{orEmpty(fs)}, err)
}

func (s *server) listFiles(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	fs, err := s.b.ListFiles(r.Context(), g.ID)
	return reply(w, filesBody{orEmpty(fs)}, err)
}

func (s *server) removeFile(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err == nil {
		err = s.b.RemoveFile(r.Context(), g.ID, r.PathValue("name"))
	}
	return reply(w, map[string]string{"status": "success"}, err)
}

// getFile validates the request, then answers 200 with an NDJSON stream:
// progress lines, then one final line. Errors found before the stream starts
// get the usual error body and status.
func (s *server) getFile(w http.ResponseWriter, r *http.Request) error {
	var req getFileRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	var repo key.RecordKey
	switch {
	case req.Name == "":
		return &badRequestError{"name: missing"}
	case req.Out == "" || !filepath.IsAbs(req.Out):
		return &badRequestError{fmt.Sprintf("out: %q is not an absolute path", req.Out)}
	case req.Repo != "":
		var err error
		if repo, err = key.ParseRecordKey(req.Repo); err != nil {
			return &badRequestError{"repo: " + err.Error()}
		}
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}

	out := startNDJSON(w)
	progress := func(p core.Progress) {
		out.progress(getFileLine{Done: new(p.Done), Total: new(p.Total)}, p.Done >= p.Total)
	}
	fi, err := s.b.GetFile(r.Context(), g.ID, repo, req.Name, req.Out, progress)
	if err != nil {
		code := statusOf(err)
		if code >= 500 {
			s.log.Error("file get failed", "group", g.ID, "name", req.Name, "err", err)
		}
		out.finish(getFileLine{Error: err.Error(), Code: code})
		return nil
	}
	out.finish(getFileLine{File: &fi})
	return nil
}

// ndjsonStream is a 200 answer of NDJSON lines: progress lines, at most
// one per progressInterval, then one final line. Safe for concurrent use;
// nothing is written after the final line.
type ndjsonStream struct {
	w  http.ResponseWriter
	rc *http.ResponseController

	mu       sync.Mutex
	buf      bytes.Buffer
	last     time.Time
	finished bool
}

// startNDJSON sends the status and headers at once, so the client learns
// that the request was accepted before the first line.
func startNDJSON(w http.ResponseWriter) *ndjsonStream {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	n := &ndjsonStream{w: w, rc: http.NewResponseController(w)}
	n.rc.Flush()
	return n
}

// progress writes v unless a line went out less than progressInterval ago
// (force: write it anyway, e.g. the last step).
func (n *ndjsonStream) progress(v any, force bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.finished || (!force && time.Since(n.last) < progressInterval) {
		return
	}
	n.last = time.Now()
	n.lineLocked(v)
}

// finish writes the final line v.
func (n *ndjsonStream) finish(v any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.finished = true
	n.lineLocked(v)
}

func (n *ndjsonStream) lineLocked(v any) {
	n.buf.Reset()
	json.NewEncoder(&n.buf).Encode(v)
	n.w.Write(n.buf.Bytes())
	n.rc.Flush()
}

// syncGroup runs a refresh of the group and streams its progress as NDJSON
// (syncLine), at most every progressInterval, then its result.
func (s *server) syncGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	out := startNDJSON(w)
	progress := func(p core.RefreshProgress) { out.progress(syncLine{Progress: &p}, false) }
	repos, err := s.b.RefreshWithProgress(r.Context(), g.ID, progress)
	if err != nil {
		code := statusOf(err)
		if code >= 500 {
			s.log.Error("group sync failed", "group", g.ID, "err", err)
		}
		out.finish(syncLine{Error: err.Error(), Code: code})
		return nil
	}
	out.finish(syncLine{Repos: &repos})
	return nil
}
