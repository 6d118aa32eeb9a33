package main

import (
	"context"
	"net/netip"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
)

// backend is the part of *core.Backend that the HTTP API serves. The daemon
// passes the real backend; tests pass a fake.
type backend interface {
	NodeID() key.NodeID
	Addr() netip.AddrPort
	Contact() string
	CreateGroup(ctx context.Context, name string) (core.GroupInfo, error)
	JoinGroup(ctx context.Context, inviteURI string) (core.GroupInfo, error)
	Groups() []core.GroupInfo
	ResolveGroup(s string) (core.GroupInfo, error)
	Invite(group key.RecordKey) (string, error)
	LeaveGroup(ctx context.Context, group key.RecordKey) error
	AddFiles(ctx context.Context, group key.RecordKey, paths []string) ([]core.FileInfo, error)
	ListFiles(ctx context.Context, group key.RecordKey) ([]core.FileInfo, error)
	GetFile(ctx context.Context, group, repo key.RecordKey, name, dst string, progress func(core.Progress)) (core.FileInfo, error)
	RemoveFile(ctx context.Context, group key.RecordKey, name string) error
}

var _ backend = (*core.Backend)(nil)
