package httpapi

import (
	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
)

// The request and answer bodies of the API, shared with its clients (the
// CLI). Field names are the wire's; docs/http-api.md and docs/cli.md give
// every route's.

// ErrorBody is the error answer of dweb's own routes (the Save routes
// answer a bare JSON string, as save-rust does).
type ErrorBody struct {
	Status string `json:"status"` // always "error"
	Error  string `json:"error"`
}

// NameRequest is the body of POST /api/groups/{group}/repos.
type NameRequest struct {
	Name string `json:"name"`
}

// CreateGroupRequest is the body of POST /api/groups: the group's name,
// and optionally the name of this node's repo in it (dweb's; the app sends
// only name, and its repo is named after the device until POST .../repos).
type CreateGroupRequest struct {
	Name     string `json:"name"`
	RepoName string `json:"repo_name,omitempty"`
	// Checked (dweb's) makes a membership-checked group: members, roles,
	// removal (core.GroupOptions.Checked, docs/trust.md).
	Checked bool `json:"checked,omitempty"`
}

// MembershipRequest is the body of POST /api/memberships: the scanned join
// code, an invite URI with the app's "&name=" appended.
type MembershipRequest struct {
	URI string `json:"uri"`
}

// JoinURLRequest is the body of POST /api/groups/join_from_url. URL is
// save-rust's field; GroupURL the name dweb's first API used, still read.
// RepoName, dweb's, names this node's repo in the group (empty: the
// device name; core.GroupOptions).
type JoinURLRequest struct {
	URL      string `json:"url,omitempty"`
	GroupURL string `json:"group_url,omitempty"`
	RepoName string `json:"repo_name,omitempty"`
}

// Group is a group as the Save routes answer it: core.GroupInfo and its
// invite URI (the app builds its share QR from uri).
type Group struct {
	core.GroupInfo
	URI string `json:"uri"`
}

// GroupsBody is the answer of GET /api/groups.
type GroupsBody struct {
	Groups []Group `json:"groups"`
}

// MembershipBody is the answer of POST /api/memberships.
type MembershipBody struct {
	Group Group `json:"group"`
}

// ReposBody is the answer of GET /api/groups/{group}/repos.
type ReposBody struct {
	Repos []core.RepoInfo `json:"repos"`
}

// File is a file as the Save routes answer it: core.FileInfo, with
// is_downloaded (its bytes are in this node's store) and mimeType, the
// app's names for local and media_type.
type File struct {
	core.FileInfo
	IsDownloaded bool   `json:"is_downloaded"`
	MimeType     string `json:"mimeType"`
}

// FilesBody is the answer of GET .../media.
type FilesBody struct {
	Files []File `json:"files"`
}

// RepoRefresh is one repo of a refresh answer: core.RepoRefresh with
// repo_id (the app's name for key) and error (always absent: a repo that
// cannot be read is left out and logged).
type RepoRefresh struct {
	core.RepoRefresh
	RepoID key.RecordKey `json:"repo_id"`
	Error  string        `json:"error,omitempty"`
}

// RefreshBody is the answer of POST /api/groups/{group}/refresh.
type RefreshBody struct {
	Status string        `json:"status"` // "success"
	Repos  []RepoRefresh `json:"repos"`
}

// UploadBody is the answer to a media upload. Hashes are hex BLAKE3.
type UploadBody struct {
	Name                  string        `json:"name"`
	UpdatedCollectionHash blobsync.Hash `json:"updated_collection_hash"`
	FileHash              blobsync.Hash `json:"file_hash"`
	Size                  int64         `json:"size"`
}

// NodeInfo is the answer of GET /dweb/v1/node. DeviceName is the name the
// node's repo gets in a group it creates or joins without asking for
// another (core.Options.DeviceName).
type NodeInfo struct {
	NodeID     string `json:"node_id"`
	Addr       string `json:"addr"`
	Contact    string `json:"contact"`
	DeviceName string `json:"device_name"`
	// Publications are this node's own writes (a repo's collection or
	// name) that wait to be published to the DHT, with their state;
	// empty when every write went out.
	Publications []core.Publication `json:"publications"`
	// Traffic: blob bytes moved through tunnels since the node started.
	Traffic core.TrafficStats `json:"traffic"`
}

// PingBody answers GET /dweb/v1/groups/{group}/ping.
type PingBody struct {
	Members []core.PingResult `json:"members"`
}

// ContactInfo is the answer of GET /dweb/v1/contact: this device's
// contact code (uri.Contact), the public half of its member key.
type ContactInfo struct {
	Contact string `json:"contact"`
}

// InviteInfo is the answer of GET /dweb/v1/groups/{group}/invite.
type InviteInfo struct {
	Key  key.RecordKey `json:"key"`
	Name string        `json:"name"`
	URI  string        `json:"uri"`
}

// InviteMemberRequest is the body of POST /dweb/v1/groups/{group}/members:
// the contact code of the person to add, their role ("" is member) and
// display name.
type InviteMemberRequest struct {
	Contact string `json:"contact"`
	Role    string `json:"role,omitempty"`
	Name    string `json:"name,omitempty"`
	// Replace names a member (contact code, key or unique name) whose
	// entry, role, slot and files the contact's device takes over: a
	// member's new device. Role and name are then the member's.
	Replace string `json:"replace,omitempty"`
}

// BearerInviteRequest is the body of POST /dweb/v1/groups/{group}/invites:
// the role ("" is member), the uses (0 is 1; at most 16) and the lifetime
// in seconds (0 is 7 days; at most 90 days) of a bearer invite.
type BearerInviteRequest struct {
	Role     string `json:"role,omitempty"`
	Uses     int    `json:"uses,omitempty"`
	ExpiresS int64  `json:"expires_s,omitempty"`
}

// RevokeRequest is the body of POST /dweb/v1/groups/{group}/invites/revoke:
// the bearer invite to revoke.
type RevokeRequest struct {
	URI string `json:"uri"`
}

// RoleRequest is the body of POST /dweb/v1/groups/{group}/members/{member}/role.
type RoleRequest struct {
	Role string `json:"role"`
}

// MemberInviteInfo answers POST /dweb/v1/groups/{group}/members: the
// invite sealed to the new member, and the list it was made at.
type MemberInviteInfo struct {
	Key        key.RecordKey       `json:"key"`
	Name       string              `json:"name"`
	URI        string              `json:"uri"`
	Membership core.MembershipInfo `json:"membership"`
}

// FileInfosBody is the answer of dweb's file routes: core.FileInfo as is.
type FileInfosBody struct {
	Files []core.FileInfo `json:"files"`
}

// FileListBody is the answer of GET /dweb/v1/groups/{group}/files: the
// group's files, each repo's state (when this node last read it afresh,
// whether it could now) and warnings, one line each, naming every repo
// listed from what this node last verified instead of afresh (core.List).
type FileListBody struct {
	Files    []core.FileInfo  `json:"files"`
	Repos    []core.RepoState `json:"repos"`
	Warnings []string         `json:"warnings"`
}

// AddFilesRequest is the body of POST /dweb/v1/groups/{group}/files:
// absolute paths on the daemon's machine.
type AddFilesRequest struct {
	Paths []string `json:"paths"`
	// NoStoreCopy: the store keeps each file by reference instead of a
	// copy, serving it from its path until it changes
	// (core.AddOptions.NoStoreCopy); each file's "store" in the answer
	// says how it was kept ("reference", "copy", "chunks"). Absent
	// (older clients): false, a copy.
	NoStoreCopy bool `json:"no_store_copy,omitempty"`
}

// GetFileRequest is the body of POST /dweb/v1/groups/{group}/files/get.
// Repo is a record key text or "" (any repo, own first); Out is an absolute
// path on the daemon's machine.
type GetFileRequest struct {
	Name string `json:"name"`
	Repo string `json:"repo"`
	Out  string `json:"out"`
	// Version, when set, gets that version of the file instead of the
	// current one: an index into its history (0: current) or 8 to 64 hex
	// digits of the version's hash (core.GetFileVersion).
	Version string `json:"version,omitempty"`
	// NoStoreCopy: the store does not keep its own copy of the file; it
	// moves its file to Out where it can and keeps the file as a
	// reference to Out (core.GetOptions.NoStoreCopy). The final line's
	// file.export says how Out was written ("move", or a copy's method).
	NoStoreCopy bool `json:"no_store_copy,omitempty"`
}

// RestoreFileRequest is the body of POST
// /dweb/v1/groups/{group}/files/{name}/restore: the version to make
// current again, as GetFileRequest.Version.
type RestoreFileRequest struct {
	Version string `json:"version"`
}

// GetFileLine is one NDJSON line of a file get: progress ({"done","total"}),
// then exactly one final line, {"file":...} or {"error":...,"code":status}.
type GetFileLine struct {
	Done  *int64         `json:"done,omitempty"`
	Total *int64         `json:"total,omitempty"`
	File  *core.FileInfo `json:"file,omitempty"`
	Error string         `json:"error,omitempty"`
	Code  int            `json:"code,omitempty"`
}

// SyncLine is one NDJSON line of a group sync: progress
// ({"progress":{"files","files_done","done","total"}}), then exactly one
// final line, {"repos":[...]} (core.RepoRefresh) or
// {"error":...,"code":status}.
type SyncLine struct {
	Progress *core.RefreshProgress `json:"progress,omitempty"`
	Repos    *[]core.RepoRefresh   `json:"repos,omitempty"`
	Error    string                `json:"error,omitempty"`
	Code     int                   `json:"code,omitempty"`
}

// AdminURIBody is the answer of GET /dweb/v1/backup/admin.
type AdminURIBody struct {
	URI string `json:"uri"`
}

// DrainRequest is the body of POST /dweb/v1/drain.
type DrainRequest struct {
	Group string   `json:"group,omitempty"`  // key or unique name; empty: every group
	To    []string `json:"to,omitempty"`     // admin URIs of other backup servers (at most 16)
	Leave bool     `json:"leave,omitempty"`  // leave each group whose drain was complete
	WaitS float64  `json:"wait_s,omitempty"` // seconds to wait for confirmations; 0: core.DefaultDrainWait
}
