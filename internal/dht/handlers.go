package dht

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/quic-go/quic-go"
)

// The responder's side: one inbound stream per request (serve), one
// handler per message type (serveFindNode, serveGet, serveStore,
// serveInspect here; serveWatch and serveValueChanged in watch.go,
// serveHandoff in replicate.go).

// codeCanceled resets a stream whose request was given up.
const codeCanceled quic.StreamErrorCode = 0x100

// serve handles one inbound DHT stream.
func (d *DHT) serve(ctx context.Context, peer transport.Peer, s Stream) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.inflight.Add(1)
	d.mu.Unlock()
	defer d.inflight.Done()

	deadline := time.Now().Add(d.opts.RPCTimeout)
	s.SetDeadline(transport.Within(ctx, deadline))
	if err := d.rate.Allow(peer.ID, peer.Addr.Addr(), time.Now()); err != nil {
		d.m.refused(ReasonRateLimited)
		transport.WriteMsg(s, &response{Code: codeRateLimited, Msg: fmt.Sprintf("%v: %v", ErrRateLimited, err), Client: d.client.Load()})
		return
	}
	var req request
	if err := transport.ReadMsg(s, MaxMessageSize, &req); err != nil {
		d.log.Debug("bad request", "peer", peer.ID.String(), "err", err)
		if !errors.Is(err, io.EOF) {
			reason := refusalReason(err)
			if reason == "" {
				reason = ReasonMalformed
			}
			d.m.refused(reason)
			code := errCode(err)
			if code == codeInternal {
				code = codeBadRequest
			}
			transport.WriteMsg(s, &response{Code: code, Msg: "bad request: " + err.Error(), Client: d.client.Load()})
		}
		return
	}
	transport.Opened(ctx)
	s.SetDeadline(deadline)
	// The caller's packets come from its one UDP socket, so the address
	// seen is the address it listens on; a client is not dialable there
	// and stays out of the table.
	d.noteClient(peer.ID, req.Client)
	if !req.Client {
		d.table.seen(Contact{ID: peer.ID, Addr: peer.Addr})
	}
	d.markSeen(peer.ID)
	resp := d.handlePeer(req, peer)
	resp.Client = d.client.Load()
	if dl := time.Duration(d.answerDelay.Load()); dl > 0 {
		select {
		case <-time.After(dl):
		case <-ctx.Done():
		}
	}
	if err := transport.WriteMsg(s, resp); err != nil {
		d.log.Debug("write response", "peer", peer.ID.String(), "err", err)
	}
}

// handle computes the response to req from the node from (address
// unknown: watches it asks for cannot be served).
func (d *DHT) handle(req request, from key.NodeID) *response {
	return d.handlePeer(req, transport.Peer{ID: from})
}

// handlePeer computes the response to req from peer, counting the request
// and any refusal in the metrics.
func (d *DHT) handlePeer(req request, peer transport.Peer) *response {
	from := peer.ID
	fail := func(err error) *response {
		if reason := refusalReason(err); reason != "" {
			d.m.refused(reason)
		}
		return &response{Code: errCode(err), Msg: err.Error()}
	}
	if name, ok := opNames[req.Op]; ok {
		d.m.Requests.WithLabelValues(name).Inc()
	}
	switch req.Op {
	case opPing:
		return &response{}
	case opFindNode:
		return d.serveFindNode(req, from, fail)
	case opGet:
		return d.serveGet(req, from, fail)
	case opStore:
		return d.serveStore(req, peer, fail)
	case opInspect:
		return d.serveInspect(req, fail)
	case opWatch:
		return d.serveWatch(req, peer, fail)
	case opValueChanged:
		return d.serveValueChanged(req, peer, fail)
	case opHandoff:
		return d.serveHandoff(peer, req.Client)
	}
	return fail(fmt.Errorf("%w: unknown op %d", ErrBadRequest, req.Op))
}

// serveFindNode answers FIND_NODE: the K contacts nearest the target.
func (d *DHT) serveFindNode(req request, from key.NodeID, fail func(error) *response) *response {
	t, err := target32(req.Target)
	if err != nil {
		return fail(err)
	}
	return &response{Closer: toWire(d.table.closest(t, d.opts.K, from))}
}

// serveGet answers GET: the nearest contacts, and the record's descriptor
// (when asked) and the subkey's value when this node holds them.
func (d *DHT) serveGet(req request, from key.NodeID, fail func(error) *response) *response {
	t, err := target32(req.Target)
	if err != nil {
		return fail(err)
	}
	k := key.RecordKey(t)
	resp := &response{Closer: toWire(d.table.closest(t, d.opts.K, from))}
	desc, err := d.localDesc(k)
	if err != nil {
		d.log.Error("read record", "record", k.String(), "err", err)
		return fail(err)
	}
	if desc == nil {
		return resp
	}
	if req.WantDesc {
		if resp.Desc, err = record.EncodeDescriptor(desc); err != nil {
			return fail(err)
		}
	}
	v, err := d.localValue(k, req.Subkey)
	if err != nil {
		d.log.Error("read record", "record", k.String(), "err", err)
		return fail(err)
	}
	if v != nil {
		if resp.Value, err = record.EncodeValue(v); err != nil {
			return fail(err)
		}
	}
	return resp
}

// serveStore answers STORE: the descriptor and value validated and kept
// (acceptFrom), a stale write answered with the value held.
func (d *DHT) serveStore(req request, peer transport.Peer, fail func(error) *response) *response {
	t, err := target32(req.Target)
	if err != nil {
		return fail(err)
	}
	k := key.RecordKey(t)
	desc, err := record.DecodeDescriptor(req.Desc)
	if err != nil {
		return fail(err)
	}
	var v *record.Value
	if req.Value != nil {
		if v, err = record.DecodeValue(req.Value); err != nil {
			return fail(err)
		}
	}
	var refreshed time.Time
	if req.Refreshed > 0 {
		refreshed = time.Unix(req.Refreshed, 0)
		if time.Since(refreshed) > d.opts.Expiry {
			// A copy of a record its owner stopped refreshing: it has
			// expired here too (or will), so it is not taken back.
			return &response{Code: codeNotFound, Msg: "record expired"}
		}
	}
	_, err = d.acceptFrom(k, desc, req.Subkey, v, refreshed, &peer)
	var se *StaleError
	if errors.As(err, &se) {
		resp := fail(err)
		if resp.Value, err = record.EncodeValue(se.Current); err != nil {
			return fail(err)
		}
		return resp
	}
	if err != nil {
		d.log.Debug("store refused", "peer", peer.ID.String(), "record", k.String(), "subkey", req.Subkey, "err", err)
		return fail(err)
	}
	return &response{}
}

// serveInspect answers INSPECT: whether this node holds the record and the
// seq of each subkey it holds, bumping the record's refresh time when the
// owner's republish says so.
func (d *DHT) serveInspect(req request, fail func(error) *response) *response {
	t, err := target32(req.Target)
	if err != nil {
		return fail(err)
	}
	k := key.RecordKey(t)
	has, err := d.db.Has(descKey(k))
	if err != nil || !has {
		return &response{}
	}
	seqs, err := d.localSeqs(k, nil)
	if err != nil {
		d.log.Error("read record", "record", k.String(), "err", err)
		return fail(err)
	}
	if req.Refreshed > 0 {
		if err := d.bumpRefreshed(k, time.Unix(req.Refreshed, 0)); err != nil {
			d.log.Warn("refresh record", "record", k.String(), "err", err)
		}
	}
	return &response{Has: true, Seqs: seqs}
}
