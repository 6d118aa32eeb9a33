package httpapi

import (
	"context"
	"io"
	"net/netip"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/uri"
)

// Backend is the part of *core.Backend that the HTTP API serves. The daemon
// and the JNI library pass the real backend.
type Backend interface {
	NodeID() key.NodeID
	Addr() netip.AddrPort
	Contact() string
	DeviceName() string
	MemberContact() (uri.Contact, error)
	// Publications lists this node's own writes waiting for the DHT
	// (core/publish.go): GET /dweb/v1/node.
	Publications() []core.Publication
	// Traffic: GET /dweb/v1/node.
	Traffic() core.TrafficStats

	// Groups.
	CreateGroupWith(ctx context.Context, name string, o core.GroupOptions) (core.GroupInfo, error)
	JoinGroupWith(ctx context.Context, inviteURI string, o core.GroupOptions) (core.GroupInfo, error)
	Groups() []core.GroupInfo
	ResolveGroup(s string) (core.GroupInfo, error)
	Invite(group key.RecordKey) (string, error)
	LeaveGroup(ctx context.Context, group key.RecordKey) error

	// Members of membership-checked groups (core/members.go).
	Members(ctx context.Context, group key.RecordKey) (core.MembershipInfo, error)
	InviteMember(ctx context.Context, group key.RecordKey, contact, role, name string) (string, error)
	ReplaceMember(ctx context.Context, group key.RecordKey, who, contact string) (string, error)
	RemoveMember(ctx context.Context, group key.RecordKey, who string) (core.MembershipInfo, error)
	SetMemberRole(ctx context.Context, group key.RecordKey, who, role string) (core.MembershipInfo, error)
	PingMembers(ctx context.Context, group key.RecordKey) ([]core.PingResult, error)
	InviteBearer(ctx context.Context, group key.RecordKey, role string, uses int, lifetime time.Duration) (string, error)
	RevokeInvite(ctx context.Context, group key.RecordKey, inviteURI string) (core.MembershipInfo, error)

	// Files of the node's own repo, and of the whole group.
	AddFilesWith(ctx context.Context, group key.RecordKey, paths []string, opts core.AddOptions) ([]core.FileInfo, error)
	AddReader(ctx context.Context, g key.RecordKey, name string, r io.Reader, maxBytes int64) (core.FileInfo, blobsync.Hash, error)
	ListFiles(ctx context.Context, group key.RecordKey) ([]core.FileInfo, error)
	List(ctx context.Context, group key.RecordKey) (core.Listing, error)
	GetFileWith(ctx context.Context, group, repo key.RecordKey, name, dst string, opts core.GetOptions) (core.FileInfo, error)
	OpenFile(ctx context.Context, g, repo key.RecordKey, name string) (io.ReadSeekCloser, core.FileInfo, error)
	RemoveFile(ctx context.Context, group key.RecordKey, name string) error
	// History (core/history.go).
	FileHistory(ctx context.Context, group, repo key.RecordKey, name string) (core.FileHistory, error)
	RestoreFile(ctx context.Context, group key.RecordKey, name, ref string) (core.FileInfo, error)
	CollectGarbage(ctx context.Context) (core.GCResult, error)

	// Repos.
	Repos(ctx context.Context, g key.RecordKey) ([]core.RepoInfo, error)
	Repo(ctx context.Context, g, repo key.RecordKey) (core.RepoInfo, error)
	SetRepoName(ctx context.Context, g key.RecordKey, name string) (core.RepoInfo, error)
	RepoFiles(ctx context.Context, g, repo key.RecordKey) ([]core.FileInfo, error)
	CollectionHash(ctx context.Context, g, repo key.RecordKey) (blobsync.Hash, bool, error)
	Refresh(ctx context.Context, g key.RecordKey) ([]core.RepoRefresh, error)
	RefreshWithProgress(ctx context.Context, g key.RecordKey, progress func(core.RefreshProgress)) ([]core.RepoRefresh, error)

	// Events (core/events.go): GET /dweb/v1/events.
	Subscribe(o core.SubscribeOptions) *core.Subscription

	// Backup servers (docs/backup.md).
	BackupStatus() core.BackupStatus
	AdminURI() (uri string, firstStart bool, err error)
	Drain(ctx context.Context, opts core.DrainOptions) (core.DrainReport, error)
}

var _ Backend = (*core.Backend)(nil)
