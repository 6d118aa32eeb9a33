package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
)

// The readers of the request bodies and path values, one per route that
// takes them: each decodes (decode: declared application/json, at most
// maxBodyBytes, one object) and checks what its handler needs before the
// backend is called. Errors are *badRequestError (400), or from decode
// *unsupportedTypeError (415) and *http.MaxBytesError (413); the drain
// route's bounds are a *core.BadInputError (400).

// readName reads a NameRequest body (POST .../repos); a
// missing name is bad input.
func readName(w http.ResponseWriter, r *http.Request) (string, error) {
	var req NameRequest
	if err := decode(w, r, &req, decodeOptions{lenient: true}); err != nil {
		return "", err
	}
	if req.Name == "" {
		return "", &badRequestError{"name: missing"}
	}
	return req.Name, nil
}

// readCreateGroup reads a CreateGroupRequest body (POST /api/groups); a
// missing name is bad input.
func readCreateGroup(w http.ResponseWriter, r *http.Request) (CreateGroupRequest, error) {
	var req CreateGroupRequest
	if err := decode(w, r, &req, decodeOptions{lenient: true}); err != nil {
		return req, err
	}
	if req.Name == "" {
		return req, &badRequestError{"name: missing"}
	}
	return req, nil
}

// readJoinURL reads a JoinURLRequest body (POST
// /api/groups/join_from_url): its url, else its group_url, in URL (and
// GroupURL cleared), and its repo_name.
func readJoinURL(w http.ResponseWriter, r *http.Request) (JoinURLRequest, error) {
	var req JoinURLRequest
	if err := decode(w, r, &req, decodeOptions{lenient: true}); err != nil {
		return req, err
	}
	if req.URL == "" {
		req.URL = req.GroupURL
	}
	req.GroupURL = ""
	if req.URL == "" {
		return req, &badRequestError{"url: missing"}
	}
	return req, nil
}

// readMembership reads a MembershipRequest body (POST /api/memberships):
// its uri, which must be there.
func readMembership(w http.ResponseWriter, r *http.Request) (string, error) {
	var req MembershipRequest
	if err := decode(w, r, &req, decodeOptions{lenient: true}); err != nil {
		return "", err
	}
	if req.URI == "" {
		return "", &badRequestError{"uri: missing"}
	}
	return req.URI, nil
}

// readAddFiles reads an AddFilesRequest body (POST
// /dweb/v1/groups/{group}/files): at least one path, every one absolute.
func readAddFiles(w http.ResponseWriter, r *http.Request) (AddFilesRequest, error) {
	var req AddFilesRequest
	if err := decode(w, r, &req, decodeOptions{}); err != nil {
		return req, err
	}
	if len(req.Paths) == 0 {
		return req, &badRequestError{"paths: empty, want at least one absolute path"}
	}
	for _, p := range req.Paths {
		if !filepath.IsAbs(p) {
			return req, &badRequestError{fmt.Sprintf("paths: %q is not absolute", p)}
		}
	}
	return req, nil
}

// readGetFile reads a GetFileRequest body (POST
// /dweb/v1/groups/{group}/files/get): a name, an absolute out path, and a
// repo that is empty (zero key: any repo) or a record key.
func readGetFile(w http.ResponseWriter, r *http.Request) (GetFileRequest, key.RecordKey, error) {
	var req GetFileRequest
	var repo key.RecordKey
	if err := decode(w, r, &req, decodeOptions{}); err != nil {
		return req, repo, err
	}
	switch {
	case req.Name == "":
		return req, repo, &badRequestError{"name: missing"}
	case req.Out == "" || !filepath.IsAbs(req.Out):
		return req, repo, &badRequestError{fmt.Sprintf("out: %q is not an absolute path", req.Out)}
	case len(req.Version) > maxVersionRef:
		return req, repo, &badRequestError{fmt.Sprintf("version: longer than %d bytes", maxVersionRef)}
	case req.Repo != "":
		var err error
		if repo, err = key.ParseRecordKey(req.Repo); err != nil {
			return req, repo, &badRequestError{"repo: " + err.Error()}
		}
	}
	return req, repo, nil
}

// maxVersionRef bounds a version reference in a request (bytes): a hash
// in hex is 64; core checks the form (datarepo.ParseVersionRef).
const maxVersionRef = 64

// readRestoreFile reads a RestoreFileRequest body (POST
// /dweb/v1/groups/{group}/files/{name}/restore): a version of at most
// maxVersionRef bytes.
func readRestoreFile(w http.ResponseWriter, r *http.Request) (RestoreFileRequest, error) {
	var req RestoreFileRequest
	if err := decode(w, r, &req, decodeOptions{}); err != nil {
		return req, err
	}
	switch {
	case req.Version == "":
		return req, &badRequestError{"version: missing"}
	case len(req.Version) > maxVersionRef:
		return req, &badRequestError{fmt.Sprintf("version: longer than %d bytes", maxVersionRef)}
	}
	return req, nil
}

// readRepoQuery reads the optional ?repo= query parameter: empty (zero
// key: any repo) or a record key.
func readRepoQuery(r *http.Request) (key.RecordKey, error) {
	s := r.URL.Query().Get("repo")
	if s == "" {
		return key.RecordKey{}, nil
	}
	rk, err := key.ParseRecordKey(s)
	if err != nil {
		return rk, &badRequestError{"repo: " + err.Error()}
	}
	return rk, nil
}

// readDrain reads a DrainRequest body (POST /dweb/v1/drain); an empty body
// (Content-Length 0) is the zero request. At most maxDrainServers servers,
// wait_s from 0 to 86400.
func readDrain(w http.ResponseWriter, r *http.Request) (DrainRequest, error) {
	var req DrainRequest
	if err := decode(w, r, &req, decodeOptions{}); err != nil {
		var br *badRequestError
		if !errors.As(err, &br) || r.ContentLength != 0 {
			return req, err
		}
		// An empty body drains every group with the defaults.
	}
	if len(req.To) > maxDrainServers || req.WaitS < 0 || req.WaitS > 24*3600 {
		return req, &core.BadInputError{Err: fmt.Errorf("drain request: at most %d servers in \"to\", wait_s from 0 to 86400", maxDrainServers)}
	}
	return req, nil
}

// parseRepoID parses a {repo} path value: a record key's text form.
func parseRepoID(s string) (key.RecordKey, error) {
	rk, err := key.ParseRecordKey(s)
	if err != nil {
		return rk, &badRequestError{"repo id " + strconv.Quote(s) + ": " + err.Error()}
	}
	return rk, nil
}

// readInviteMember reads an InviteMemberRequest body (POST
// /dweb/v1/groups/{group}/members): the contact must be there.
func readInviteMember(w http.ResponseWriter, r *http.Request) (InviteMemberRequest, error) {
	var req InviteMemberRequest
	if err := decode(w, r, &req, decodeOptions{}); err != nil {
		return req, err
	}
	if req.Contact == "" {
		return req, &badRequestError{"contact: missing"}
	}
	if req.Replace != "" && (req.Role != "" || req.Name != "") {
		return req, &badRequestError{"replace: the new device keeps the member's role and name (no role or name with it)"}
	}
	return req, nil
}

// readRole reads a RoleRequest body: the role must be there.
func readRole(w http.ResponseWriter, r *http.Request) (string, error) {
	var req RoleRequest
	if err := decode(w, r, &req, decodeOptions{}); err != nil {
		return "", err
	}
	if req.Role == "" {
		return "", &badRequestError{"role: missing"}
	}
	return req.Role, nil
}

// readBearerInvite reads a BearerInviteRequest body; uses and expires_s
// must not be negative (core checks their upper bounds).
func readBearerInvite(w http.ResponseWriter, r *http.Request) (BearerInviteRequest, error) {
	var req BearerInviteRequest
	if err := decode(w, r, &req, decodeOptions{}); err != nil {
		return req, err
	}
	if req.Uses < 0 || req.ExpiresS < 0 || req.ExpiresS > 1<<32 {
		return req, &badRequestError{"uses and expires_s: must not be negative (expires_s: seconds, at most 90 days)"}
	}
	return req, nil
}

// readRevoke reads a RevokeRequest body: the uri must be there.
func readRevoke(w http.ResponseWriter, r *http.Request) (string, error) {
	var req RevokeRequest
	if err := decode(w, r, &req, decodeOptions{}); err != nil {
		return "", err
	}
	if req.URI == "" {
		return "", &badRequestError{"uri: missing"}
	}
	return req.URI, nil
}
