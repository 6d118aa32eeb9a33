package abi

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// progressEvery is the shortest interval between two op.progress events of
// one operation; the final progress (done == total) is always sent.
const progressEvery = 100 * time.Millisecond

var errOpCancelled = errors.New("cancelled by op.cancel")

// op is one running long operation.
type op struct {
	id      int64
	method  string
	group   string
	name    string
	started time.Time
	cancel  context.CancelCauseFunc
	done    atomic.Int64
	total   atomic.Int64
}

type opStatus struct {
	Op        int64     `json:"op"`
	Method    string    `json:"method"`
	Group     string    `json:"group,omitempty"`
	Name      string    `json:"name,omitempty"`
	Done      int64     `json:"done"`
	Total     int64     `json:"total"`
	StartedAt time.Time `json:"started_at"`
}

func (o *op) status() opStatus {
	return opStatus{Op: o.id, Method: o.method, Group: o.group, Name: o.name,
		Done: o.done.Load(), Total: o.total.Load(), StartedAt: o.started}
}

// Events of operations.
type (
	opProgress struct {
		Type   string `json:"type"` // "op.progress"
		Op     int64  `json:"op"`
		Method string `json:"method"`
		Done   int64  `json:"done"`  // bytes
		Total  int64  `json:"total"` // bytes
	}
	opDone struct {
		Type   string `json:"type"` // "op.done"
		Op     int64  `json:"op"`
		Method string `json:"method"`
		Result any    `json:"result"`
	}
	opFailed struct {
		Type   string    `json:"type"` // "op.failed"
		Op     int64     `json:"op"`
		Method string    `json:"method"`
		Error  ErrorJSON `json:"error"`
	}
	groupChanged struct {
		Type  string `json:"type"` // "group.changed"
		Group string `json:"group"`
		Files int    `json:"files"`
	}
)

// startOp runs fn in its own goroutine as operation method and returns its
// ID (> 0, unique in the process). fn's context ends on op.cancel or
// Close. Exactly one op.done or op.failed event ends every operation; it is
// queued after the operation left the registry, so sync.status and the
// stats no longer count it.
func (n *node) startOp(method, group, name string, fn func(ctx context.Context, progress func(done, total int64)) (any, error)) (int64, error) {
	if !n.enter() {
		return 0, Errorf(CodeClosed, "handle %d is closing", n.h)
	}
	ctx, cancel := context.WithCancelCause(n.ctx)
	o := &op{id: nextOp.Add(1), method: method, group: group, name: name, started: time.Now().UTC(), cancel: cancel}
	n.mu.Lock()
	n.ops[o.id] = o
	n.mu.Unlock()
	go func() {
		defer n.inflight.Done()
		defer cancel(nil)
		var last time.Time
		progress := func(done, total int64) {
			o.done.Store(done)
			o.total.Store(total)
			if now := time.Now(); done == total || now.Sub(last) >= progressEvery {
				last = now
				n.ev.emit(opProgress{Type: "op.progress", Op: o.id, Method: method, Done: done, Total: total})
			}
		}
		res, err := runOp(ctx, fn, progress)
		n.mu.Lock()
		delete(n.ops, o.id)
		n.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil && CodeOf(err) != CodeInternal {
				err = &Error{Code: CodeCancelled, Err: context.Cause(ctx)}
			}
			n.setErr(err)
			n.ev.emit(opFailed{Type: "op.failed", Op: o.id, Method: method, Error: toJSON(err)})
			return
		}
		if res == nil {
			res = emptyResult{}
		}
		n.ev.emit(opDone{Type: "op.done", Op: o.id, Method: method, Result: res})
	}()
	return o.id, nil
}

func runOp(ctx context.Context, fn func(context.Context, func(int64, int64)) (any, error), progress func(int64, int64)) (res any, err error) {
	defer func() {
		if v := recover(); v != nil {
			res, err = nil, Recovered(v)
		}
	}()
	return fn(ctx, progress)
}
