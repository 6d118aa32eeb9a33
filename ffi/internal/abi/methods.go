package abi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
)

// method is one entry of the dweb_call table, in two halves: parse
// decodes and checks the params JSON (already valid JSON) without the
// node, so every refusal of the params comes before the backend is
// touched; run does the work with what parse returned, under a context
// that ends with the call's timeout, or for long methods with the node.
type method struct {
	parse func(params []byte) (any, error)
	run   func(ctx context.Context, n *node, q any) (any, error)
	long  bool // returns {"op": id} at once; the work runs as an operation
}

// def makes a method of a parse and a run of the same params type.
func def[P any](parse func([]byte) (P, error), run func(context.Context, *node, P) (any, error)) method {
	return method{
		parse: func(p []byte) (any, error) { return parse(p) },
		run:   func(ctx context.Context, n *node, q any) (any, error) { return run(ctx, n, q.(P)) },
	}
}

// longDef is def for a long method.
func longDef[P any](parse func([]byte) (P, error), run func(context.Context, *node, P) (any, error)) method {
	m := def(parse, run)
	m.long = true
	return m
}

var methods map[string]method

// Method names, in docs/ffi.md order. Kept in a function rather than a
// literal because op.start refers back to the table.
func init() {
	methods = map[string]method{
		"node.id":              def(parseNone, nodeID),
		"node.peers":           def(parseNone, nodePeers),
		"node.contact":         def(parseNone, nodeContact),
		"node.pause":           def(parseNone, nodePause),
		"node.resume":          def(parseNone, nodeResume),
		"node.network_changed": def(parseNone, nodeNetworkChanged),
		"node.gc":              def(parseNone, nodeGC),
		"group.create":         def(parseCreate, groupCreate),
		"group.join":           def(parseJoin, groupJoin),
		"group.list":           def(parseNone, groupList),
		"group.get":            def(parseGroup, groupGet),
		"group.invite":         def(parseGroup, groupInvite),
		"group.leave":          def(parseGroup, groupLeave),
		"group.members":        def(parseGroup, groupMembers),
		"group.invite_member":  def(parseInviteMember, groupInviteMember),
		"group.remove_member":  def(parseMember, groupRemoveMember),
		"group.set_role":       def(parseSetRole, groupSetRole),
		"group.ping":           def(parseGroup, groupPing),
		"group.invite_bearer":  def(parseBearer, groupInviteBearer),
		"group.revoke_invite":  def(parseRevoke, groupRevokeInvite),
		"repo.list":            def(parseGroup, repoList),
		"repo.rename":          def(parseRename, repoRename),
		"file.add":             def(parseFileAdd, fileAdd),
		"file.list":            def(parseGroup, fileList),
		"file.read":            def(parseTargetPath, fileRead),
		"file.delete":          def(parseFileDelete, fileDelete),
		"file.history":         def(parseTargetNoPath, fileHistory),
		"file.restore":         def(parseFileRestore, fileRestore),
		"sync.refresh":         longDef(parseGroup, syncRefresh),
		"sync.download":        longDef(parseTargetPath, syncDownload),
		"sync.fetch":           longDef(parseGroup, syncFetch),
		"sync.status":          def(parseStatus, syncStatus),
		"op.start":             longDef(parseOpStart, opStart),
		"op.cancel":            def(parseOpCancel, opCancel),
	}
}

// parseCall finds method in the table and parses params for it:
// everything dweb_call checks of a call before it touches the node.
// Errors: CodeUnknownMethod, CodeInvalidJSON, and the method's parse
// errors (CodeBadParams, CodeBadInput).
func parseCall(name string, params []byte) (method, any, error) {
	m, ok := methods[name]
	if !ok {
		return method{}, nil, Errorf(CodeUnknownMethod, "unknown method %q", name)
	}
	if !json.Valid(params) {
		return method{}, nil, Errorf(CodeInvalidJSON, "params of %s are not valid JSON", name)
	}
	q, err := m.parse(params)
	if err != nil {
		return method{}, nil, err
	}
	return m, q, nil
}

// Methods lists the method names dweb_call knows, sorted.
func Methods() []string {
	out := make([]string, 0, len(methods))
	for m := range methods {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

type noParams struct{}

// parseNone parses the params of a method that takes none: {}.
func parseNone(p []byte) (noParams, error) {
	var q noParams
	return q, decodeStrict("params", p, &q)
}

func nodeID(ctx context.Context, n *node, _ noParams) (any, error) {
	return struct {
		NodeID     string `json:"node_id"`
		Contact    string `json:"contact"`
		Addr       string `json:"addr"`
		DeviceName string `json:"device_name"`
	}{n.b.NodeID().String(), n.b.Contact(), n.b.Addr().String(), n.b.DeviceName()}, nil
}

// nodeContact is this device's contact code (core.Backend.MemberContact).
func nodeContact(ctx context.Context, n *node, _ noParams) (any, error) {
	c, err := n.b.MemberContact()
	if err != nil {
		return nil, err
	}
	return struct {
		Contact string `json:"contact"`
	}{c.String()}, nil
}

// nodeGC removes the blobs no group of the node needs any more
// (core.Backend.CollectGarbage) and answers its core.GCResult.
func nodeGC(ctx context.Context, n *node, _ noParams) (any, error) {
	return n.b.CollectGarbage(ctx)
}

// pausedResult is the result of node.pause and node.resume.
type pausedResult struct {
	Paused bool `json:"paused"`
}

// nodePause takes the node off the network for an app in the background
// (core.Backend.Pause): connections and socket closed, no timer or loop
// left running. Pausing a paused node does nothing.
func nodePause(ctx context.Context, n *node, _ noParams) (any, error) {
	if err := n.b.Pause(); err != nil {
		return nil, err
	}
	return pausedResult{Paused: true}, nil
}

// nodeResume puts a paused node back on the network (core.Backend.Resume):
// it answers once the node listens; the node republishes behind it.
func nodeResume(ctx context.Context, n *node, _ noParams) (any, error) {
	if err := n.b.Resume(ctx); err != nil {
		return nil, err
	}
	return pausedResult{Paused: n.b.Paused()}, nil
}

// nodeNetworkChanged tells the node the device's network changed (the
// app heard it from the platform: Android apps may not read the kernel's
// notifications): it redials and republishes (core.Backend.NetworkChanged).
func nodeNetworkChanged(ctx context.Context, n *node, _ noParams) (any, error) {
	n.b.NetworkChanged()
	return struct{}{}, nil
}

// nodePeers lists the nodes in this node's DHT routing table.
func nodePeers(ctx context.Context, n *node, _ noParams) (any, error) {
	return struct {
		Contact string   `json:"contact"`
		Peers   []string `json:"peers"`
	}{n.b.Contact(), n.b.Peers()}, nil
}

// createParams and joinParams take an optional repo_name: this node's
// repo's name in the group ("": the device name; core.GroupOptions).
type createParams struct {
	Name     string `json:"name"`
	RepoName string `json:"repo_name"`
	Checked  bool   `json:"checked"` // a membership-checked group (core.GroupOptions.Checked)
}

// parseCreate parses {"name", "repo_name"?, "checked"?}; core checks the names.
func parseCreate(p []byte) (createParams, error) {
	var q createParams
	return q, decodeStrict("params", p, &q)
}

func groupCreate(ctx context.Context, n *node, q createParams) (any, error) {
	return n.b.CreateGroupWith(ctx, q.Name, core.GroupOptions{RepoName: q.RepoName, Checked: q.Checked})
}

type joinParams struct {
	URI      string `json:"uri"`
	RepoName string `json:"repo_name"`
}

// parseJoin parses {"uri", "repo_name"?}; the uri is required; core parses
// the URI and checks the name.
func parseJoin(p []byte) (joinParams, error) {
	var q joinParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	if q.URI == "" {
		return q, Errorf(CodeBadParams, "params: uri is required")
	}
	return q, nil
}

func groupJoin(ctx context.Context, n *node, q joinParams) (any, error) {
	return n.b.JoinGroupWith(ctx, q.URI, core.GroupOptions{RepoName: q.RepoName})
}

func groupList(ctx context.Context, n *node, _ noParams) (any, error) {
	return n.b.Groups(), nil
}

// groupParams names a group by record key text or unique name.
type groupParams struct {
	Group string `json:"group"`
}

// parseGroup parses {"group"}, which is required.
func parseGroup(p []byte) (groupParams, error) {
	var q groupParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	return q, requireGroup(q.Group)
}

func requireGroup(s string) error {
	if s == "" {
		return Errorf(CodeBadParams, "params: group is required")
	}
	return nil
}

func (n *node) resolve(s string) (core.GroupInfo, error) {
	if err := requireGroup(s); err != nil {
		return core.GroupInfo{}, err
	}
	return n.b.ResolveGroup(s)
}

func groupGet(ctx context.Context, n *node, q groupParams) (any, error) {
	return n.resolve(q.Group)
}

func groupInvite(ctx context.Context, n *node, q groupParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	u, err := n.b.Invite(g.ID)
	if err != nil {
		return nil, err
	}
	return struct {
		URI string `json:"uri"`
	}{u}, nil
}

func groupLeave(ctx context.Context, n *node, q groupParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	if err := n.b.LeaveGroup(ctx, g.ID); err != nil {
		return nil, err
	}
	n.mu.Lock()
	delete(n.synced, g.ID)
	n.mu.Unlock()
	return nil, nil
}

// repoList lists the group's repos, read afresh from the network
// (core.Backend.Repos).
func repoList(ctx context.Context, n *node, q groupParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	rs, err := n.b.Repos(ctx, g.ID)
	if rs == nil && err == nil {
		rs = []core.RepoInfo{}
	}
	return rs, err
}

type renameParams struct {
	Group string `json:"group"`
	Name  string `json:"name"`
}

// parseRename parses {"group", "name"}; the group is required, core checks
// the name.
func parseRename(p []byte) (renameParams, error) {
	var q renameParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	return q, requireGroup(q.Group)
}

// repoRename names this node's repo in the group (core.Backend.SetRepoName).
func repoRename(ctx context.Context, n *node, q renameParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return n.b.SetRepoName(ctx, g.ID, q.Name)
}

type fileAddParams struct {
	Group string  `json:"group"`
	Path  string  `json:"path"`
	Name  string  `json:"name"`
	Data  *[]byte `json:"data"` // standard base64 in JSON
	// NoStoreCopy, optional with a path: the store keeps the file by
	// reference to path instead of a copy (core.AddOptions.NoStoreCopy;
	// the result's store says "reference", or "copy").
	NoStoreCopy bool `json:"no_store_copy,omitempty"`
}

// parseFileAdd parses {"group", "path", "no_store_copy"?} or {"group",
// "name", "data"}: exactly one of the two forms, and in the second a name
// that is one path element (checkBaseName) and no no_store_copy (the
// bytes have no file to refer to). core checks the path.
func parseFileAdd(p []byte) (fileAddParams, error) {
	var q fileAddParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	if err := requireGroup(q.Group); err != nil {
		return q, err
	}
	switch {
	case q.Path != "" && (q.Data != nil || q.Name != ""):
		return q, Errorf(CodeBadParams, "params: give path, or name and data, not both")
	case q.Path != "":
		return q, nil
	case q.NoStoreCopy:
		return q, Errorf(CodeBadParams, "params: no_store_copy needs a path")
	case q.Data != nil:
		return q, checkBaseName(q.Name)
	}
	return q, Errorf(CodeBadParams, "params: path, or name and data, is required")
}

func fileAdd(ctx context.Context, n *node, q fileAddParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	if q.Path != "" {
		fs, err := n.b.AddFilesWith(ctx, g.ID, []string{q.Path}, core.AddOptions{NoStoreCopy: q.NoStoreCopy})
		if err != nil {
			return nil, err
		}
		return fs[0], nil
	}
	return n.addBytes(ctx, g, q.Name, *q.Data)
}

// checkBaseName rejects file names that are not a single path element.
func checkBaseName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return Errorf(CodeBadInput, "file name %q is not a single path element", name)
	}
	return nil
}

// addBytes adds data as file name: the bytes go into the blob store once,
// hashed on every core as they are copied (core.Backend.AddReader), with
// no temporary file. data is only read during the call.
func (n *node) addBytes(ctx context.Context, g core.GroupInfo, name string, data []byte) (core.FileInfo, error) {
	if err := checkBaseName(name); err != nil {
		return core.FileInfo{}, err
	}
	fi, _, err := n.b.AddReader(ctx, g.ID, name, bytes.NewReader(data), MaxAddBytes)
	if err != nil {
		return core.FileInfo{}, err
	}
	return fi, nil
}

func fileList(ctx context.Context, n *node, q groupParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return n.listFiles(ctx, g)
}

// listFiles lists g's files, remembers them for sync.status and emits
// group.changed when the set differs from the last listing.
func (n *node) listFiles(ctx context.Context, g core.GroupInfo) ([]core.FileInfo, error) {
	fs, err := n.b.ListFiles(ctx, g.ID)
	if err != nil {
		return nil, err
	}
	if fs == nil {
		fs = []core.FileInfo{}
	}
	gs := groupSync{RefreshedAt: time.Now().UTC(), Files: len(fs)}
	var sig strings.Builder
	for _, f := range fs {
		if f.Local {
			gs.Local++
		}
		fmt.Fprintf(&sig, "%s\x00%s\x00%s\n", f.Repo, f.Name, f.Hash)
	}
	gs.sig = sig.String()
	n.mu.Lock()
	prev, seen := n.synced[g.ID]
	n.synced[g.ID] = gs
	n.mu.Unlock()
	if seen && prev.sig != gs.sig {
		n.ev.emit(groupChanged{Type: "group.changed", Group: g.ID.String(), Files: gs.Files})
	}
	return fs, nil
}

// fileTarget is the params of file.read, sync.download, file.history and
// dweb_read_file.
type fileTarget struct {
	Group string `json:"group"`
	Name  string `json:"name"`
	Repo  string `json:"repo"` // optional repo key
	Path  string `json:"path"` // absolute output path; not for dweb_read_file and file.history
	// Version, optional with a path (file.read, sync.download), names an
	// older version of the file: an index in its history or a hash prefix
	// (datarepo.ParseVersionRef).
	Version string `json:"version,omitempty"`
	// NoStoreCopy, optional with a path: the store does not keep its own
	// copy of a large file written to path but keeps it as a reference to
	// path (core.GetOptions.NoStoreCopy; the result's export says "move",
	// or "assemble-ref" for a chunked file whose chunks became references
	// into path).
	NoStoreCopy bool `json:"no_store_copy,omitempty"`

	repo key.RecordKey // Repo parsed; zero without one
}

// parseTarget parses a fileTarget: a group and a name, which are
// required, a repo that is a record key if given, and with needPath an
// absolute path (without it, none).
func parseTarget(p []byte, needPath bool) (fileTarget, error) {
	var q fileTarget
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	if err := requireGroup(q.Group); err != nil {
		return q, err
	}
	if q.Name == "" {
		return q, Errorf(CodeBadParams, "params: name is required")
	}
	if q.Repo != "" {
		var err error
		if q.repo, err = key.ParseRecordKey(q.Repo); err != nil {
			return q, Errorf(CodeBadParams, "params: repo: %v", err)
		}
	}
	switch {
	case needPath && q.Path == "":
		return q, Errorf(CodeBadParams, "params: path is required")
	case needPath && !filepath.IsAbs(q.Path):
		return q, Errorf(CodeBadInput, "params: path %q is not absolute", q.Path)
	case !needPath && q.Path != "":
		return q, Errorf(CodeBadParams, "params: path is not used here")
	case !needPath && q.Version != "":
		return q, Errorf(CodeBadParams, "params: version is not used here")
	case !needPath && q.NoStoreCopy:
		return q, Errorf(CodeBadParams, "params: no_store_copy is not used here")
	}
	if q.Version != "" {
		if _, err := datarepo.ParseVersionRef(q.Version); err != nil {
			return q, Errorf(CodeBadInput, "params: version: %v", err)
		}
	}
	return q, nil
}

// parseTargetNoPath is parseTarget without a path: file.history.
func parseTargetNoPath(p []byte) (fileTarget, error) { return parseTarget(p, false) }

func fileHistory(ctx context.Context, n *node, q fileTarget) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return n.b.FileHistory(ctx, g.ID, q.repo, q.Name)
}

type fileRestoreParams struct {
	Group   string `json:"group"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

// parseFileRestore parses {"group", "name", "version"}, all required; the
// version as datarepo.ParseVersionRef reads it.
func parseFileRestore(p []byte) (fileRestoreParams, error) {
	var q fileRestoreParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	if err := requireGroup(q.Group); err != nil {
		return q, err
	}
	if q.Name == "" || q.Version == "" {
		return q, Errorf(CodeBadParams, "params: name and version are required")
	}
	if _, err := datarepo.ParseVersionRef(q.Version); err != nil {
		return q, Errorf(CodeBadInput, "params: version: %v", err)
	}
	return q, nil
}

func fileRestore(ctx context.Context, n *node, q fileRestoreParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return n.b.RestoreFile(ctx, g.ID, q.Name, q.Version)
}

// getTarget writes file q (its version q.Version when set) to q.Path,
// moving the store's copy there with q.NoStoreCopy: file.read and
// sync.download.
func (n *node) getTarget(ctx context.Context, g core.GroupInfo, q fileTarget, progress func(core.Progress)) (core.FileInfo, error) {
	return n.b.GetFileWith(ctx, g.ID, q.repo, q.Name, q.Path, core.GetOptions{Version: q.Version, Progress: progress, NoStoreCopy: q.NoStoreCopy})
}

// parseTargetPath is parseTarget with a path: file.read, sync.download.
func parseTargetPath(p []byte) (fileTarget, error) { return parseTarget(p, true) }

func fileRead(ctx context.Context, n *node, q fileTarget) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return n.getTarget(ctx, g, q, nil)
}

type fileDeleteParams struct {
	Group string `json:"group"`
	Name  string `json:"name"`
}

// parseFileDelete parses {"group", "name"}, both required.
func parseFileDelete(p []byte) (fileDeleteParams, error) {
	var q fileDeleteParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	if err := requireGroup(q.Group); err != nil {
		return q, err
	}
	if q.Name == "" {
		return q, Errorf(CodeBadParams, "params: name is required")
	}
	return q, nil
}

func fileDelete(ctx context.Context, n *node, q fileDeleteParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return nil, n.b.RemoveFile(ctx, g.ID, q.Name)
}

type opResult struct {
	Op int64 `json:"op"`
}

func syncRefresh(ctx context.Context, n *node, q groupParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	id, err := n.startOp("sync.refresh", g.ID.String(), "", func(ctx context.Context, _ func(int64, int64)) (any, error) {
		return n.listFiles(ctx, g)
	})
	return opResult{id}, err
}

// syncFetch runs Backend.RefreshWithProgress: every file of the group this
// node lacks, small ones in children requests, larger ones a few at a
// time; op.progress carries the bytes of all of them.
func syncFetch(ctx context.Context, n *node, q groupParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	id, err := n.startOp("sync.fetch", g.ID.String(), "", func(ctx context.Context, progress func(int64, int64)) (any, error) {
		return n.b.RefreshWithProgress(ctx, g.ID, func(pr core.RefreshProgress) { progress(pr.Done, pr.Total) })
	})
	return opResult{id}, err
}

func syncDownload(ctx context.Context, n *node, q fileTarget) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	id, err := n.startOp("sync.download", g.ID.String(), q.Name, func(ctx context.Context, progress func(int64, int64)) (any, error) {
		return n.getTarget(ctx, g, q, func(pr core.Progress) { progress(pr.Done, pr.Total) })
	})
	return opResult{id}, err
}

// groupSync is what the last listing of a group found.
type groupSync struct {
	RefreshedAt time.Time
	Files       int
	Local       int
	sig         string
}

type groupStatus struct {
	Key         string     `json:"key"`
	Name        string     `json:"name"`
	RefreshedAt *time.Time `json:"refreshed_at"` // null before the first listing
	Files       int        `json:"files"`
	LocalFiles  int        `json:"local_files"`
}

// parseStatus parses {"group"?}.
func parseStatus(p []byte) (groupParams, error) {
	var q groupParams
	return q, decodeStrict("params", p, &q)
}

func syncStatus(ctx context.Context, n *node, q groupParams) (any, error) {
	groups := n.b.Groups()
	if q.Group != "" {
		g, err := n.resolve(q.Group)
		if err != nil {
			return nil, err
		}
		groups = []core.GroupInfo{g}
	}
	out := struct {
		Operations []opStatus    `json:"operations"`
		Groups     []groupStatus `json:"groups"`
	}{Operations: []opStatus{}, Groups: []groupStatus{}}
	n.mu.Lock()
	for _, o := range n.ops {
		if q.Group == "" || o.group == groups[0].ID.String() {
			out.Operations = append(out.Operations, o.status())
		}
	}
	for _, g := range groups {
		st := groupStatus{Key: g.ID.String(), Name: g.Name}
		if s, ok := n.synced[g.ID]; ok {
			t := s.RefreshedAt
			st.RefreshedAt, st.Files, st.LocalFiles = &t, s.Files, s.Local
		}
		out.Groups = append(out.Groups, st)
	}
	n.mu.Unlock()
	sort.Slice(out.Operations, func(i, j int) bool { return out.Operations[i].Op < out.Operations[j].Op })
	return out, nil
}

type opStartParams struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`

	m method // Method in the table
	q any    // Params as m parsed them
}

// parseOpStart parses {"method", "params"?}: a synchronous method of the
// table, and its params (absent: {}) as that method parses them, so bad
// params are an error of op.start rather than of the operation.
func parseOpStart(p []byte) (opStartParams, error) {
	var q opStartParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	if m, ok := methods[q.Method]; ok && m.long {
		return q, Errorf(CodeBadParams, "params: %s already runs as an operation", q.Method)
	}
	params := []byte(q.Params)
	if len(params) == 0 {
		params = []byte("{}")
	}
	m, inner, err := parseCall(q.Method, params)
	if err != nil {
		return q, err
	}
	q.m, q.q = m, inner
	return q, nil
}

func opStart(ctx context.Context, n *node, q opStartParams) (any, error) {
	id, err := n.startOp(q.Method, "", "", func(ctx context.Context, _ func(int64, int64)) (any, error) {
		return q.m.run(ctx, n, q.q)
	})
	return opResult{id}, err
}

type opCancelParams struct {
	Op int64 `json:"op"`
}

// parseOpCancel parses {"op"}.
func parseOpCancel(p []byte) (opCancelParams, error) {
	var q opCancelParams
	return q, decodeStrict("params", p, &q)
}

func opCancel(ctx context.Context, n *node, q opCancelParams) (any, error) {
	n.mu.Lock()
	o, ok := n.ops[q.Op]
	n.mu.Unlock()
	if !ok {
		return nil, Errorf(CodeNotFound, "no running operation %d", q.Op)
	}
	o.cancel(errOpCancelled)
	return nil, nil
}
