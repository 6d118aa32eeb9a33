// Package group is a group of members sharing data repos (DESIGN.md,
// "Groups and data repos"). A group is a DHT record owned by the group's
// owner keypair, every value encrypted under the group secret:
//
//	subkey 0       {"name": "...", "created_at": "RFC 3339"}   JSON
//	subkeys 1..64  one member's data repo record key each      32 raw bytes
//
// As in the Save app, the first invite carries the owner keypair, so every
// member can claim a repo subkey.
//
// A membership-checked group (members.go, membership.go, epoch.go;
// docs/trust.md) replaces the owner key and the group secret with a
// membership list signed by admins, a repo slot per writer that only it
// can write, and epoch keys sealed to each member and rotated on every
// removal. The same Group type serves both kinds: ClaimRepo, RepoKeys,
// Meta and Keys follow the kind.
package group

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

// Subkeys of a group record.
const (
	SubkeyMeta      = 0
	SubkeyRepoFirst = 1
	MaxRepos        = 64
)

// Schema is the group record's schema.
var Schema = record.Schema{OwnerSubkeys: SubkeyRepoFirst + MaxRepos}

// Errors.
var (
	ErrFull        = errors.New("group: all repo subkeys are taken")
	ErrBadName     = errors.New("group: bad name")
	ErrWrongOwner  = errors.New("group: owner key does not match the group's record key")
	ErrNoGroupMeta = errors.New("group: record has no name (not a group, or not reachable yet)")
	// ErrBadMeta: the group's name value does not decode or breaks its
	// bounds (decodeMeta).
	ErrBadMeta = errors.New("group: bad name value")
)

// MaxNameLen is the longest group name in bytes of UTF-8.
const MaxNameLen = 255

// Meta is the value of subkey 0.
type Meta struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Group is a handle on one group record.
type Group struct {
	desc   *record.Descriptor
	owner  key.Keypair
	secret key.Secret
	keys   record.Sealer
	recs   datarepo.Records
	log    *slog.Logger

	// A membership-checked group (members.go): this device's member key
	// and the list it holds with its keys, shared by every handle on the
	// group (WithRecords). member is nil for a group of the first
	// invite's format.
	member *MemberKey
	held   *held
}

// WithRecords returns a handle on the same group that reads and writes
// through recs (a node's local copy, say). Handles on a
// membership-checked group share the held list: a refresh through one is
// seen by all.
func (g *Group) WithRecords(recs datarepo.Records) *Group {
	c := &Group{desc: g.desc, owner: g.owner, secret: g.secret, keys: g.keys, recs: recs, log: g.log, member: g.member, held: g.held}
	if g.member != nil {
		c.keys = ringSealer{g.held}
	}
	return c
}

// Create makes a new group: a fresh owner keypair and group secret, and
// its name written to subkey 0.
func Create(ctx context.Context, recs datarepo.Records, name string) (*Group, error) {
	if name == "" || len(name) > MaxNameLen || !utf8.ValidString(name) {
		return nil, fmt.Errorf("%w: %q (1..%d bytes of UTF-8)", ErrBadName, name, MaxNameLen)
	}
	g, err := Open(recs, key.NewSecret(), key.NewKeypair())
	if err != nil {
		return nil, err
	}
	m := Meta{Name: name, CreatedAt: time.Now().UTC().Truncate(time.Second)}
	b, err := encodeMeta(m)
	if err != nil {
		return nil, fmt.Errorf("create group %q: %w", name, err)
	}
	if _, err := datarepo.WriteSealed(ctx, recs, g.desc, SubkeyMeta, g.owner, g.keys, b); err != nil {
		return nil, fmt.Errorf("create group %q: %w", name, err)
	}
	return g, nil
}

// Open returns a handle on the group owned by owner.
func Open(recs datarepo.Records, secret key.Secret, owner key.Keypair) (*Group, error) {
	desc, err := record.NewDescriptor(owner, Schema)
	if err != nil {
		return nil, err
	}
	return &Group{desc: desc, owner: owner, secret: secret, keys: record.Secret(secret), recs: recs, log: slog.New(slog.DiscardHandler)}, nil
}

// SetLogger sets where the group reports what it skips (a malformed repo
// slot, a member's bad tunnel slot); nil: nowhere. Set it before use.
func (g *Group) SetLogger(l *slog.Logger) {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	g.log = l
}

// Join opens the group an invite describes, checking that the owner key
// belongs to the record key, and reads its metadata from the DHT.
func Join(ctx context.Context, recs datarepo.Records, k key.RecordKey, secret key.Secret, owner key.Keypair) (*Group, Meta, error) {
	g, err := Open(recs, secret, owner)
	if err != nil {
		return nil, Meta{}, err
	}
	if g.Key() != k {
		return nil, Meta{}, fmt.Errorf("%w: invite names %s, owner key gives %s", ErrWrongOwner, k, g.Key())
	}
	m, err := g.Meta(ctx)
	if err != nil {
		return nil, Meta{}, err
	}
	return g, m, nil
}

// Key returns the group's record key (its ID).
func (g *Group) Key() key.RecordKey { return g.desc.Key() }

// Secret returns the group secret.
func (g *Group) Secret() key.Secret { return g.secret }

// Keys returns what the group's values, and its members' repo values,
// are sealed with.
func (g *Group) Keys() record.Sealer { return g.keys }

// Owner returns the owner keypair.
func (g *Group) Owner() key.Keypair { return g.owner }

// Meta reads subkey 0. ErrNoGroupMeta if it was never written or cannot be
// found; a value that does not decode, or whose name is over MaxNameLen
// bytes, is an error wrapping ErrBadMeta.
func (g *Group) Meta(ctx context.Context) (Meta, error) {
	if g.member != nil {
		if _, err := g.Refresh(ctx); err != nil {
			g.log.Warn("group: list not refreshed; the held one answers", "group", g.Key().String(), "err", err)
		}
		return g.heldMeta()
	}
	b, err := datarepo.ReadSealed(ctx, g.recs, g.Key(), SubkeyMeta, g.keys)
	if err != nil {
		return Meta{}, fmt.Errorf("group %s: %w", g.Key(), err)
	}
	if b == nil {
		return Meta{}, fmt.Errorf("%w: %s", ErrNoGroupMeta, g.Key())
	}
	m, err := decodeMeta(b)
	if err != nil {
		return Meta{}, fmt.Errorf("group %s: %w", g.Key(), err)
	}
	return m, nil
}

// encodeMeta is the value of subkey 0: JSON {"name", "created_at"}.
func encodeMeta(m Meta) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("group meta: %w", err)
	}
	return b, nil
}

// decodeMeta decodes the value of subkey 0, which anyone who holds the
// group's invite (and so its owner key) can write. Other fields are
// ignored, for later versions. The name may be empty (a record some other
// writer made: Join's caller may name the group from the invite) but no
// longer than MaxNameLen bytes; created_at is an RFC 3339 time, or absent.
// Errors wrap ErrBadMeta.
func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("%w: %v", ErrBadMeta, err)
	}
	if len(m.Name) > MaxNameLen {
		return Meta{}, fmt.Errorf("%w: name of %d bytes, limit %d", ErrBadMeta, len(m.Name), MaxNameLen)
	}
	return m, nil
}

// ClaimRepo lists repo in the group: in the subkey that already holds it,
// or else in the first free one. It returns the subkey.
//
// In a membership-checked group the list gives each writer its slot: the
// claim writes it there (again when the epoch moved on, so the value is
// sealed under the new key); a viewer gets ErrViewer, a removed member
// ErrRemoved. In a group of the first format:
//
// A claim never overwrites a slot: it creates the slot's first value
// (datarepo.CreateSealed). Members that join at once race for the same
// free slot; a loser (its write refused, or overruled by the conflict
// rule, as the re-read shows) tries the next slot, up to MaxRepos
// attempts in all.
func (g *Group) ClaimRepo(ctx context.Context, repo key.RecordKey) (uint32, error) {
	if g.member != nil {
		return g.claimChecked(ctx, repo)
	}
	for range MaxRepos {
		slots, free, err := g.repoSlots(ctx)
		if err != nil {
			return 0, err
		}
		if sk, ok := slotOf(slots, repo); ok {
			return sk, nil
		}
		if free == 0 {
			return 0, ErrFull
		}
		err = datarepo.CreateSealed(ctx, g.recs, g.desc, free, g.owner, g.keys, repo[:])
		if err != nil && !errors.Is(err, datarepo.ErrTaken) {
			return 0, fmt.Errorf("claim repo subkey %d of group %s: %w", free, g.Key(), err)
		}
		if err == nil {
			if slots, _, err = g.repoSlots(ctx); err != nil {
				return 0, err
			}
			if sk, ok := slotOf(slots, repo); ok {
				return sk, nil
			}
		}
	}
	return 0, fmt.Errorf("claim a repo subkey of group %s: lost the race for a free slot %d times", g.Key(), MaxRepos)
}

// RepoKeys lists the record keys of the group's data repos: subkeys 1..
// up to the first empty one (claims fill them in order). A slot whose
// value does not decrypt or is not a 32-byte key (any member can write
// any slot) is skipped and logged as a warning: one bad slot never hides
// the others. An error means the record could not be read. In a
// membership-checked group only the slots the held list gives its writers
// are read, and a value not signed by the slot's member is skipped.
func (g *Group) RepoKeys(ctx context.Context) ([]key.RecordKey, error) {
	slots, _, err := g.repoSlots(ctx)
	if err != nil {
		return nil, err
	}
	keys := make([]key.RecordKey, len(slots))
	for i, s := range slots {
		keys[i] = s.repo
	}
	return keys, nil
}

// repoSlot is one readable repo subkey of the group record.
type repoSlot struct {
	subkey uint32
	repo   key.RecordKey
}

// slotOf returns the subkey of the first slot listing repo.
func slotOf(slots []repoSlot, repo key.RecordKey) (uint32, bool) {
	for _, s := range slots {
		if s.repo == repo {
			return s.subkey, true
		}
	}
	return 0, false
}

// repoSlots reads the repo subkeys in order up to the first empty one,
// which it returns as free (0: every subkey is written). Bad slots are
// left out of slots, logged, and not free: RepoKeys.
func (g *Group) repoSlots(ctx context.Context) (slots []repoSlot, free uint32, err error) {
	if g.member != nil {
		slots, err := g.checkedSlots(ctx)
		return slots, 0, err
	}
	for i := uint32(0); i < MaxRepos; i++ {
		sk := SubkeyRepoFirst + i
		b, err := datarepo.ReadSealed(ctx, g.recs, g.Key(), sk, g.keys)
		switch {
		case errors.Is(err, record.ErrDecrypt):
			g.log.Warn("group: skipped a repo slot that does not decrypt", "group", g.Key().String(), "subkey", sk, "err", err)
			continue
		case err != nil:
			return nil, 0, fmt.Errorf("group %s: %w", g.Key(), err)
		case b == nil:
			return slots, sk, nil
		case len(b) != key.Size:
			g.log.Warn("group: skipped a malformed repo slot", "group", g.Key().String(), "subkey", sk, "bytes", len(b), "want", key.Size)
			continue
		}
		slots = append(slots, repoSlot{subkey: sk, repo: key.RecordKey(b)})
	}
	return slots, 0, nil
}
