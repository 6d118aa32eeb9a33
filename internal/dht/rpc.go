package dht

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/quic-go/quic-go"
)

// The RPC plumbing: one request per stream, timeouts, and the marks of
// contacts that failed or were seen.

// findNode sends FIND_NODE(target) to c.
func (d *DHT) findNode(ctx context.Context, c Contact, target [32]byte) ([]Contact, error) {
	resp, err := d.call(ctx, c, &request{Op: opFindNode, Target: target[:]})
	if err != nil {
		return nil, err
	}
	if resp.Client {
		return nil, fmt.Errorf("dht: %s: %w", c.ID, errClientPeer)
	}
	if resp.Code != codeOK {
		return nil, &RemoteError{Peer: c.ID, Code: resp.Code, Msg: resp.Msg}
	}
	return fromWire(resp.Closer), nil
}

// Ping checks that c answers.
func (d *DHT) Ping(ctx context.Context, c Contact) error {
	resp, err := d.call(ctx, c, &request{Op: opPing})
	if err == nil && resp.Code != codeOK {
		err = &RemoteError{Peer: c.ID, Code: resp.Code, Msg: resp.Msg}
	}
	return err
}

// call sends one request to c on a new stream and reads the response,
// within RPCTimeout. A transport failure counts against c (unless c's
// resource manager refused the stream: transport.Refused, or the
// caller's own context ended first, by cancellation or by a deadline no
// later than RPCTimeout's): a request that ran out its time, by ctx or
// by the stream deadline set from it, is a timeout, whichever of the two
// fired first. A failure that is sure (fail) evicts
// c from the routing table (table.failed: replaced from the bucket's
// replacement cache, or marked stale), one that is not only marks it
// stale; either leaves it out of reads' lookups for deadTTL, and a sure
// one out of every lookup. An answer marks it seen, unless it carries the
// client flag (then c is removed from the table and remembered as a
// client), and its round trip is a sample of c's RTT estimate (rtt.go).
func (d *DHT) call(ctx context.Context, c Contact, req *request) (*response, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, d.opts.RPCTimeout)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()
	dl, _ := ctx.Deadline()
	dialed := !d.pooled(c.ID)
	t0 := time.Now()
	resp, err := d.roundTrip(ctx, c, req)
	if err != nil {
		if d.ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %v", ErrClosed, err)
		}
		// The request ran out its time either way: ctx's timer, or the
		// stream's deadline (roundTrip sets it to ctx's), whichever fired
		// first; the stream's often does, and ctx.Err is then still nil.
		timedOut := ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)
		// The caller's own end is not c's failure: its cancellation, or
		// its deadline when that came no later than RPCTimeout's.
		callerEnded := parent.Err() != nil
		if pdl, ok := parent.Deadline(); ok && timedOut && !pdl.After(dl) {
			callerEnded = true
		}
		// A node that refused us at one of its limits is alive: it stays.
		if !callerEnded && (ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded)) && !transport.Refused(err) {
			sure := d.fail(c.ID, timedOut)
			switch {
			case d.opts.FixedTimeouts:
				d.table.remove(c.ID)
			case sure:
				d.table.failed(c.ID)
			default:
				d.table.suspect(c.ID)
			}
			d.rtt.forget(c.ID)
			if timedOut && !sure {
				return nil, fmt.Errorf("dht: %s: %w: %w", c, errTimedOut, err)
			}
		}
		return nil, fmt.Errorf("dht: %s: %w", c, err)
	}
	d.rtt.sample(c.ID, time.Since(t0), dialed)
	d.noteClient(c.ID, resp.Client)
	if !resp.Client {
		d.table.seen(c)
	}
	d.markSeen(c.ID)
	return resp, nil
}

// errTimedOut marks a request that ran out RPCTimeout to a node not yet
// sure to be dead (deadMark): the request may be worth once more
// (callAgain).
var errTimedOut = errors.New("no answer within the RPC timeout")

// callAgain is call, sent once more when it ran out RPCTimeout on a node
// not yet sure to be dead. The paths that place a record on nodes a
// lookup has just found alive use it: there a timeout is far more likely
// a moment's overload than a node gone, and leaving the node out puts
// the record where readers do not look.
func (d *DHT) callAgain(ctx context.Context, c Contact, req *request) (*response, error) {
	resp, err := d.call(ctx, c, req)
	if err != nil && errors.Is(err, errTimedOut) && ctx.Err() == nil {
		return d.call(ctx, c, req)
	}
	return resp, err
}

// deadTTL is how long a node whose RPC failed is left out of lookups
// (peers may still list it until they notice too).
const deadTTL = time.Minute

// maxSeenAt bounds the nodes LastSeen remembers; past it, the ones not
// heard from for longest are forgotten first.
const maxSeenAt = 4096

// deadMark is the failure of a node's last request, or its clean
// shutdown. A request that ran out its whole RPCTimeout once is weak
// evidence: on a machine or path overloaded for a moment a live node
// answers that late (measured: TestScale under the race detector with
// two CPU burners marked some of a record's nearest nodes so, and writes
// skipped them), so such a node is only suspected. It is sure to be dead
// after a clean shutdown (PeerShutdown), a request that failed before its
// timeout (the connection closed, the handshake refused), or a second
// failure in a row within deadTTL.
type deadMark struct {
	at   time.Time
	sure bool
}

// fail records that a request to id failed, by running out RPCTimeout
// (timedOut) or otherwise, and reports whether id is now sure to be dead
// (deadMark).
func (d *DHT) fail(id key.NodeID, timedOut bool) (sure bool) {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	now := time.Now()
	sure = !timedOut
	if m, ok := d.dead[id]; ok && now.Sub(m.at) < deadTTL {
		sure = true
	}
	d.setDeadLocked(id, deadMark{at: now, sure: sure})
	return sure
}

func (d *DHT) setDeadLocked(id key.NodeID, m deadMark) {
	if len(d.dead) > 4096 {
		for x, o := range d.dead {
			if m.at.Sub(o.at) > deadTTL {
				delete(d.dead, x)
			}
		}
	}
	d.dead[id] = m
}

// markSeen records that id answered or called: it is not dead, and its
// last-seen time becomes now.
func (d *DHT) markSeen(id key.NodeID) {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	now := time.Now()
	delete(d.dead, id)
	if _, ok := d.seenAt[id]; !ok && len(d.seenAt) >= maxSeenAt {
		var oldest key.NodeID
		var at time.Time
		for x, t := range d.seenAt {
			if at.IsZero() || t.Before(at) {
				oldest, at = x, t
			}
		}
		delete(d.seenAt, oldest)
	}
	d.seenAt[id] = now
	if d.seenWait != nil {
		close(d.seenWait)
		d.seenWait = nil
	}
	d.queueNodeSeen()
}

// PeerShutdown records that node id shut down cleanly (its connection
// closed as its endpoint closed: transport.Endpoint.SetPeerShutdown):
// lookups leave it out, as a node sure to be dead (deadMark), until it
// is heard from again, rather than each waiting out RPCTimeout on it.
func (d *DHT) PeerShutdown(id key.NodeID) {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	d.setDeadLocked(id, deadMark{at: time.Now(), sure: true})
}

// LastSeen returns when node id last answered a request of this node or
// sent it one, during this run; the zero time if it has not. Contacts
// added from outside (Options.Bootstrap, AddContacts) are not seen until
// they answer.
func (d *DHT) LastSeen(id key.NodeID) time.Time {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	return d.seenAt[id]
}

// nextSeen returns a channel closed when a node next answers a request of
// this node or calls it.
func (d *DHT) nextSeen() <-chan struct{} {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	if d.seenWait == nil {
		d.seenWait = make(chan struct{})
	}
	return d.seenWait
}

// isDead reports whether id failed within deadTTL; with sure, only if it
// is sure to be dead (deadMark).
func (d *DHT) isDead(id key.NodeID, sure bool) bool {
	d.deadMu.Lock()
	defer d.deadMu.Unlock()
	m, ok := d.dead[id]
	return ok && time.Since(m.at) < deadTTL && (m.sure || !sure)
}

// unixTime is t in Unix seconds, 0 for the zero time.
func unixTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// roundTrip sends req (with this node's client flag set on a copy: req
// may be shared by concurrent calls) and reads the response.
func (d *DHT) roundTrip(ctx context.Context, c Contact, req *request) (*response, error) {
	msg := *req
	msg.Client = d.client.Load()
	s, err := d.ep.OpenStream(ctx, c.ID, c.Addr, transport.ProtoDHT)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() {
		s.CancelRead(codeCanceled)
		s.CancelWrite(codeCanceled)
	})
	defer stop()
	defer s.CancelRead(transport.CodeNoError)
	if err := transport.WriteMsg(s, &msg); err != nil {
		// A peer may answer before reading the whole request (a refusal:
		// rate limit) and stop reading; its answer is still there to read.
		var se *quic.StreamError
		if !errors.As(err, &se) || !se.Remote {
			s.CancelWrite(codeCanceled)
			return nil, fmt.Errorf("send request: %w", err)
		}
		var resp response
		if rerr := transport.ReadMsg(s, MaxMessageSize, &resp); rerr != nil {
			return nil, fmt.Errorf("send request: %w (and no answer: %v)", err, rerr)
		}
		return &resp, nil
	}
	s.Close()
	var resp response
	if err := transport.ReadMsg(s, MaxMessageSize, &resp); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return &resp, nil
}
