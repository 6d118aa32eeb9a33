package core

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/uri"
)

// GroupInfo describes a group this node belongs to.
type GroupInfo struct {
	ID        key.RecordKey `json:"key"`
	Name      string        `json:"name"`
	CreatedAt time.Time     `json:"created_at"`
	Repo      key.RecordKey `json:"repo_key"` // this node's own repo in the group
}

// groupState is a group in memory: its handles and the blobs this node may
// serve to the group's members.
type groupState struct {
	info GroupInfo
	g    *group.Group
	repo *datarepo.Repo // this node's own repo

	// local reads the group record from this node's store only; with the
	// watches of watch.go running it is as current as the network.
	local *group.Group

	// servable holds the hashes of every collection of the group this node
	// has read or written, and of their entries: what a member may fetch
	// from us. Guarded by Backend.mu.
	servable map[blobsync.Hash]bool

	// groupWatched and watched say which records a watch keeps current:
	// the group record and each member's repo. Guarded by Backend.mu.
	groupWatched bool
	watched      map[key.RecordKey]bool

	// streams keeps the tunnels that downloads ended cleanly, per member
	// node, so the next download from that member skips the handshake.
	// Per group: a tunnel is bound to its group's key.
	streams *blobsync.StreamPool

	// known keeps the member tunnel descriptors read so far, by node
	// (ping.go). Guarded by Backend.mu.
	known map[key.NodeID]group.Member
}

func (b *Backend) newGroupState(info GroupInfo, g *group.Group, repo *datarepo.Repo) (*groupState, error) {
	local := g.WithRecords(localRecords{b})
	g.SetLogger(b.log)
	local.SetLogger(b.log)
	repo.SetLogger(b.log)
	// With Options.Chunking, files above blobsync.ChunkThreshold are
	// stored as content-defined chunks: a re-added file with an edit
	// stores and sends only the chunks around the edit, and versions
	// share the rest.
	repo.SetChunking(b.chunking)
	repo.SetRetention(retention(b.opts))
	gs := &groupState{
		info: info, g: g, repo: repo, local: local,
		servable: make(map[blobsync.Hash]bool),
		watched:  make(map[key.RecordKey]bool),
		streams:  blobsync.NewStreamPool(0, 0),
	}
	// Members fetch a new collection as soon as its hash reaches them:
	// serve it before it is published.
	repo.BeforePublish(func(h blobsync.Hash, c *blobsync.Collection) { b.markServable(gs, h, c) })
	return gs, nil
}

// savedGroup is the non-secret part of a group kept under grp/<key>.
type savedGroup struct {
	Name      string        `cbor:"1,keyasint"`
	CreatedAt time.Time     `cbor:"2,keyasint"`
	Repo      key.RecordKey `cbor:"3,keyasint"`
}

// groupSecrets is the protected part, under prot/group/<key>.
type groupSecrets struct {
	Secret    key.Secret `cbor:"1,keyasint"`
	OwnerSeed []byte     `cbor:"2,keyasint"`
	RepoSeed  []byte     `cbor:"3,keyasint"`
	// Checked is a membership-checked group's held list and keys
	// (group.Group.Save); Secret and OwnerSeed are then unused.
	Checked []byte `cbor:"4,keyasint,omitempty"`
}

func protGroupName(k key.RecordKey) string { return "group/" + k.String() }

func (b *Backend) loadGroups() error {
	return b.db.Scan([]byte(store.PrefixGroup), func(k, v []byte) error {
		gk := key.RecordKey(k[len(store.PrefixGroup):])
		var sg savedGroup
		if err := transport.Unmarshal(v, &sg); err != nil {
			return fmt.Errorf("load group %s: %w", gk, err)
		}
		raw, err := b.prot.Get(protGroupName(gk))
		if err != nil {
			return fmt.Errorf("load secrets of group %s: %w", gk, err)
		}
		var sec groupSecrets
		if err := transport.Unmarshal(raw, &sec); err != nil {
			return fmt.Errorf("load secrets of group %s: %w", gk, err)
		}
		gs, err := b.openGroup(sec, GroupInfo{ID: gk, Name: sg.Name, CreatedAt: sg.CreatedAt, Repo: sg.Repo})
		if err != nil {
			return fmt.Errorf("load group %s: %w", gk, err)
		}
		b.groups[gk] = gs
		return nil
	})
}

// openGroup builds the in-memory handles from the group's secrets. The
// DHT may not exist yet: handles reach it through b.records.
func (b *Backend) openGroup(sec groupSecrets, info GroupInfo) (*groupState, error) {
	var g *group.Group
	if sec.Checked != nil {
		mk, err := b.memberKey()
		if err != nil {
			return nil, err
		}
		if g, err = group.OpenChecked(records{b}, mk, sec.Checked); err != nil {
			return nil, err
		}
	} else {
		owner, err := key.KeypairFromSeed(sec.OwnerSeed)
		if err != nil {
			return nil, err
		}
		if g, err = group.Open(records{b}, sec.Secret, owner); err != nil {
			return nil, err
		}
	}
	if g.Key() != info.ID {
		return nil, fmt.Errorf("owner key gives group %s, want %s", g.Key(), info.ID)
	}
	repoKP, err := key.KeypairFromSeed(sec.RepoSeed)
	if err != nil {
		return nil, err
	}
	repo, err := datarepo.OpenWritable(ownRecords{b}, b.blobs, g.Keys(), repoKP)
	if err != nil {
		return nil, err
	}
	return b.newGroupState(info, g, repo)
}

// records gives groups and repos the DHT once Start has made it; its reads
// and writes wait for the node's first bootstrap attempt (waitBooted), and
// fail with ErrPaused while the node is paused.
type records struct{ b *Backend }

func (r records) Set(ctx context.Context, desc *record.Descriptor, subkey uint32, v *record.Value) error {
	if err := r.b.online(); err != nil {
		return err
	}
	r.b.waitBooted(ctx)
	return r.b.curDHT().Set(ctx, desc, subkey, v)
}

func (r records) Get(ctx context.Context, k key.RecordKey, subkey uint32) (*record.Descriptor, *record.Value, error) {
	if err := r.b.online(); err != nil {
		return nil, nil, err
	}
	r.b.waitBooted(ctx)
	return r.b.curDHT().Get(ctx, k, subkey)
}

// probedRecords is records that notes, in missed, a read no other node
// answered (DHT.GetReached): its value is this node's own copy.
type probedRecords struct {
	b      *Backend
	missed *atomic.Bool
}

func (r probedRecords) Set(ctx context.Context, desc *record.Descriptor, subkey uint32, v *record.Value) error {
	return records{r.b}.Set(ctx, desc, subkey, v)
}

func (r probedRecords) Get(ctx context.Context, k key.RecordKey, subkey uint32) (*record.Descriptor, *record.Value, error) {
	if err := r.b.online(); err != nil {
		return nil, nil, err
	}
	r.b.waitBooted(ctx)
	desc, v, reached, err := r.b.curDHT().GetReached(ctx, k, subkey)
	if err == nil && !reached {
		r.missed.Store(true)
	}
	return desc, v, err
}

// localRecords is records whose reads stay on this node (DHT.GetLocal).
type localRecords struct{ b *Backend }

func (r localRecords) Set(ctx context.Context, desc *record.Descriptor, subkey uint32, v *record.Value) error {
	return records(r).Set(ctx, desc, subkey, v)
}

func (r localRecords) Get(ctx context.Context, k key.RecordKey, subkey uint32) (*record.Descriptor, *record.Value, error) {
	if err := r.b.started(); err != nil {
		return nil, nil, err
	}
	return r.b.curDHT().GetLocal(ctx, k, subkey)
}

func (b *Backend) saveGroup(gs *groupState, sec groupSecrets) error {
	raw, err := transport.Marshal(sec)
	if err != nil {
		return err
	}
	if err := b.prot.Put(protGroupName(gs.info.ID), raw); err != nil {
		return err
	}
	meta, err := transport.Marshal(savedGroup{Name: gs.info.Name, CreatedAt: gs.info.CreatedAt, Repo: gs.info.Repo})
	if err != nil {
		return err
	}
	return b.db.Set(store.Key(store.PrefixGroup, gs.info.ID[:]), meta, true)
}

// GroupOptions are this node's choices for a group it creates or joins
// (CreateGroupWith, JoinGroupWith). The zero value works.
type GroupOptions struct {
	// RepoName names this node's repo in the group: 1 to
	// datarepo.MaxNameLen bytes of UTF-8 without '/' or NUL, not "." or
	// ".." (datarepo.CheckName). Several members may choose one name; the
	// repo key tells them apart. "": the device name (Options.DeviceName).
	RepoName string
	// Checked makes a membership-checked group (docs/trust.md): members
	// with roles, invites sealed to one person, removal with key
	// rotation. Its invites are made per person (InviteMember); the Save
	// app's QR flow needs a group of the first format for now.
	Checked bool
}

// repoName returns the name this node's new repo gets: o.RepoName or the
// device name. A bad o.RepoName is a *BadInputError.
func (b *Backend) repoName(o GroupOptions) (string, error) {
	if o.RepoName == "" {
		return b.opts.DeviceName, nil
	}
	if err := datarepo.CheckName(o.RepoName); err != nil {
		return "", badInput(fmt.Errorf("repo name: %w", err))
	}
	return o.RepoName, nil
}

// CreateGroup creates a group named name, with this node's repo in it,
// named after the device (CreateGroupWith with no options).
func (b *Backend) CreateGroup(ctx context.Context, name string) (GroupInfo, error) {
	return b.CreateGroupWith(ctx, name, GroupOptions{})
}

// CreateGroupWith creates a group named name, with this node's repo in it
// named o.RepoName. Every input is checked before anything is written: a
// bad group or repo name is a *BadInputError and creates nothing.
func (b *Backend) CreateGroupWith(ctx context.Context, name string, o GroupOptions) (GroupInfo, error) {
	repoName, err := b.repoName(o)
	if err != nil {
		return GroupInfo{}, err
	}
	if err := b.online(); err != nil {
		return GroupInfo{}, err
	}
	var g *group.Group
	if o.Checked {
		mk, err := b.memberKey()
		if err != nil {
			return GroupInfo{}, err
		}
		g, err = group.CreateChecked(ctx, records{b}, mk, name, b.opts.DeviceName)
	} else {
		g, err = group.Create(ctx, records{b}, name)
	}
	if errors.Is(err, group.ErrBadName) {
		return GroupInfo{}, badInput(err)
	}
	if err != nil {
		return GroupInfo{}, err
	}
	m, err := g.Meta(ctx)
	if err != nil {
		return GroupInfo{}, err
	}
	return b.addGroup(ctx, g, m, repoName)
}

// JoinGroup joins the group an invite URI describes, with this node's repo
// named after the device (JoinGroupWith with no options).
func (b *Backend) JoinGroup(ctx context.Context, inviteURI string) (GroupInfo, error) {
	return b.JoinGroupWith(ctx, inviteURI, GroupOptions{})
}

// JoinGroupWith joins the group an invite URI describes and makes this
// node's repo in it, named o.RepoName. The URI and the name are checked
// first: a malformed URI is a *BadInputError naming the parameter, a bad
// name a *BadInputError, and no node is contacted. The invite's bootstrap
// hints are added to the DHT. Joining a group this node is already in
// answers it as it is, after renaming this node's repo to o.RepoName if
// one is given (SetRepoName).
func (b *Backend) JoinGroupWith(ctx context.Context, inviteURI string, o GroupOptions) (GroupInfo, error) {
	inv, err := uri.ParseInvite(inviteURI)
	if err != nil {
		return GroupInfo{}, badInput(err)
	}
	repoName, err := b.repoName(o)
	if err != nil {
		return GroupInfo{}, err
	}
	if err := b.online(); err != nil {
		return GroupInfo{}, err
	}
	if gi, err := b.group(inv.Group); err == nil {
		if o.RepoName != "" {
			if _, err := b.SetRepoName(ctx, gi.info.ID, o.RepoName); err != nil {
				return GroupInfo{}, err
			}
		}
		return gi.info, nil
	}
	var hints []dht.Contact
	for _, s := range inv.Bootstrap {
		c, err := dht.ParseContact(s)
		if err != nil {
			return GroupInfo{}, badInput(fmt.Errorf("invite bootstrap %q: %w", s, err))
		}
		if c.ID != b.NodeID() {
			hints = append(hints, c)
		}
	}
	if len(hints) > 0 {
		b.curDHT().AddContacts(hints...)
		if err := b.curDHT().Bootstrap(ctx); err != nil {
			b.log.Warn("bootstrap from invite hints failed", "err", err)
		}
		b.saveContacts(hints...)
	}
	var g *group.Group
	var m group.Meta
	if inv.Version >= 2 {
		g, m, err = b.joinChecked(ctx, inv)
		if errors.Is(err, errBearer) {
			return b.joinBearer(ctx, inv, repoName)
		}
	} else {
		g, m, err = group.Join(ctx, records{b}, inv.Group, inv.Secret, inv.Owner)
	}
	var bad *BadInputError
	if errors.As(err, &bad) {
		return GroupInfo{}, err
	}
	if errors.Is(err, group.ErrWrongOwner) {
		return GroupInfo{}, badInput(err)
	}
	if err != nil {
		return GroupInfo{}, fmt.Errorf("join group %s: %w", inv.Group, err)
	}
	if m.Name == "" { // the Save app's join code carries the name too
		m.Name = inv.Name
	}
	return b.addGroup(ctx, g, m, repoName)
}

// addGroup creates this node's repo in g named repoName, claims its
// subkey, publishes the tunnel descriptor and persists the group.
func (b *Backend) addGroup(ctx context.Context, g *group.Group, m group.Meta, repoName string) (GroupInfo, error) {
	g.SetLogger(b.log)
	created, repoKP, err := datarepo.Create(ctx, records{b}, b.blobs, g.Keys(), repoName)
	if err != nil {
		return GroupInfo{}, fmt.Errorf("create repo: %w", err)
	}
	// Made through the network, so that members can read it once it is
	// claimed; written from now on locally first (ownRecords).
	repo, err := datarepo.OpenWritable(ownRecords{b}, b.blobs, g.Keys(), repoKP)
	if err != nil {
		return GroupInfo{}, fmt.Errorf("open repo %s: %w", created.Key(), err)
	}
	// A device that took a member's entry over takes its repo's files
	// over too: read which repo the slot lists before claiming it.
	inherited := b.inheritedRepo(ctx, g)
	// A viewer of a membership-checked group has no slot: its repo stays
	// unlisted (it holds its tunnel descriptor, and nothing else).
	if _, err := g.ClaimRepo(ctx, repo.Key()); err != nil && !errors.Is(err, group.ErrViewer) {
		return GroupInfo{}, err
	}
	gs, err := b.newGroupState(GroupInfo{ID: g.Key(), Name: m.Name, CreatedAt: m.CreatedAt, Repo: repo.Key()}, g, repo)
	if err != nil {
		return GroupInfo{}, err
	}
	if err := b.publishTunnelErr(ctx, gs); err != nil {
		return GroupInfo{}, err
	}
	sec := groupSecrets{RepoSeed: repoKP.Seed()}
	if g.Checked() {
		if sec.Checked, err = g.Save(); err != nil {
			return GroupInfo{}, err
		}
	} else {
		sec.Secret, sec.OwnerSeed = g.Secret(), g.Owner().Seed()
	}
	if err := b.saveGroup(gs, sec); err != nil {
		return GroupInfo{}, err
	}
	b.mu.Lock()
	b.groups[gs.info.ID] = gs
	b.mu.Unlock()
	b.adoptInherited(ctx, gs, inherited)
	b.ownRepoChanged(ctx, gs) // its first collection: servable, and told
	b.startWatch(gs)
	b.log.Info("joined group", "group", gs.info.ID, "name", gs.info.Name, "repo", gs.info.Repo)
	return gs.info, nil
}

func (b *Backend) publishTunnel(ctx context.Context, gs *groupState) {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := b.publishTunnelErr(ctx, gs); err != nil {
		b.log.Warn("publish tunnel descriptor", "group", gs.info.ID, "err", err)
	}
}

// publishTunnelErr writes this node's tunnel descriptor into slot 0 of its
// repo in gs, and tells it (publication.state, record "tunnel").
func (b *Backend) publishTunnelErr(ctx context.Context, gs *groupState) error {
	td := b.tunnelDescriptor()
	if err := gs.repo.SetTunnel(ctx, 0, td); err != nil {
		return fmt.Errorf("publish tunnel descriptor: %w", err)
	}
	b.emit(KindPublicationState, gs.info.ID, gs.info.Repo, PublicationEvent{Record: "tunnel", State: "published"})
	return nil
}

// Groups lists the groups this node belongs to, by name.
func (b *Backend) Groups() []GroupInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]GroupInfo, 0, len(b.groups))
	for _, gs := range b.groups {
		out = append(out, gs.info)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID.String() < out[j].ID.String()
	})
	return out
}

func (b *Backend) group(k key.RecordKey) (*groupState, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	gs, ok := b.groups[k]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownGroup, k)
	}
	return gs, nil
}

// ResolveGroup finds a group by its record key text or its unique name.
func (b *Backend) ResolveGroup(s string) (GroupInfo, error) {
	if k, err := key.ParseRecordKey(s); err == nil {
		if gs, err := b.group(k); err == nil {
			return gs.info, nil
		}
	}
	var found []GroupInfo
	for _, gi := range b.Groups() {
		if gi.Name == s {
			found = append(found, gi)
		}
	}
	switch len(found) {
	case 0:
		return GroupInfo{}, fmt.Errorf("%w: %q", ErrUnknownGroup, s)
	case 1:
		return found[0], nil
	default:
		return GroupInfo{}, fmt.Errorf("%w: %d groups are named %q; use the group key", ErrAmbiguous, len(found), s)
	}
}

// maxInviteHints bounds the bootstrap hints an invite carries.
const maxInviteHints = 4

// Invite returns a save+dweb: invite URI for the group: its key, secret and
// owner keypair, and bootstrap hints (this node first) so that the URI
// alone is enough to join.
func (b *Backend) Invite(k key.RecordKey) (string, error) {
	gs, err := b.group(k)
	if err != nil {
		return "", err
	}
	if gs.g.Checked() {
		return "", badInput(fmt.Errorf("group %s: %w (dweb group invite GROUP --for CONTACT, or --uses N --expires DURATION)", k, ErrInviteForOne))
	}
	inv := uri.Invite{Version: 1, Group: gs.g.Key(), Secret: gs.g.Secret(), Owner: gs.g.Owner(), Bootstrap: b.inviteHints()}
	return inv.String(), nil
}

// inviteHints are the bootstrap hints an invite carries: this node first,
// then contacts of its routing table, at most maxInviteHints.
func (b *Backend) inviteHints() []string {
	var hints []string
	if c := b.Contact(); b.Addr().IsValid() {
		hints = append(hints, c)
	}
	if d := b.curDHT(); d != nil {
		for _, c := range d.Contacts() {
			if len(hints) >= maxInviteHints {
				break
			}
			hints = append(hints, c.String())
		}
	}
	return hints
}

// LeaveGroup forgets a group: its secrets and this node's repo handle. The
// blobs stay until garbage collection.
func (b *Backend) LeaveGroup(ctx context.Context, k key.RecordKey) error {
	gs, err := b.group(k)
	if err != nil {
		return err
	}
	if b.curDHT() != nil {
		if err := gs.repo.ClearTunnel(ctx, 0); err != nil {
			b.log.Debug("clear tunnel descriptor", "group", k, "err", err)
		}
	}
	if err := b.db.Delete(store.Key(store.PrefixGroup, k[:]), true); err != nil {
		return err
	}
	if err := b.prot.Delete(protGroupName(k)); err != nil {
		return err
	}
	b.forgetRepos(k)
	b.mu.Lock()
	delete(b.groups, k)
	b.mu.Unlock()
	gs.streams.Close()
	return nil
}

// markServable records that the blobs of collection c (hash h) may be
// served to the group's members: those of every version it keeps.
func (b *Backend) markServable(gs *groupState, h blobsync.Hash, c *blobsync.Collection) {
	// A chunked entry's chunks, from its list if held (read outside b.mu).
	// Every version the collection keeps, so members can get old ones too
	// (read outside b.mu: a chunked entry's list is read from the store).
	var hs []blobsync.Hash
	c.KeptFiles(func(e blobsync.Entry) bool {
		hs = append(hs, e.Hash)
		if !e.Chunks.IsZero() {
			b.blobs.FileBlobs(e, func(h blobsync.Hash) bool { hs = append(hs, h); return true })
		}
		return true
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	gs.servable[h] = true
	for _, h := range hs {
		gs.servable[h] = true
	}
}

// markFileServable lets members fetch entry e's bytes from this node: its
// blob, or its chunk list and chunks.
func (b *Backend) markFileServable(gs *groupState, e blobsync.Entry) {
	var hs []blobsync.Hash
	b.blobs.FileBlobs(e, func(h blobsync.Hash) bool { hs = append(hs, h); return true })
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, h := range hs {
		gs.servable[h] = true
	}
}
