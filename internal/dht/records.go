package dht

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/zeebo/blake3"
)

// Records are kept in the node's Pebble store (see internal/store):
//
//	rec/<key 32>/d            record.EncodeDescriptor
//	rec/<key 32>/m            be64 Unix seconds the record was last refreshed by its owner
//	rec/<key 32>/p            present when this node wrote the record (Set): it republishes it
//	rec/<key 32>/s/<sk be32>  record.EncodeValue
//
// Only verified descriptors and values are written, so reads decode without
// re-verifying signatures. A value above record.MaxSeq, which a node
// stored before that limit existed, reads as absent: a valid write
// replaces it, and it is neither served nor replicated.

const recKeyLen = len(store.PrefixRecord) + key.Size

func descKey(k key.RecordKey) []byte {
	return store.Key(store.PrefixRecord, k[:], []byte("/d"))
}

func metaKey(k key.RecordKey) []byte {
	return store.Key(store.PrefixRecord, k[:], []byte("/m"))
}

func pubKey(k key.RecordKey) []byte {
	return store.Key(store.PrefixRecord, k[:], []byte("/p"))
}

func valuesPrefix(k key.RecordKey) []byte {
	return store.Key(store.PrefixRecord, k[:], []byte("/s/"))
}

func valueKey(k key.RecordKey, subkey uint32) []byte {
	return store.Key(store.PrefixRecord, k[:], []byte("/s/"), binary.BigEndian.AppendUint32(nil, subkey))
}

// localDesc returns the stored descriptor of k, or nil if none.
func (d *DHT) localDesc(k key.RecordKey) (*record.Descriptor, error) {
	b, err := d.db.Get(descKey(k))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	desc, err := record.DecodeDescriptor(b)
	if err != nil {
		return nil, fmt.Errorf("dht: stored descriptor of %s: %w", k, err)
	}
	return desc, nil
}

// localValue returns the stored value of subkey of k, or nil if none.
func (d *DHT) localValue(k key.RecordKey, subkey uint32) (*record.Value, error) {
	b, err := d.db.Get(valueKey(k, subkey))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v, err := record.DecodeValue(b)
	if err != nil {
		return nil, fmt.Errorf("dht: stored value of %s/%d: %w", k, subkey, err)
	}
	if v.Seq > record.MaxSeq {
		return nil, nil
	}
	return v, nil
}

// localValues returns every stored value of k by subkey.
func (d *DHT) localValues(k key.RecordKey) (map[uint32]*record.Value, error) {
	out := map[uint32]*record.Value{}
	pre := valuesPrefix(k)
	err := d.db.Scan(pre, func(kk, vv []byte) error {
		if len(kk) != len(pre)+4 {
			return nil
		}
		v, err := record.DecodeValue(vv)
		if err != nil {
			return fmt.Errorf("dht: stored value of %s: %w", k, err)
		}
		if v.Seq > record.MaxSeq {
			return nil
		}
		out[binary.BigEndian.Uint32(kk[len(pre):])] = v
		return nil
	})
	return out, err
}

// localSeqs returns the INSPECT view of the stored values of k, ascending
// by subkey; only subkeys in want (all if want is nil).
func (d *DHT) localSeqs(k key.RecordKey, want map[uint32]bool) ([]wireSeq, error) {
	var out []wireSeq
	pre := valuesPrefix(k)
	err := d.db.Scan(pre, func(kk, vv []byte) error {
		if len(kk) != len(pre)+4 {
			return nil
		}
		sk := binary.BigEndian.Uint32(kk[len(pre):])
		if want != nil && !want[sk] {
			return nil
		}
		v, err := record.DecodeValue(vv)
		if err != nil {
			return fmt.Errorf("dht: stored value of %s: %w", k, err)
		}
		if v.Seq > record.MaxSeq {
			return nil
		}
		h := blake3.Sum256(v.Data)
		out = append(out, wireSeq{Subkey: sk, Seq: v.Seq, Hash: h[:]})
		return nil
	})
	return out, err
}

// localKeys returns the keys of every record this node stores.
func (d *DHT) localKeys() ([]key.RecordKey, error) {
	var out []key.RecordKey
	err := d.db.Scan([]byte(store.PrefixRecord), func(kk, _ []byte) error {
		if len(kk) == recKeyLen+2 && string(kk[recKeyLen:]) == "/d" {
			out = append(out, key.RecordKey(kk[len(store.PrefixRecord):recKeyLen]))
		}
		return nil
	})
	return out, err
}

// refreshed returns when record k was last refreshed by its owner, as far
// as this node knows (zero if never recorded).
func (d *DHT) refreshed(k key.RecordKey) time.Time {
	b, err := d.db.Get(metaKey(k))
	if err != nil || len(b) != 8 {
		return time.Time{}
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b)), 0)
}

// published reports whether this node wrote record k (and republishes it).
func (d *DHT) published(k key.RecordKey) bool {
	ok, _ := d.db.Has(pubKey(k))
	return ok
}

// bumpRefreshed records that k was refreshed at t (capped at now) if that
// is later than what is stored. The caller holds recMu or accepts a lost
// race (the later of two concurrent bumps may lose by a few seconds).
func (d *DHT) bumpRefreshed(k key.RecordKey, t time.Time) error {
	if now := time.Now(); t.After(now) {
		t = now
	}
	if !t.After(d.refreshed(k)) {
		return nil
	}
	return d.db.Set(metaKey(k), binary.BigEndian.AppendUint64(nil, uint64(t.Unix())), false)
}

// dropRecord deletes every key of record k.
func (d *DHT) dropRecord(k key.RecordKey) error {
	d.recMu.Lock()
	defer d.recMu.Unlock()
	pre := store.Key(store.PrefixRecord, k[:], []byte("/"))
	b := d.db.NewBatch()
	err := d.db.Scan(pre, func(kk, _ []byte) error { return b.Delete(bytes.Clone(kk)) })
	if err != nil {
		return err
	}
	return b.Commit(false)
}

// accept is the storing node's rule, for STORE requests and local writes:
// desc must verify and hash to k, v must verify for subkey; then v is kept
// unless the current value is better (a *StaleError carrying it). A value
// of a membership-checked record that would replace the current one must
// also pass the membership list this node holds (checkMembership). An equal
// value is accepted without a write. v may be nil to store only desc.
// The record's refresh time is left as it is. Watchers of subkey are told
// of a new value.
func (d *DHT) accept(k key.RecordKey, desc *record.Descriptor, subkey uint32, v *record.Value) error {
	_, err := d.acceptFrom(k, desc, subkey, v, time.Time{}, nil)
	return err
}

// acceptFrom is accept for a value that came from peer (nil: from this
// node): a record new to this node is charged to the quotas of peer, its
// IP and its prefix. It reports
// whether the stored value changed. refreshed is when the sender last saw
// the record refreshed by its owner (capped at now); zero leaves the
// record's refresh time as it is.
func (d *DHT) acceptFrom(k key.RecordKey, desc *record.Descriptor, subkey uint32, v *record.Value, refreshed time.Time, peer *transport.Peer) (bool, error) {
	if desc == nil {
		return false, fmt.Errorf("%w: no descriptor", ErrBadRequest)
	}
	if err := desc.Verify(); err != nil {
		return false, err
	}
	if desc.Key() != k {
		return false, fmt.Errorf("%w: %s", ErrKeyMismatch, k)
	}
	if v != nil {
		if err := desc.VerifyValue(subkey, v); err != nil {
			return false, err
		}
	}
	if now := time.Now(); refreshed.After(now) {
		refreshed = now
	}
	d.recMu.Lock()
	defer d.recMu.Unlock()
	// The value first: a refusal takes no quota.
	var cur *record.Value
	replace := false
	if v != nil {
		var err error
		if cur, err = d.localValue(k, subkey); err != nil {
			return false, err
		}
		switch {
		case record.Better(cur, v):
			return false, &StaleError{Current: cur}
		case record.Better(v, cur):
			if desc.Schema.MembershipChecked() {
				held := cur
				if subkey != 0 {
					if held, err = d.localValue(k, 0); err != nil {
						return false, err
					}
				}
				if err := d.checkMembership(k, desc, subkey, v, held); err != nil {
					return false, err
				}
			}
			replace = true
		}
	}
	var writes [][2][]byte // key, value
	if ok, err := d.db.Has(descKey(k)); err != nil {
		return false, err
	} else if !ok {
		if peer != nil {
			if err := d.quota.take(*peer, k); err != nil {
				return false, err
			}
		}
		enc, err := record.EncodeDescriptor(desc)
		if err != nil {
			return false, err
		}
		writes = append(writes, [2][]byte{descKey(k), enc})
	}
	changed := false
	if replace {
		enc, err := record.EncodeValue(v)
		if err != nil {
			return false, err
		}
		writes = append(writes, [2][]byte{valueKey(k, subkey), enc})
		changed = true
	}
	if !refreshed.IsZero() && refreshed.After(d.refreshed(k)) {
		writes = append(writes, [2][]byte{metaKey(k), binary.BigEndian.AppendUint64(nil, uint64(refreshed.Unix()))})
	}
	if len(writes) == 0 {
		return false, nil
	}
	b := d.db.NewBatch()
	for _, w := range writes {
		if err := b.Set(w[0], w[1]); err != nil {
			return false, fmt.Errorf("dht: store record %s: %w", k, err)
		}
	}
	// A local write is synced; a copy from a peer need not be: the
	// network holds others, and a crash loses it without corrupting.
	if err := b.Commit(peer == nil); err != nil {
		d.quota.release(k)
		return false, err
	}
	if changed {
		d.notifyWatchers(k, subkey, v)
	}
	return changed, nil
}
