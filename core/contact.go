package core

import (
	"errors"
	"fmt"

	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/uri"
)

// protMemberKey holds the device's member key (group.MemberKey.Bytes) in
// the protected store.
const protMemberKey = "member/key"

// MemberContact returns this device's contact code: the public half of its
// member key (docs/trust.md), made on first use and kept in the protected
// store from then on. A person shows it to a group admin to be invited.
// It needs no network and works before Start.
func (b *Backend) MemberContact() (uri.Contact, error) {
	m, err := b.memberKey()
	if err != nil {
		return uri.Contact{}, err
	}
	return m.Contact(), nil
}

// memberKey loads the device's member key, creating it on first use.
func (b *Backend) memberKey() (group.MemberKey, error) {
	b.memberMu.Lock()
	defer b.memberMu.Unlock()
	raw, err := b.prot.Get(protMemberKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		m, err := group.NewMemberKey()
		if err != nil {
			return group.MemberKey{}, err
		}
		if err := b.prot.Put(protMemberKey, m.Bytes()); err != nil {
			return group.MemberKey{}, fmt.Errorf("save member key: %w", err)
		}
		return m, nil
	case err != nil:
		return group.MemberKey{}, fmt.Errorf("load member key: %w", err)
	}
	m, err := group.ParseMemberKey(raw)
	if err != nil {
		return group.MemberKey{}, fmt.Errorf("load member key: %w", err)
	}
	return m, nil
}
