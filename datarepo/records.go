package datarepo

import (
	"context"
	"errors"
	"fmt"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

// Records is what a data repo needs from the DHT: reading and writing
// signed subkey values of a record. *dht.DHT implements it.
type Records interface {
	Set(ctx context.Context, desc *record.Descriptor, subkey uint32, v *record.Value) error
	Get(ctx context.Context, k key.RecordKey, subkey uint32) (*record.Descriptor, *record.Value, error)
}

// maxWriteTries bounds the read-increment-write loop of WriteSealed when
// another writer keeps winning the seq race.
const maxWriteTries = 4

// WriteSealed encrypts plaintext with keys for (desc's record, subkey),
// signs it with writer at the next seq and stores it in the DHT. When a
// holder has a newer value (dht.ErrStale) it re-reads and retries, at most
// maxWriteTries times. It returns the seq written. When the current value
// is already at record.MaxSeq there is no next seq: the error wraps
// record.ErrSeqRange and nothing is written.
//
// Shared by datarepo and group: both keep encrypted values in records whose
// writers are known keypairs.
func WriteSealed(ctx context.Context, recs Records, desc *record.Descriptor, subkey uint32, writer key.Keypair, keys record.Sealer, plaintext []byte) (uint64, error) {
	k := desc.Key()
	sealed, err := keys.Seal(k, subkey, plaintext)
	if err != nil {
		return 0, fmt.Errorf("seal subkey %d of %s: %w", subkey, k, err)
	}
	var next uint64
	_, cur, err := recs.Get(ctx, k, subkey)
	switch {
	case err == nil && cur != nil:
		if next, err = record.NextSeq(cur.Seq); err != nil {
			return 0, fmt.Errorf("write subkey %d of %s: %w", subkey, k, err)
		}
	case err == nil, errors.Is(err, dht.ErrNotFound):
		next = 0
	default:
		return 0, fmt.Errorf("read subkey %d of %s: %w", subkey, k, err)
	}
	for try := 0; ; try++ {
		v, err := record.NewValue(k, subkey, next, sealed, writer)
		if err != nil {
			return 0, fmt.Errorf("sign subkey %d of %s: %w", subkey, k, err)
		}
		err = recs.Set(ctx, desc, subkey, v)
		if err == nil {
			return next, nil
		}
		var stale *dht.StaleError
		if !errors.As(err, &stale) || try+1 >= maxWriteTries {
			return 0, fmt.Errorf("write subkey %d of %s: %w", subkey, k, err)
		}
		if next, err = record.NextSeq(stale.Current.Seq); err != nil {
			return 0, fmt.Errorf("write subkey %d of %s: %w", subkey, k, err)
		}
	}
}

// ErrTaken is returned by CreateSealed for a subkey that already holds a
// value.
var ErrTaken = errors.New("subkey already written")

// CreateSealed writes plaintext, encrypted with keys and signed by
// writer, as the first value (seq 0) of a subkey that holds none: a claim
// of a free slot. A subkey some holder already has a value for fails with
// an error wrapping ErrTaken, and nothing is overwritten; WriteSealed
// would take the next seq and evict the value there. Two writers that
// create at once may both succeed at different holders: the conflict rule
// keeps one, so a claimer re-reads to learn whether it won.
func CreateSealed(ctx context.Context, recs Records, desc *record.Descriptor, subkey uint32, writer key.Keypair, keys record.Sealer, plaintext []byte) error {
	k := desc.Key()
	sealed, err := keys.Seal(k, subkey, plaintext)
	if err != nil {
		return fmt.Errorf("seal subkey %d of %s: %w", subkey, k, err)
	}
	v, err := record.NewValue(k, subkey, 0, sealed, writer)
	if err != nil {
		return fmt.Errorf("sign subkey %d of %s: %w", subkey, k, err)
	}
	if err := recs.Set(ctx, desc, subkey, v); err != nil {
		var stale *dht.StaleError
		if errors.As(err, &stale) {
			return fmt.Errorf("create subkey %d of %s: %w (holder has seq %d)", subkey, k, ErrTaken, stale.Current.Seq)
		}
		return fmt.Errorf("create subkey %d of %s: %w", subkey, k, err)
	}
	return nil
}

// ReadSealed reads and decrypts a subkey. A subkey never written returns
// (nil, nil).
func ReadSealed(ctx context.Context, recs Records, k key.RecordKey, subkey uint32, keys record.Sealer) ([]byte, error) {
	_, v, err := recs.Get(ctx, k, subkey)
	if err != nil {
		return nil, fmt.Errorf("read subkey %d of %s: %w", subkey, k, err)
	}
	if v == nil {
		return nil, nil
	}
	pt, err := keys.Open(k, subkey, v.Data)
	if err != nil {
		return nil, fmt.Errorf("decrypt subkey %d of %s: %w", subkey, k, err)
	}
	return pt, nil
}
