package dht

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

// Membership-checked records (record.MembershipSchema; docs/dht.md,
// "Membership-checked records"; docs/trust.md): subkey 0 is a group's
// membership list and subkeys 1..N its repo slots, and who may write them
// is decided by the list a holder has. The rules of the list (roles,
// versions, who may sign what) are group's; the DHT applies them through
// Options.Membership wherever a value enters its store (STORE, Set, Get,
// replication and hand-off, read repair, watch pushes) and wherever it
// trusts a peer's value (Get answers, a holder's stale answer).

// MembershipChecker holds the rules of membership-checked records; group
// implements it (group.Holders). It is called with values whose
// signatures, subkey range and seq already verified (record.VerifyValue),
// possibly under the DHT's record lock: it must not call into the DHT.
type MembershipChecker interface {
	// CheckList returns nil if list, the data of a subkey-0 value signed
	// by signer, may replace held, the data of the list this node holds
	// (nil: none), as the list of record k, whose schema names firstAdmin
	// as the group's first admin.
	CheckList(k key.RecordKey, firstAdmin ed25519.PublicKey, held, list []byte, signer ed25519.PublicKey) error
	// CheckSlot returns nil if signer may write repo slot subkey (>= 1)
	// under list, the data of a list this node accepted.
	CheckSlot(k key.RecordKey, list []byte, subkey uint32, signer ed25519.PublicKey) error
}

// checkMembership applies the membership list to v, a verified value of
// subkey of the membership-checked record k that would replace the value
// this node has. held is this node's list (subkey 0's value; nil: none).
// Errors wrap ErrBadList (a list refused), record.ErrNotWriter (a slot
// its writer may not write), ErrNoList (a slot value, and no list to
// check it against) or record.ErrBadSchema (this node has no checker).
func (d *DHT) checkMembership(k key.RecordKey, desc *record.Descriptor, subkey uint32, v, held *record.Value) error {
	c := d.opts.Membership
	if c == nil {
		return fmt.Errorf("%w: record %s is membership-checked and this node has no membership checker", record.ErrBadSchema, k)
	}
	if subkey == 0 {
		var hd []byte
		if held != nil {
			hd = held.Data
		}
		if err := c.CheckList(k, desc.Schema.Membership.FirstAdmin, hd, v.Data, v.Writer); err != nil {
			return fmt.Errorf("%w: record %s: %w", ErrBadList, k, err)
		}
		return nil
	}
	if held == nil {
		return fmt.Errorf("%w: record %s, slot %d", ErrNoList, k, subkey)
	}
	if err := c.CheckSlot(k, held.Data, subkey, v.Writer); err != nil {
		return fmt.Errorf("%w: slot %d of record %s: %w", record.ErrNotWriter, subkey, k, err)
	}
	return nil
}

// verifyValue is desc.VerifyValue and, for a membership-checked record,
// the list's rule as this node holds it: what a value a peer offers must
// pass before this node trusts it (Get answers, stale answers). A list
// equal to the one held passes.
func (d *DHT) verifyValue(k key.RecordKey, desc *record.Descriptor, subkey uint32, v *record.Value) error {
	if err := desc.VerifyValue(subkey, v); err != nil {
		return err
	}
	if !desc.Schema.MembershipChecked() {
		return nil
	}
	held, err := d.localValue(k, 0)
	if err != nil {
		return err
	}
	if subkey == 0 && held != nil && bytes.Equal(held.Data, v.Data) {
		return nil
	}
	return d.checkMembership(k, desc, subkey, v, held)
}

// storeTo sends req, a STORE, to c. A holder of a membership-checked
// record that has no list refuses a slot value with ErrNoList; then this
// node's list (subkey 0), if it has one, is sent first and req once more,
// so a write reaches a holder that missed the list. Bounded: at most one
// list and one retry. A STORE that ran out RPCTimeout is sent once more
// (callAgain): c is a holder that a lookup has just found alive.
func (d *DHT) storeTo(ctx context.Context, c Contact, req *request) (*response, error) {
	resp, err := d.callAgain(ctx, c, req)
	if err != nil || resp.Code != codeNoList || req.Subkey == 0 {
		return resp, err
	}
	t, err := target32(req.Target)
	if err != nil {
		return resp, nil
	}
	list, err := d.localValue(key.RecordKey(t), 0)
	if err != nil || list == nil {
		return resp, nil
	}
	enc, err := record.EncodeValue(list)
	if err != nil {
		return resp, nil
	}
	lr, err := d.call(ctx, c, &request{Op: opStore, Target: req.Target, Subkey: 0, Desc: req.Desc, Value: enc, Refreshed: req.Refreshed})
	if err != nil || (lr.Code != codeOK && lr.Code != codeStale) {
		return resp, nil
	}
	d.log.Debug("list pushed before a slot", "peer", c.ID.String(), "record", key.RecordKey(t).String(), "slot", req.Subkey)
	return d.call(ctx, c, req)
}
