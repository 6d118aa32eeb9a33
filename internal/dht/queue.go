package dht

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
// (one entry per subkey: a later write of the same subkey replaces it;
// field 3, when the write was queued, Unix ms) and sent by flushQueue
// until a holder accepts it or a better value turns up. The entry is
// written with sync, so it survives a crash or restart. SetQueued puts a
// write there without trying the network first.
//
// The queue loop (queueLoop) sends it at start, after every Bootstrap,
// after every SetQueued, and on a timer: a pass that left writes behind is
// retried queueRetryMin later, then twice as long each time, up to
// Options.QueueRetry; a pass that sent everything waits QueueRetry. While
// a pass found no node to send to, a node answering or calling this one
// wakes the queue at once (no sooner than queueRetryMin after the last
// pass), so a write goes out as soon as the network is back. Close stops
// it; the next run goes on from the store. FlushQueue runs a pass at
// once, one at a time with the loop's.

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
	Since int64  `cbor:"3,keyasint,omitempty"` // when queued, Unix ms; 0: by an older version
}

// queueRetryMin is the first retry interval of a pass that left writes
// behind, and the least time between two passes woken by nodes seen.
const queueRetryMin = time.Second

// queueState is the queue loop's view of its retries.
type queueState struct {
	pass    sync.Mutex  // one pass at a time: the loop's or FlushQueue's
	stalled atomic.Bool // the last pass found no node to send to
	entryMu sync.Mutex  // serialises writing an entry with removing it (dequeue)

	mu       sync.Mutex
	tries    map[string]int // failed tries of each entry, by store key
	lastErr  string         // why the last pass left writes behind; "" if it did not
	lastPass time.Time
	nextPass time.Time // zero: no timer, only wake-ups
}

// QueuedWrite is one write of the offline queue (Queue): the subkey of
// record Key at sequence number Seq.
type QueuedWrite struct {
	Key    key.RecordKey
	Subkey uint32
	Seq    uint64
	Since  time.Time // when it was queued; zero if by an older version
	// Tries counts the passes of the queue, this run, that tried to send
	// it and failed; LastError says why the last pass left writes behind.
	Tries     int
	LastError string
	NextTry   time.Time // the next timed pass; zero: none planned (a wake-up sends it)
}

// SetQueued is Set without waiting for the network: it checks v and
// stores it locally, marks the record as written by this node, puts the
// write in the offline queue and wakes the queue, which sends it in the
// background. Options.OnWrite hears WriteQueued before SetQueued returns,
// then WriteSent or WriteSuperseded. Invalid input fails as Set does; a
// better value already held locally is a *StaleError (errors.Is ErrStale).
func (d *DHT) SetQueued(desc *record.Descriptor, subkey uint32, v *record.Value) error {
	if desc == nil || v == nil {
		return fmt.Errorf("%w: SetQueued needs a descriptor and a value", ErrBadRequest)
	}
	k := desc.Key()
	if _, err := d.acceptFrom(k, desc, subkey, v, time.Now(), nil); err != nil {
		return fmt.Errorf("dht: set %s/%d: %w", k, subkey, err)
	}
	if err := d.db.Set(pubKey(k), nil, true); err != nil {
		return fmt.Errorf("dht: set %s/%d: %w", k, subkey, err)
	}
	if err := d.enqueue(desc, subkey, v); err != nil {
		return err
	}
	d.noteWrite(k, subkey, v.Seq, WriteQueued)
	d.kickQueue()
	return nil
}

// Queue lists the writes waiting in the offline queue, in store order.
func (d *DHT) Queue() ([]QueuedWrite, error) {
	d.qs.mu.Lock()
	defer d.qs.mu.Unlock()
	var out []QueuedWrite
	err := d.db.Scan([]byte(queuePrefix), func(kk, vv []byte) error {
		var q queued
		if len(kk) != len(queuePrefix)+key.Size+4 || transport.Unmarshal(vv, &q) != nil {
			return nil // undecodable: the next pass drops it
		}
		v, err := record.DecodeValue(q.Value)
		if err != nil {
			return nil
		}
		w := QueuedWrite{
			Key:       key.RecordKey(kk[len(queuePrefix) : len(queuePrefix)+key.Size]),
			Subkey:    binary.BigEndian.Uint32(kk[len(kk)-4:]),
			Seq:       v.Seq,
			Tries:     d.qs.tries[string(kk)],
			LastError: d.qs.lastErr,
			NextTry:   d.qs.nextPass,
		}
		if q.Since > 0 {
			w.Since = time.UnixMilli(q.Since)
		}
		out = append(out, w)
		return nil
	})
	return out, err
}

// queueNodeSeen wakes a queue that last found no node to send to, now
// that one answered or called.
func (d *DHT) queueNodeSeen() {
	if !d.qs.stalled.Load() {
		return
	}
	d.qs.mu.Lock()
	soon := time.Since(d.qs.lastPass) < queueRetryMin
	d.qs.mu.Unlock()
	if !soon {
		d.kickQueue()
	}
}

// queueLoop runs the queue's passes until Close (the schedule is in the
// comment at the top of this file). A negative Options.QueueRetry plans
// no timed pass; wake-ups still run one.
func (d *DHT) queueLoop() {
	retry := queueRetryMin
	t := time.NewTimer(queueRetryMin)
	defer t.Stop()
	if d.opts.QueueRetry < 0 {
		t.Stop()
	}
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		case <-d.queueKick:
		}
		_, err := d.flushQueue(d.ctx)
		if d.ctx.Err() != nil {
			return
		}
		left := d.Pending()
		now := time.Now()
		next := d.opts.QueueRetry
		d.qs.mu.Lock()
		d.qs.lastPass = now
		d.qs.lastErr = ""
		if err != nil || left > 0 {
			next = min(retry, d.opts.QueueRetry)
			retry = min(2*retry, max(d.opts.QueueRetry, queueRetryMin))
			d.qs.lastErr = fmt.Sprintf("%d writes not sent", left)
			if err != nil {
				d.qs.lastErr = err.Error()
			}
			d.log.Debug("offline queue", "left", left, "retry in", next, "err", err)
		} else {
			retry = queueRetryMin
		}
		d.qs.stalled.Store(errors.Is(err, ErrNoPeers))
		d.qs.nextPass = time.Time{}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		if next > 0 {
			d.qs.nextPass = now.Add(next)
			t.Reset(next)
		}
		d.qs.mu.Unlock()
	}
}

// dequeue removes the entry at store key k if it still holds raw: a write
// queued since, for the same subkey, stays to be sent.
func (d *DHT) dequeue(k, raw []byte) error {
	d.qs.entryMu.Lock()
	defer d.qs.entryMu.Unlock()
	cur, err := d.db.Get(k)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, raw) {
		return nil
	}
	d.queueForget(k)
	return d.db.Delete(k, true)
}

// queueTried counts a failed try of the entries at store keys ks.
func (d *DHT) queueTried(ks ...[]byte) {
	d.qs.mu.Lock()
	defer d.qs.mu.Unlock()
	if d.qs.tries == nil {
		d.qs.tries = map[string]int{}
	}
	for _, k := range ks {
		d.qs.tries[string(k)]++
	}
}

// queueForget drops the try count of the entry at store key k (sent,
// superseded, dropped or replaced by a newer write).
func (d *DHT) queueForget(k []byte) {
	d.qs.mu.Lock()
	defer d.qs.mu.Unlock()
	delete(d.qs.tries, string(k))
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
	b, err := transport.Marshal(&queued{Desc: de, Value: ve, Since: time.Now().UnixMilli()})
	if err != nil {
		return err
	}
	qk := queueKey(desc.Key(), subkey)
	d.qs.entryMu.Lock()
	err = d.db.Set(qk, b, true)
	d.qs.entryMu.Unlock()
	if err != nil {
		return fmt.Errorf("dht: queue offline write: %w", err)
	}
	d.queueForget(qk)
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

// FlushQueue runs one pass of the offline queue now, as the queue loop
// does on its timer (the schedule is in the comment at the top of
// queue.go): each queued write is sent to the R nearest nodes of its
// record, by a fresh lookup, within ctx. It returns how many writes left
// the queue (a holder accepted them, or a better value of their subkey
// was known and went instead: WriteSent or WriteSuperseded), and how many
// are still queued after the pass (Pending). err is the first error that
// ended the pass early: ErrNoPeers when a write reached no node (the
// writes after it are not tried), ctx's error, or the store's; a write
// that failed otherwise stays queued without ending the pass. A pass of
// the loop running at the time is waited for first. The loop's own
// schedule is unchanged: a program that sets Options.QueueRetry < 0 (no
// timed passes) drives the queue with this.
func (d *DHT) FlushQueue(ctx context.Context) (sent, left int, err error) {
	sent, err = d.flushQueue(ctx)
	return sent, d.Pending(), err
}

// flushQueue sends the queued writes and returns how many left the
// queue. An entry leaves the queue when a holder accepted it, when a
// better value is known (locally or by a holder: the write lost anyway),
// or when it no longer decodes or verifies (not counted in sent). It
// stops at the first write that reaches no node. Passes run one at a
// time.
func (d *DHT) flushQueue(ctx context.Context) (sent int, _ error) {
	d.qs.pass.Lock()
	defer d.qs.pass.Unlock()
	type entry struct {
		k   []byte
		raw []byte
		sk  uint32
		q   queued
	}
	var entries []entry
	err := d.db.Scan([]byte(queuePrefix), func(kk, vv []byte) error {
		e := entry{k: bytes.Clone(kk), raw: bytes.Clone(vv)}
		if len(kk) != len(queuePrefix)+key.Size+4 || transport.Unmarshal(vv, &e.q) != nil {
			e.q = queued{} // undecodable: dropped below
		} else {
			e.sk = binary.BigEndian.Uint32(kk[len(kk)-4:])
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil || len(entries) == 0 {
		return 0, err
	}
	if d.table.size() == 0 {
		if err := d.Bootstrap(ctx); err != nil {
			for _, e := range entries {
				d.queueTried(e.k)
			}
			return 0, err
		}
	}
	defer func() { d.m.Queued.Set(float64(d.Pending())) }()
	for i, e := range entries {
		desc, derr := record.DecodeDescriptor(e.q.Desc)
		v, verr := record.DecodeValue(e.q.Value)
		if derr != nil || verr != nil || desc.Verify() != nil || desc.VerifyValue(e.sk, v) != nil {
			d.log.Warn("dropping undecodable offline write", "key", fmt.Sprintf("%x", e.k))
			d.dequeue(e.k, e.raw)
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
			if err := d.dequeue(e.k, e.raw); err != nil {
				return sent, err
			}
			sent++
			if err == nil && v.Seq == queuedSeq {
				d.noteWrite(k, e.sk, queuedSeq, WriteSent)
			} else {
				d.noteWrite(k, e.sk, queuedSeq, WriteSuperseded)
			}
			d.log.Info("offline write sent", "record", k.String(), "subkey", e.sk, "seq", v.Seq)
		case errors.Is(err, ErrNoPeers):
			for _, e := range entries[i:] {
				d.queueTried(e.k)
			}
			return sent, err
		default:
			d.queueTried(e.k)
			d.log.Debug("offline write", "record", k.String(), "subkey", e.sk, "err", err)
			if ctx.Err() != nil {
				return sent, ctx.Err()
			}
		}
	}
	return sent, nil
}
