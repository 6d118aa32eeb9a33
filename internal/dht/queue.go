package dht

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
)

// Offline writes. A Set that reaches no other node is kept under
//
//	dhtq/<key 32><sk be32>  CBOR {1: record.EncodeDescriptor, 2: record.EncodeValue}
//
// (one entry per subkey: a later write of the same subkey replaces it) and
// sent by flushQueue after Bootstrap and every Options.QueueRetry until a
// holder accepts it or a better value turns up. The entry is written with
// sync, so it survives a crash or restart.

// queuePrefix is the store prefix of the offline-write queue (documented in
// internal/store's prefix table).
const queuePrefix = "dhtq/"

// WriteState is what became of one of this node's writes (Options.OnWrite).
type WriteState uint8

// States of a write.
const (
	// WriteSent: a holder accepted it, at once (Set) or from the queue.
	WriteSent WriteState = iota + 1
	// WriteQueued: no node took it; it waits in the offline queue.
	WriteQueued
	// WriteSuperseded: it left the queue unsent because a better value of
	// its subkey is known (a later write of this node went instead, or a
	// holder has one).
	WriteSuperseded
)

func (s WriteState) String() string {
	switch s {
	case WriteSent:
		return "sent"
	case WriteQueued:
		return "queued"
	case WriteSuperseded:
		return "superseded"
	}
	return "unknown"
}

// WriteEvent is one change of a write's state: the subkey of record Key
// written with sequence number Seq.
type WriteEvent struct {
	Key    key.RecordKey
	Subkey uint32
	Seq    uint64
	State  WriteState
}

// noteWrite tells Options.OnWrite.
func (d *DHT) noteWrite(k key.RecordKey, subkey uint32, seq uint64, s WriteState) {
	if d.opts.OnWrite != nil {
		d.opts.OnWrite(WriteEvent{Key: k, Subkey: subkey, Seq: seq, State: s})
	}
}

type queued struct {
	Desc  []byte `cbor:"1,keyasint"`
	Value []byte `cbor:"2,keyasint"`
}

func queueKey(k key.RecordKey, subkey uint32) []byte {
	return store.Key(queuePrefix, k[:], binary.BigEndian.AppendUint32(nil, subkey))
}

// enqueue keeps v for sending when the network is back.
func (d *DHT) enqueue(desc *record.Descriptor, subkey uint32, v *record.Value) error {
	de, err := record.EncodeDescriptor(desc)
	if err != nil {
		return err
	}
	ve, err := record.EncodeValue(v)
	if err != nil {
		return err
	}
	b, err := transport.Marshal(&queued{Desc: de, Value: ve})
	if err != nil {
		return err
	}
	if err := d.db.Set(queueKey(desc.Key(), subkey), b, true); err != nil {
		return fmt.Errorf("dht: queue offline write: %w", err)
	}
	d.m.Queued.Set(float64(d.Pending()))
	return nil
}

// Pending returns the number of offline writes waiting for the network.
func (d *DHT) Pending() int {
	n := 0
	d.db.Scan([]byte(queuePrefix), func(_, _ []byte) error { n++; return nil })
	return n
}

// kickQueue wakes the queue loop.
func (d *DHT) kickQueue() {
	select {
	case d.queueKick <- struct{}{}:
	default:
	}
}

// flushQueue sends the queued writes. An entry leaves the queue when a
// holder accepted it, when a better value is known (locally or by a
// holder: the write lost anyway), or when it no longer decodes or verifies.
// It stops at the first write that reaches no node.
func (d *DHT) flushQueue(ctx context.Context) error {
	type entry struct {
		k  []byte
		sk uint32
		q  queued
	}
	var entries []entry
	err := d.db.Scan([]byte(queuePrefix), func(kk, vv []byte) error {
		e := entry{k: bytes.Clone(kk)}
		if len(kk) != len(queuePrefix)+key.Size+4 || transport.Unmarshal(vv, &e.q) != nil {
			e.q = queued{} // undecodable: dropped below
		} else {
			e.sk = binary.BigEndian.Uint32(kk[len(kk)-4:])
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil || len(entries) == 0 {
		return err
	}
	if d.table.size() == 0 {
		if err := d.Bootstrap(ctx); err != nil {
			return err
		}
	}
	defer func() { d.m.Queued.Set(float64(d.Pending())) }()
	for _, e := range entries {
		desc, derr := record.DecodeDescriptor(e.q.Desc)
		v, verr := record.DecodeValue(e.q.Value)
		if derr != nil || verr != nil || desc.Verify() != nil || desc.VerifyValue(e.sk, v) != nil {
			d.log.Warn("dropping undecodable offline write", "key", fmt.Sprintf("%x", e.k))
			d.db.Delete(e.k, true)
			continue
		}
		k := desc.Key()
		queuedSeq := v.Seq
		// The node keeps its own copy too (it may have lost it); a newer
		// local value goes instead of the queued one.
		if err := d.accept(k, desc, e.sk, v); errors.Is(err, ErrStale) {
			var se *StaleError
			errors.As(err, &se)
			v = se.Current
		}
		err := d.publish(ctx, desc, e.sk, v, time.Now())
		switch {
		case err == nil, errors.Is(err, ErrStale):
			if err := d.db.Delete(e.k, true); err != nil {
				return err
			}
			if err == nil && v.Seq == queuedSeq {
				d.noteWrite(k, e.sk, queuedSeq, WriteSent)
			} else {
				d.noteWrite(k, e.sk, queuedSeq, WriteSuperseded)
			}
			d.log.Info("offline write sent", "record", k.String(), "subkey", e.sk, "seq", v.Seq)
		case errors.Is(err, ErrNoPeers):
			return err
		default:
			d.log.Debug("offline write", "record", k.String(), "subkey", e.sk, "err", err)
		}
	}
	return nil
}
