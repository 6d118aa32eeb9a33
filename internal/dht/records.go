package dht

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/store"
)

// Records are kept in the node's Pebble store (see internal/store):
//
//	rec/<key 32>/d            record.EncodeDescriptor
//	rec/<key 32>/s/<sk be32>  record.EncodeValue
//
// Only verified descriptors and values are written, so reads decode without
// re-verifying signatures.

func descKey(k key.RecordKey) []byte {
	return store.Key(store.PrefixRecord, k[:], []byte("/d"))
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
	return v, nil
}

// accept is the storing node's rule, for STORE requests and local writes:
// desc must verify and hash to k, v must verify for subkey; then v is kept
// unless the current value is better (a *StaleError carrying it). An equal
// value is accepted without a write. v may be nil to store only desc.
func (d *DHT) accept(k key.RecordKey, desc *record.Descriptor, subkey uint32, v *record.Value) error {
	if desc == nil {
		return fmt.Errorf("%w: no descriptor", ErrBadRequest)
	}
	if err := desc.Verify(); err != nil {
		return err
	}
	if desc.Key() != k {
		return fmt.Errorf("%w: %s", ErrKeyMismatch, k)
	}
	if v != nil {
		if err := desc.VerifyValue(subkey, v); err != nil {
			return err
		}
	}
	d.recMu.Lock()
	defer d.recMu.Unlock()
	var writes [][2][]byte // key, value
	if ok, err := d.db.Has(descKey(k)); err != nil {
		return err
	} else if !ok {
		enc, err := record.EncodeDescriptor(desc)
		if err != nil {
			return err
		}
		writes = append(writes, [2][]byte{descKey(k), enc})
	}
	if v != nil {
		cur, err := d.localValue(k, subkey)
		if err != nil {
			return err
		}
		switch {
		case record.Better(cur, v):
			return &StaleError{Current: cur}
		case record.Better(v, cur):
			enc, err := record.EncodeValue(v)
			if err != nil {
				return err
			}
			writes = append(writes, [2][]byte{valueKey(k, subkey), enc})
		}
	}
	if len(writes) == 0 {
		return nil
	}
	b := d.db.NewBatch()
	for _, w := range writes {
		if err := b.Set(w[0], w[1]); err != nil {
			return fmt.Errorf("dht: store record %s: %w", k, err)
		}
	}
	return b.Commit(true)
}
