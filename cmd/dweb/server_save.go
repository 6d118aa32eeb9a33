package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
)

// DefaultMaxUpload is the default limit of one media upload (bytes), the
// --max-upload flag of `dweb serve`.
const DefaultMaxUpload = 4 << 30

// repoBackend is the part of *core.Backend behind the Save app's repo,
// media and refresh routes (docs/http-api.md).
type repoBackend interface {
	Repos(ctx context.Context, g key.RecordKey) ([]core.RepoInfo, error)
	Repo(ctx context.Context, g, repo key.RecordKey) (core.RepoInfo, error)
	OwnRepo(ctx context.Context, g key.RecordKey) (core.RepoInfo, error)
	RepoFiles(ctx context.Context, g, repo key.RecordKey) ([]core.FileInfo, error)
	CollectionHash(ctx context.Context, g, repo key.RecordKey) (blobsync.Hash, bool, error)
	AddReader(ctx context.Context, g key.RecordKey, name string, r io.Reader, maxBytes int64) (core.FileInfo, blobsync.Hash, error)
	OpenFile(ctx context.Context, g, repo key.RecordKey, name string) (io.ReadSeekCloser, core.FileInfo, error)
	Refresh(ctx context.Context, g key.RecordKey) ([]core.RepoRefresh, error)
	RefreshWithProgress(ctx context.Context, g key.RecordKey, progress func(core.RefreshProgress)) ([]core.RepoRefresh, error)
}

// apiBackend is everything the HTTP API serves.
type apiBackend interface {
	backend
	repoBackend
}

var _ apiBackend = (*core.Backend)(nil)

type reposBody struct {
	Repos []core.RepoInfo `json:"repos"`
}

type refreshBody struct {
	Status string             `json:"status"`
	Repos  []core.RepoRefresh `json:"repos"`
}

// uploadBody is the answer to a media upload. Hashes are hex BLAKE3.
type uploadBody struct {
	Name                  string        `json:"name"`
	UpdatedCollectionHash blobsync.Hash `json:"updated_collection_hash"`
	FileHash              blobsync.Hash `json:"file_hash"`
	Size                  int64         `json:"size"`
}

type deleteMediaBody struct {
	CollectionHash string `json:"collection_hash"`
}

func (s *server) routeSave(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/groups/{group}/refresh", s.handle(s.refresh))
	mux.HandleFunc("GET /api/groups/{group}/repos", s.handle(s.listRepos))
	mux.HandleFunc("POST /api/groups/{group}/repos", s.handle(s.createRepo))
	mux.HandleFunc("GET /api/groups/{group}/repos/{repo}", s.handle(s.getRepo))
	mux.HandleFunc("GET /api/groups/{group}/repos/{repo}/media", s.handle(s.listMedia))
	mux.HandleFunc("POST /api/groups/{group}/repos/{repo}/media/{name}", s.handle(s.uploadMedia))
	mux.HandleFunc("GET /api/groups/{group}/repos/{repo}/media/{name}", s.handle(s.getMedia))
	mux.HandleFunc("DELETE /api/groups/{group}/repos/{repo}/media/{name}", s.handle(s.deleteMedia))
}

// groupRepo resolves {group} and parses {repo} (a record key text: 400 if
// it does not parse).
func (s *server) groupRepo(r *http.Request) (core.GroupInfo, key.RecordKey, error) {
	g, err := s.group(r)
	if err != nil {
		return g, key.RecordKey{}, err
	}
	rk, err := key.ParseRecordKey(r.PathValue("repo"))
	if err != nil {
		return g, rk, &badRequestError{"repo id " + strconv.Quote(r.PathValue("repo")) + ": " + err.Error()}
	}
	return g, rk, nil
}

func (s *server) refresh(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	rs, err := s.b.Refresh(r.Context(), g.ID)
	return reply(w, refreshBody{Status: "success", Repos: rs}, err)
}

func (s *server) listRepos(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	rs, err := s.b.Repos(r.Context(), g.ID)
	return reply(w, reposBody{rs}, err)
}

// createRepo answers with the node's own repo in the group: dweb keeps one
// repo per node per group, created when the node joins (docs/http-api.md).
func (s *server) createRepo(w http.ResponseWriter, r *http.Request) error {
	if _, err := decodeName(w, r); err != nil {
		return err
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}
	ri, err := s.b.OwnRepo(r.Context(), g.ID)
	return reply(w, ri, err)
}

func (s *server) getRepo(w http.ResponseWriter, r *http.Request) error {
	g, rk, err := s.groupRepo(r)
	if err != nil {
		return err
	}
	ri, err := s.b.Repo(r.Context(), g.ID, rk)
	return reply(w, ri, err)
}

func (s *server) listMedia(w http.ResponseWriter, r *http.Request) error {
	g, rk, err := s.groupRepo(r)
	if err != nil {
		return err
	}
	fs, err := s.b.RepoFiles(r.Context(), g.ID, rk)
	return reply(w, filesBody{orEmpty(fs)}, err)
}

// ownRepo checks that rk is this node's repo in g: the only one it writes.
func ownRepo(g core.GroupInfo, rk key.RecordKey) error {
	if rk != g.Repo {
		return &readOnlyError{"repo " + rk.String() + " is not this node's repo in group " + g.Name + " (" + g.Repo.String() + "): " + core.ErrReadOnly.Error()}
	}
	return nil
}

// readOnlyError is a write to another member's repo (403).
type readOnlyError struct{ msg string }

func (e *readOnlyError) Error() string { return e.msg }

// uploadMedia streams the body into the store as file {name} of the node's
// own repo: never more than a copy buffer in memory. A declared
// Content-Length over the limit is refused before any byte is read; a body
// that grows past it is cut off (413 either way).
func (s *server) uploadMedia(w http.ResponseWriter, r *http.Request) error {
	g, rk, err := s.groupRepo(r)
	if err == nil {
		err = ownRepo(g, rk)
	}
	if err != nil {
		return err
	}
	if r.ContentLength > s.maxUpload {
		return &http.MaxBytesError{Limit: s.maxUpload}
	}
	body := http.MaxBytesReader(w, r.Body, s.maxUpload)
	fi, ch, err := s.b.AddReader(r.Context(), g.ID, r.PathValue("name"), body, s.maxUpload)
	return reply(w, uploadBody{Name: fi.Name, UpdatedCollectionHash: ch, FileHash: fi.Hash, Size: fi.Size}, err)
}

// getMedia streams the file from the local store (fetching it from the
// group's members first if needed) with http.ServeContent: Range and
// conditional requests work, and the ETag is the file's BLAKE3 hash.
func (s *server) getMedia(w http.ResponseWriter, r *http.Request) error {
	g, rk, err := s.groupRepo(r)
	if err != nil {
		return err
	}
	rc, fi, err := s.b.OpenFile(r.Context(), g.ID, rk, r.PathValue("name"))
	if err != nil {
		return err
	}
	defer rc.Close()
	ct := fi.MediaType
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("ETag", `"`+fi.Hash.String()+`"`)
	w.Header().Set("X-Dweb-Hash", fi.Hash.String())
	http.ServeContent(w, r, fi.Name, fi.CreatedAt, rc)
	return nil
}

func (s *server) deleteMedia(w http.ResponseWriter, r *http.Request) error {
	g, rk, err := s.groupRepo(r)
	if err == nil {
		err = ownRepo(g, rk)
	}
	if err == nil {
		err = s.b.RemoveFile(r.Context(), g.ID, r.PathValue("name"))
	}
	var h blobsync.Hash
	var ok bool
	if err == nil {
		h, ok, err = s.b.CollectionHash(r.Context(), g.ID, rk)
	}
	if err != nil {
		return err
	}
	body := deleteMediaBody{}
	if ok {
		body.CollectionHash = h.String()
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// isReadOnly reports a write to another member's repo.
func isReadOnly(err error) bool {
	var ro *readOnlyError
	return errors.As(err, &ro) || errors.Is(err, core.ErrReadOnly)
}
