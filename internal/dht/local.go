package dht

import (
	"context"
	"fmt"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

// GetLocal is Get without the network: the descriptor and the best value of
// a subkey as this node holds them, kept current by its watches, its own
// writes and the stores it holds for others. ErrNotFound if the descriptor
// is not held; a nil value (no error) if the subkey is not. ctx is unused;
// it is there so GetLocal can stand where Get does.
func (d *DHT) GetLocal(_ context.Context, k key.RecordKey, subkey uint32) (*record.Descriptor, *record.Value, error) {
	desc, err := d.localDesc(k)
	if err != nil {
		return nil, nil, err
	}
	if desc == nil {
		return nil, nil, fmt.Errorf("%w: %s held locally", ErrNotFound, k)
	}
	v, err := d.localValue(k, subkey)
	if err != nil {
		return nil, nil, err
	}
	return desc, v, nil
}

// RecordsHeld returns how many records (descriptors) this node keeps in
// its store: those it holds for the DHT, its own and those it read.
func (d *DHT) RecordsHeld() (int, error) {
	ks, err := d.localKeys()
	return len(ks), err
}
