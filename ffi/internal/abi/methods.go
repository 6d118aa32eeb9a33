package abi

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/internal/key"
)

// method is one entry of the dweb_call table. fn receives the params JSON
// (already valid JSON) and a context that ends with the call's timeout, or
// for long methods with the node.
type method struct {
	fn   func(ctx context.Context, n *node, params []byte) (any, error)
	long bool // returns {"op": id} at once; the work runs as an operation
}

var methods map[string]method

// Method names, in docs/ffi.md order. Kept in a function rather than a
// literal because op.start refers back to the table.
func init() {
	methods = map[string]method{
		"node.id":       {fn: nodeID},
		"node.peers":    {fn: nodePeers},
		"group.create":  {fn: groupCreate},
		"group.join":    {fn: groupJoin},
		"group.list":    {fn: groupList},
		"group.get":     {fn: groupGet},
		"group.invite":  {fn: groupInvite},
		"group.leave":   {fn: groupLeave},
		"repo.list":     {fn: repoList},
		"repo.rename":   {fn: repoRename},
		"file.add":      {fn: fileAdd},
		"file.list":     {fn: fileList},
		"file.read":     {fn: fileRead},
		"file.delete":   {fn: fileDelete},
		"sync.refresh":  {fn: syncRefresh, long: true},
		"sync.download": {fn: syncDownload, long: true},
		"sync.fetch":    {fn: syncFetch, long: true},
		"sync.status":   {fn: syncStatus},
		"op.start":      {fn: opStart, long: true},
		"op.cancel":     {fn: opCancel},
	}
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

func nodeID(ctx context.Context, n *node, p []byte) (any, error) {
	if err := decodeStrict("params", p, &noParams{}); err != nil {
		return nil, err
	}
	return struct {
		NodeID     string `json:"node_id"`
		Contact    string `json:"contact"`
		Addr       string `json:"addr"`
		DeviceName string `json:"device_name"`
	}{n.b.NodeID().String(), n.b.Contact(), n.b.Addr().String(), n.b.DeviceName()}, nil
}

// nodePeers lists the nodes in this node's DHT routing table.
func nodePeers(ctx context.Context, n *node, p []byte) (any, error) {
	if err := decodeStrict("params", p, &noParams{}); err != nil {
		return nil, err
	}
	return struct {
		Contact string   `json:"contact"`
		Peers   []string `json:"peers"`
	}{n.b.Contact(), n.b.Peers()}, nil
}

// groupCreate and groupJoin take an optional repo_name: this node's repo's
// name in the group ("": the device name; core.GroupOptions).
func groupCreate(ctx context.Context, n *node, p []byte) (any, error) {
	var q struct {
		Name     string `json:"name"`
		RepoName string `json:"repo_name"`
	}
	if err := decodeStrict("params", p, &q); err != nil {
		return nil, err
	}
	return n.b.CreateGroupWith(ctx, q.Name, core.GroupOptions{RepoName: q.RepoName})
}

func groupJoin(ctx context.Context, n *node, p []byte) (any, error) {
	var q struct {
		URI      string `json:"uri"`
		RepoName string `json:"repo_name"`
	}
	if err := decodeStrict("params", p, &q); err != nil {
		return nil, err
	}
	if q.URI == "" {
		return nil, Errorf(CodeBadParams, "params: uri is required")
	}
	return n.b.JoinGroupWith(ctx, q.URI, core.GroupOptions{RepoName: q.RepoName})
}

func groupList(ctx context.Context, n *node, p []byte) (any, error) {
	if err := decodeStrict("params", p, &noParams{}); err != nil {
		return nil, err
	}
	return n.b.Groups(), nil
}

// groupParams names a group by record key text or unique name.
type groupParams struct {
	Group string `json:"group"`
}

func (n *node) resolve(s string) (core.GroupInfo, error) {
	if s == "" {
		return core.GroupInfo{}, Errorf(CodeBadParams, "params: group is required")
	}
	return n.b.ResolveGroup(s)
}

// groupParam decodes params {"group": ...} and resolves the group.
func (n *node) groupParam(p []byte) (core.GroupInfo, error) {
	var q groupParams
	if err := decodeStrict("params", p, &q); err != nil {
		return core.GroupInfo{}, err
	}
	return n.resolve(q.Group)
}

func groupGet(ctx context.Context, n *node, p []byte) (any, error) {
	return n.groupParam(p)
}

func groupInvite(ctx context.Context, n *node, p []byte) (any, error) {
	g, err := n.groupParam(p)
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

func groupLeave(ctx context.Context, n *node, p []byte) (any, error) {
	g, err := n.groupParam(p)
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
func repoList(ctx context.Context, n *node, p []byte) (any, error) {
	g, err := n.groupParam(p)
	if err != nil {
		return nil, err
	}
	rs, err := n.b.Repos(ctx, g.ID)
	if rs == nil && err == nil {
		rs = []core.RepoInfo{}
	}
	return rs, err
}

// repoRename names this node's repo in the group (core.Backend.SetRepoName).
func repoRename(ctx context.Context, n *node, p []byte) (any, error) {
	var q struct {
		Group string `json:"group"`
		Name  string `json:"name"`
	}
	if err := decodeStrict("params", p, &q); err != nil {
		return nil, err
	}
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return n.b.SetRepoName(ctx, g.ID, q.Name)
}

func fileAdd(ctx context.Context, n *node, p []byte) (any, error) {
	var q struct {
		Group string  `json:"group"`
		Path  string  `json:"path"`
		Name  string  `json:"name"`
		Data  *[]byte `json:"data"` // standard base64 in JSON
	}
	if err := decodeStrict("params", p, &q); err != nil {
		return nil, err
	}
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	switch {
	case q.Path != "" && (q.Data != nil || q.Name != ""):
		return nil, Errorf(CodeBadParams, "params: give path, or name and data, not both")
	case q.Path != "":
		fs, err := n.b.AddFiles(ctx, g.ID, []string{q.Path})
		if err != nil {
			return nil, err
		}
		return fs[0], nil
	case q.Data != nil:
		return n.addBytes(ctx, g, q.Name, *q.Data)
	}
	return nil, Errorf(CodeBadParams, "params: path, or name and data, is required")
}

// checkBaseName rejects file names that are not a single path element.
func checkBaseName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return Errorf(CodeBadInput, "file name %q is not a single path element", name)
	}
	return nil
}

// addBytes adds data as file name: core imports files from paths, so the
// bytes go through a temporary file under DataDir/ffi-tmp, removed after.
func (n *node) addBytes(ctx context.Context, g core.GroupInfo, name string, data []byte) (core.FileInfo, error) {
	if err := checkBaseName(name); err != nil {
		return core.FileInfo{}, err
	}
	tmpRoot := filepath.Join(n.cfg.DataDir, "ffi-tmp")
	if err := os.MkdirAll(tmpRoot, 0o700); err != nil {
		return core.FileInfo{}, fmt.Errorf("add %q: %w", name, err)
	}
	dir, err := os.MkdirTemp(tmpRoot, "add-")
	if err != nil {
		return core.FileInfo{}, fmt.Errorf("add %q: %w", name, err)
	}
	defer os.RemoveAll(dir)
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return core.FileInfo{}, err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return core.FileInfo{}, fmt.Errorf("add %q: %w", name, err)
	}
	fs, err := n.b.AddFiles(ctx, g.ID, []string{path})
	if err != nil {
		return core.FileInfo{}, err
	}
	return fs[0], nil
}

func fileList(ctx context.Context, n *node, p []byte) (any, error) {
	g, err := n.groupParam(p)
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

// fileTarget is the params of file.read, sync.download and dweb_read_file.
type fileTarget struct {
	Group string `json:"group"`
	Name  string `json:"name"`
	Repo  string `json:"repo"` // optional repo key
	Path  string `json:"path"` // absolute output path; not for dweb_read_file
}

func (n *node) target(p []byte, needPath bool) (core.GroupInfo, key.RecordKey, fileTarget, error) {
	var q fileTarget
	if err := decodeStrict("params", p, &q); err != nil {
		return core.GroupInfo{}, key.RecordKey{}, q, err
	}
	g, err := n.resolve(q.Group)
	if err != nil {
		return core.GroupInfo{}, key.RecordKey{}, q, err
	}
	if q.Name == "" {
		return g, key.RecordKey{}, q, Errorf(CodeBadParams, "params: name is required")
	}
	var repo key.RecordKey
	if q.Repo != "" {
		if repo, err = key.ParseRecordKey(q.Repo); err != nil {
			return g, repo, q, Errorf(CodeBadParams, "params: repo: %v", err)
		}
	}
	switch {
	case needPath && q.Path == "":
		return g, repo, q, Errorf(CodeBadParams, "params: path is required")
	case needPath && !filepath.IsAbs(q.Path):
		return g, repo, q, Errorf(CodeBadInput, "params: path %q is not absolute", q.Path)
	case !needPath && q.Path != "":
		return g, repo, q, Errorf(CodeBadParams, "params: path is not used here")
	}
	return g, repo, q, nil
}

func fileRead(ctx context.Context, n *node, p []byte) (any, error) {
	g, repo, q, err := n.target(p, true)
	if err != nil {
		return nil, err
	}
	return n.b.GetFile(ctx, g.ID, repo, q.Name, q.Path, nil)
}

func fileDelete(ctx context.Context, n *node, p []byte) (any, error) {
	var q struct {
		Group string `json:"group"`
		Name  string `json:"name"`
	}
	if err := decodeStrict("params", p, &q); err != nil {
		return nil, err
	}
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	if q.Name == "" {
		return nil, Errorf(CodeBadParams, "params: name is required")
	}
	return nil, n.b.RemoveFile(ctx, g.ID, q.Name)
}

type opResult struct {
	Op int64 `json:"op"`
}

func syncRefresh(ctx context.Context, n *node, p []byte) (any, error) {
	g, err := n.groupParam(p)
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
func syncFetch(ctx context.Context, n *node, p []byte) (any, error) {
	g, err := n.groupParam(p)
	if err != nil {
		return nil, err
	}
	id, err := n.startOp("sync.fetch", g.ID.String(), "", func(ctx context.Context, progress func(int64, int64)) (any, error) {
		return n.b.RefreshWithProgress(ctx, g.ID, func(pr core.RefreshProgress) { progress(pr.Done, pr.Total) })
	})
	return opResult{id}, err
}

func syncDownload(ctx context.Context, n *node, p []byte) (any, error) {
	g, repo, q, err := n.target(p, true)
	if err != nil {
		return nil, err
	}
	id, err := n.startOp("sync.download", g.ID.String(), q.Name, func(ctx context.Context, progress func(int64, int64)) (any, error) {
		return n.b.GetFile(ctx, g.ID, repo, q.Name, q.Path, func(pr core.Progress) { progress(pr.Done, pr.Total) })
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

func syncStatus(ctx context.Context, n *node, p []byte) (any, error) {
	var q groupParams
	if err := decodeStrict("params", p, &q); err != nil {
		return nil, err
	}
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

func opStart(ctx context.Context, n *node, p []byte) (any, error) {
	var q struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if err := decodeStrict("params", p, &q); err != nil {
		return nil, err
	}
	m, ok := methods[q.Method]
	if !ok {
		return nil, Errorf(CodeUnknownMethod, "unknown method %q", q.Method)
	}
	if m.long {
		return nil, Errorf(CodeBadParams, "params: %s already runs as an operation", q.Method)
	}
	params := []byte(q.Params)
	if len(params) == 0 {
		params = []byte("{}")
	}
	id, err := n.startOp(q.Method, "", "", func(ctx context.Context, _ func(int64, int64)) (any, error) {
		return m.fn(ctx, n, params)
	})
	return opResult{id}, err
}

func opCancel(ctx context.Context, n *node, p []byte) (any, error) {
	var q struct {
		Op int64 `json:"op"`
	}
	if err := decodeStrict("params", p, &q); err != nil {
		return nil, err
	}
	n.mu.Lock()
	o, ok := n.ops[q.Op]
	n.mu.Unlock()
	if !ok {
		return nil, Errorf(CodeNotFound, "no running operation %d", q.Op)
	}
	o.cancel(errOpCancelled)
	return nil, nil
}
