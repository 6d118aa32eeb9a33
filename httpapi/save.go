package httpapi

import (
	"errors"
	"net/http"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
)

// The Save app's routes (docs/http-api.md). Their shapes are the ones the
// app's client parses (Save-app-android, services/snowbird/data/
// SnowbirdDTOs.kt and RetrofitClient.kt); dweb adds fields the app
// ignores. Their errors are a bare JSON string, with save-rust's codes.
func (s *server) routeSave(mux *http.ServeMux) {
	mux.HandleFunc("GET /status", status)
	mux.HandleFunc("GET /health", health)
	mux.HandleFunc("GET /health/ready", s.handle(s.ready))
	mux.HandleFunc("GET /api/groups", s.handle(s.listGroups))
	mux.HandleFunc("POST /api/groups", s.handle(s.createGroup))
	mux.HandleFunc("POST /api/groups/join_from_url", s.handle(s.joinFromURL))
	mux.HandleFunc("POST /api/memberships", s.handle(s.joinMembership))
	mux.HandleFunc("GET /api/groups/{group}", s.handle(s.getGroup))
	mux.HandleFunc("DELETE /api/groups/{group}", s.handle(s.leaveGroup))
	mux.HandleFunc("POST /api/groups/{group}/refresh", s.handle(s.refresh))
	mux.HandleFunc("GET /api/groups/{group}/repos", s.handle(s.listRepos))
	mux.HandleFunc("POST /api/groups/{group}/repos", s.handle(s.createRepo))
	mux.HandleFunc("GET /api/groups/{group}/repos/{repo}", s.handle(s.getRepo))
	mux.HandleFunc("GET /api/groups/{group}/repos/{repo}/media", s.handle(s.listMedia))
	mux.HandleFunc("POST /api/groups/{group}/repos/{repo}/media/{name}", s.handle(s.uploadMedia))
	mux.HandleFunc("GET /api/groups/{group}/repos/{repo}/media/{name}", s.handle(s.getMedia))
	mux.HandleFunc("DELETE /api/groups/{group}/repos/{repo}/media/{name}", s.handle(s.deleteMedia))
}

// ready answers 200 once the node has started (its QUIC endpoint is
// listening), 503 before.
func (s *server) ready(w http.ResponseWriter, r *http.Request) error {
	if !s.b.Addr().IsValid() {
		return core.ErrNotStarted
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
	return nil
}

// withURI adds g's invite URI.
func (s *server) withURI(g core.GroupInfo) (Group, error) {
	u, err := s.b.Invite(g.ID)
	if errors.Is(err, core.ErrInviteForOne) {
		return Group{GroupInfo: g, URI: ""}, nil // invites are made per person
	}
	return Group{GroupInfo: g, URI: u}, err
}

func (s *server) listGroups(w http.ResponseWriter, r *http.Request) error {
	gs := s.b.Groups()
	out := make([]Group, 0, len(gs))
	for _, g := range gs {
		sg, err := s.withURI(g)
		if err != nil {
			// Left since the list was read.
			s.log.Debug("list group", "group", g.ID, "err", err)
			continue
		}
		out = append(out, sg)
	}
	writeJSON(w, http.StatusOK, GroupsBody{out})
	return nil
}

func (s *server) createGroup(w http.ResponseWriter, r *http.Request) error {
	req, err := readCreateGroup(w, r)
	if err != nil {
		return err
	}
	g, err := s.b.CreateGroupWith(r.Context(), req.Name, core.GroupOptions{RepoName: req.RepoName, Checked: req.Checked})
	if err != nil {
		return err
	}
	sg, err := s.withURI(g)
	return reply(w, sg, err)
}

// join joins the group of an invite URI (or the app's join code: the
// invite with "&name=" appended), with this node's repo named repoName
// ("": the device name), and answers it with its URI.
func (s *server) join(r *http.Request, inviteURI, repoName string) (Group, error) {
	g, err := s.b.JoinGroupWith(r.Context(), inviteURI, core.GroupOptions{RepoName: repoName})
	if err != nil {
		return Group{}, err
	}
	return s.withURI(g)
}

func (s *server) joinFromURL(w http.ResponseWriter, r *http.Request) error {
	req, err := readJoinURL(w, r)
	if err != nil {
		return err
	}
	g, err := s.join(r, req.URL, req.RepoName)
	return reply(w, g, err)
}

func (s *server) joinMembership(w http.ResponseWriter, r *http.Request) error {
	u, err := readMembership(w, r)
	if err != nil {
		return err
	}
	g, err := s.join(r, u, "")
	return reply(w, MembershipBody{g}, err)
}

// group resolves the {group} path value (record key text or unique name).
func (s *server) group(r *http.Request) (core.GroupInfo, error) {
	return s.b.ResolveGroup(r.PathValue("group"))
}

func (s *server) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	sg, err := s.withURI(g)
	return reply(w, sg, err)
}

// leaveGroup answers {} as save-rust does.
func (s *server) leaveGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err == nil {
		err = s.b.LeaveGroup(r.Context(), g.ID)
	}
	return reply(w, struct{}{}, err)
}

// groupRepo resolves {group} and parses {repo} (a record key text: 400 if
// it does not parse).
func (s *server) groupRepo(r *http.Request) (core.GroupInfo, key.RecordKey, error) {
	g, err := s.group(r)
	if err != nil {
		return g, key.RecordKey{}, err
	}
	rk, err := parseRepoID(r.PathValue("repo"))
	return g, rk, err
}

func (s *server) refresh(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	rs, err := s.b.Refresh(r.Context(), g.ID)
	if err != nil {
		return err
	}
	out := make([]RepoRefresh, len(rs))
	for i, rr := range rs {
		out[i] = RepoRefresh{RepoRefresh: rr, RepoID: rr.Key}
	}
	writeJSON(w, http.StatusOK, RefreshBody{Status: "success", Repos: out})
	return nil
}

func (s *server) listRepos(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	rs, err := s.b.Repos(r.Context(), g.ID)
	return reply(w, ReposBody{orEmpty(rs)}, err)
}

// createRepo names this node's repo in the group with the name asked for
// and answers it: dweb keeps one repo per node per group, made when the
// node creates or joins the group, as save-rust does since joining makes
// one (its create_repo is idempotent the same way).
func (s *server) createRepo(w http.ResponseWriter, r *http.Request) error {
	name, err := readName(w, r)
	if err != nil {
		return err
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}
	ri, err := s.b.SetRepoName(r.Context(), g.ID, name)
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
	if err != nil {
		return err
	}
	out := make([]File, len(fs))
	for i, f := range fs {
		out[i] = File{FileInfo: f, IsDownloaded: f.Local, MimeType: f.MediaType}
	}
	writeJSON(w, http.StatusOK, FilesBody{out})
	return nil
}

// ownRepo checks that rk is this node's repo in g: the only one it writes.
func ownRepo(g core.GroupInfo, rk key.RecordKey) error {
	if rk != g.Repo {
		return &readOnlyError{"repo " + rk.String() + " is not this node's repo in group " + g.Name + " (" + g.Repo.String() + "): " + core.ErrReadOnly.Error()}
	}
	return nil
}

// readOnlyError is a write to another member's repo (403 on dweb's routes).
type readOnlyError struct{ msg string }

func (e *readOnlyError) Error() string { return e.msg }

// isReadOnly reports a write to another member's repo.
func isReadOnly(err error) bool {
	var ro *readOnlyError
	return errors.As(err, &ro) || errors.Is(err, core.ErrReadOnly)
}

// uploadMedia streams the body into the store as file {name} of the node's
// own repo, hashed as it arrives (core.Backend.AddReader): a few 1 MiB
// blocks in memory, the bytes written once, nothing kept if it breaks off. A declared
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
	return reply(w, UploadBody{Name: fi.Name, UpdatedCollectionHash: ch, FileHash: fi.Hash, Size: fi.Size}, err)
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

// deleteMedia removes the file from this node's own repo and answers the
// repo's new collection hash as a JSON string ("" if it has none), as
// save-rust does.
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
	hash := ""
	if ok {
		hash = h.String()
	}
	writeJSON(w, http.StatusOK, hash)
	return nil
}
