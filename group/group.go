// Package group is a group of members sharing data repos (DESIGN.md,
// "Groups and data repos"). A group is a DHT record owned by the group's
// owner keypair, every value encrypted under the group secret:
//
//	subkey 0       {"name": "...", "created_at": "RFC 3339"}   JSON
//	subkeys 1..64  one member's data repo record key each      32 raw bytes
//
// As in the Save app, the first invite carries the owner keypair, so every
// member can claim a repo subkey; roles come later and will be checked in
// one place (canWrite).
package group

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	recs   datarepo.Records
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
	if _, err := datarepo.WriteSealed(ctx, recs, g.desc, SubkeyMeta, g.owner, g.secret, b); err != nil {
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
	return &Group{desc: desc, owner: owner, secret: secret, recs: recs}, nil
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

// Owner returns the owner keypair.
func (g *Group) Owner() key.Keypair { return g.owner }

// Meta reads subkey 0. ErrNoGroupMeta if it was never written or cannot be
// found; a value that does not decode, or whose name is over MaxNameLen
// bytes, is an error wrapping ErrBadMeta.
func (g *Group) Meta(ctx context.Context) (Meta, error) {
	b, err := datarepo.ReadSealed(ctx, g.recs, g.Key(), SubkeyMeta, g.secret)
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
// A claim never overwrites a slot: it creates the slot's first value
// (datarepo.CreateSealed). Members that join at once race for the same
// free slot; a loser (its write refused, or overruled by the conflict
// rule, as the re-read shows) tries the next slot, up to MaxRepos
// attempts in all.
func (g *Group) ClaimRepo(ctx context.Context, repo key.RecordKey) (uint32, error) {
	for range MaxRepos {
		keys, err := g.RepoKeys(ctx)
		if err != nil {
			return 0, err
		}
		if sk, ok := repoSubkey(keys, repo); ok {
			return sk, nil
		}
		if len(keys) >= MaxRepos {
			return 0, ErrFull
		}
		sk := SubkeyRepoFirst + uint32(len(keys))
		err = datarepo.CreateSealed(ctx, g.recs, g.desc, sk, g.owner, g.secret, repo[:])
		if err != nil && !errors.Is(err, datarepo.ErrTaken) {
			return 0, fmt.Errorf("claim repo subkey %d of group %s: %w", sk, g.Key(), err)
		}
		if err == nil {
			if keys, err = g.RepoKeys(ctx); err != nil {
				return 0, err
			}
			if sk, ok := repoSubkey(keys, repo); ok {
				return sk, nil
			}
		}
	}
	return 0, fmt.Errorf("claim a repo subkey of group %s: lost the race for a free slot %d times", g.Key(), MaxRepos)
}

// repoSubkey is the subkey of repo in keys, as RepoKeys lists them.
func repoSubkey(keys []key.RecordKey, repo key.RecordKey) (uint32, bool) {
	for i, k := range keys {
		if k == repo {
			return SubkeyRepoFirst + uint32(i), true
		}
	}
	return 0, false
}

// RepoKeys lists the record keys of the group's data repos: subkeys 1..
// up to the first empty one (claims fill them in order).
func (g *Group) RepoKeys(ctx context.Context) ([]key.RecordKey, error) {
	var keys []key.RecordKey
	for i := 0; i < MaxRepos; i++ {
		b, err := datarepo.ReadSealed(ctx, g.recs, g.Key(), SubkeyRepoFirst+uint32(i), g.secret)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", g.Key(), err)
		}
		if b == nil {
			break
		}
		if len(b) != key.Size {
			return nil, fmt.Errorf("group %s: repo subkey %d holds %d bytes, want %d", g.Key(), SubkeyRepoFirst+i, len(b), key.Size)
		}
		keys = append(keys, key.RecordKey(b))
	}
	return keys, nil
}
