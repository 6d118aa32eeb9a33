package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/dwebkit/dweb/core"
)

// dweb's own routes (docs/cli.md), used by the CLI over the unix socket.
// Over TCP they need the token (guard.go): two of them read or write
// arbitrary paths on the daemon's machine.
func (s *server) routeDweb(mux *http.ServeMux) {
	mux.HandleFunc("GET /dweb/v1/node", s.handle(s.node))
	mux.HandleFunc("GET /dweb/v1/contact", s.handle(s.contact))
	mux.HandleFunc("POST /dweb/v1/node/gc", s.handle(s.collectGarbage))
	mux.HandleFunc("GET /dweb/v1/groups/{group}/invite", s.handle(s.invite))
	mux.HandleFunc("POST /dweb/v1/groups/{group}/files", s.handle(s.addFiles))
	mux.HandleFunc("GET /dweb/v1/groups/{group}/files", s.handle(s.listFiles))
	mux.HandleFunc("POST /dweb/v1/groups/{group}/files/get", s.handle(s.getFile))
	mux.HandleFunc("POST /dweb/v1/groups/{group}/sync", s.handle(s.syncGroup))
	mux.HandleFunc("DELETE /dweb/v1/groups/{group}/files/{name}", s.handle(s.removeFile))
	mux.HandleFunc("GET /dweb/v1/groups/{group}/files/{name}/history", s.handle(s.fileHistory))
	mux.HandleFunc("POST /dweb/v1/groups/{group}/files/{name}/restore", s.handle(s.restoreFile))
	mux.HandleFunc("GET "+EventsPath, s.handle(s.events))
	mux.HandleFunc("GET /dweb/v1/groups/{group}/ping", s.handle(s.ping))
	mux.HandleFunc("GET /dweb/v1/groups/{group}/members", s.handle(s.members))
	mux.HandleFunc("POST /dweb/v1/groups/{group}/invites", s.handle(s.inviteBearer))
	mux.HandleFunc("POST /dweb/v1/groups/{group}/invites/revoke", s.handle(s.revokeInvite))
	mux.HandleFunc("POST /dweb/v1/groups/{group}/members", s.handle(s.inviteMember))
	mux.HandleFunc("DELETE /dweb/v1/groups/{group}/members/{member}", s.handle(s.removeMember))
	mux.HandleFunc("POST /dweb/v1/groups/{group}/members/{member}/role", s.handle(s.setMemberRole))
}

// collectGarbage removes the blobs no group of the node needs any more
// (core.CollectGarbage) and answers what it did.
func (s *server) collectGarbage(w http.ResponseWriter, r *http.Request) error {
	res, err := s.b.CollectGarbage(r.Context())
	return reply(w, res, err)
}

func (s *server) ping(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	ps, err := s.b.PingMembers(r.Context(), g.ID)
	return reply(w, PingBody{orEmpty(ps)}, err)
}

func (s *server) inviteBearer(w http.ResponseWriter, r *http.Request) error {
	req, err := readBearerInvite(w, r)
	if err != nil {
		return err
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}
	u, err := s.b.InviteBearer(r.Context(), g.ID, req.Role, req.Uses, time.Duration(req.ExpiresS)*time.Second)
	return reply(w, InviteInfo{Key: g.ID, Name: g.Name, URI: u}, err)
}

func (s *server) revokeInvite(w http.ResponseWriter, r *http.Request) error {
	u, err := readRevoke(w, r)
	if err != nil {
		return err
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}
	m, err := s.b.RevokeInvite(r.Context(), g.ID, u)
	return reply(w, m, err)
}

func (s *server) members(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	m, err := s.b.Members(r.Context(), g.ID)
	return reply(w, m, err)
}

func (s *server) inviteMember(w http.ResponseWriter, r *http.Request) error {
	req, err := readInviteMember(w, r)
	if err != nil {
		return err
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}
	var u string
	if req.Replace != "" {
		u, err = s.b.ReplaceMember(r.Context(), g.ID, req.Replace, req.Contact)
	} else {
		u, err = s.b.InviteMember(r.Context(), g.ID, req.Contact, req.Role, req.Name)
	}
	if err != nil {
		return err
	}
	m, err := s.b.Members(r.Context(), g.ID)
	return reply(w, MemberInviteInfo{Key: g.ID, Name: g.Name, URI: u, Membership: m}, err)
}

func (s *server) removeMember(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	m, err := s.b.RemoveMember(r.Context(), g.ID, r.PathValue("member"))
	return reply(w, m, err)
}

func (s *server) setMemberRole(w http.ResponseWriter, r *http.Request) error {
	role, err := readRole(w, r)
	if err != nil {
		return err
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}
	m, err := s.b.SetMemberRole(r.Context(), g.ID, r.PathValue("member"), role)
	return reply(w, m, err)
}

func (s *server) node(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, NodeInfo{
		NodeID:       s.b.NodeID().String(),
		Addr:         s.b.Addr().String(),
		Contact:      s.b.Contact(),
		DeviceName:   s.b.DeviceName(),
		Publications: orEmpty(s.b.Publications()),
		Traffic:      s.b.Traffic(),
	})
	return nil
}

func (s *server) contact(w http.ResponseWriter, r *http.Request) error {
	c, err := s.b.MemberContact()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ContactInfo{Contact: c.String()})
	return nil
}

func (s *server) invite(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	u, err := s.b.Invite(g.ID)
	return reply(w, InviteInfo{Key: g.ID, Name: g.Name, URI: u}, err)
}

func (s *server) addFiles(w http.ResponseWriter, r *http.Request) error {
	req, err := readAddFiles(w, r)
	if err != nil {
		return err
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}
	fs, err := s.b.AddFilesWith(r.Context(), g.ID, req.Paths, core.AddOptions{NoStoreCopy: req.NoStoreCopy})
	return reply(w, FileInfosBody{orEmpty(fs)}, err)
}

func (s *server) listFiles(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	l, err := s.b.List(r.Context(), g.ID)
	return reply(w, FileListBody{orEmpty(l.Files), orEmpty(l.Repos), orEmpty(l.Warnings)}, err)
}

func (s *server) removeFile(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err == nil {
		err = s.b.RemoveFile(r.Context(), g.ID, r.PathValue("name"))
	}
	return reply(w, map[string]string{"status": "success"}, err)
}

// fileHistory answers a file's history (core.FileHistory), ?repo= naming
// the repo (default: this node's own first, then the one other that has
// the name).
func (s *server) fileHistory(w http.ResponseWriter, r *http.Request) error {
	repo, err := readRepoQuery(r)
	if err != nil {
		return err
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}
	h, err := s.b.FileHistory(r.Context(), g.ID, repo, r.PathValue("name"))
	return reply(w, h, err)
}

// restoreFile makes a version of a file of this node's repo current again
// (core.RestoreFile) and answers the file's new info.
func (s *server) restoreFile(w http.ResponseWriter, r *http.Request) error {
	req, err := readRestoreFile(w, r)
	if err != nil {
		return err
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}
	fi, err := s.b.RestoreFile(r.Context(), g.ID, r.PathValue("name"), req.Version)
	return reply(w, fi, err)
}

// getFile validates the request, then answers 200 with an NDJSON stream:
// progress lines, then one final line. Errors found before the stream starts
// get the usual error body and status.
func (s *server) getFile(w http.ResponseWriter, r *http.Request) error {
	req, repo, err := readGetFile(w, r)
	if err != nil {
		return err
	}
	g, err := s.group(r)
	if err != nil {
		return err
	}

	out := startNDJSON(w)
	progress := func(p core.Progress) {
		out.progress(GetFileLine{Done: new(p.Done), Total: new(p.Total)}, p.Done >= p.Total)
	}
	fi, err := s.b.GetFileWith(r.Context(), g.ID, repo, req.Name, req.Out,
		core.GetOptions{Version: req.Version, Progress: progress, NoStoreCopy: req.NoStoreCopy})
	if err != nil {
		code := StatusOf(err)
		if code >= 500 {
			s.log.Error("file get failed", "group", g.ID, "name", req.Name, "err", err)
		}
		out.finish(GetFileLine{Error: err.Error(), Code: code})
		return nil
	}
	out.finish(GetFileLine{File: &fi})
	return nil
}

// syncGroup runs a refresh of the group and streams its progress as NDJSON
// (SyncLine), at most every progressInterval, then its result.
func (s *server) syncGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.group(r)
	if err != nil {
		return err
	}
	out := startNDJSON(w)
	progress := func(p core.RefreshProgress) { out.progress(SyncLine{Progress: &p}, false) }
	repos, err := s.b.RefreshWithProgress(r.Context(), g.ID, progress)
	if err != nil {
		code := StatusOf(err)
		if code >= 500 {
			s.log.Error("group sync failed", "group", g.ID, "err", err)
		}
		out.finish(SyncLine{Error: err.Error(), Code: code})
		return nil
	}
	out.finish(SyncLine{Repos: &repos})
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
