package abi

import (
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/dwebkit/dweb/core"
)

// maxQueued bounds the events waiting for a slow callback; beyond it new
// events are dropped and counted in an events.dropped event.
const maxQueued = 4096

// events queues a node's events and delivers them, one at a time and in
// order, from a single goroutine to the sink (the C callback).
type events struct {
	sink atomic.Pointer[func([]byte)]
	cbMu sync.Mutex // held while the sink runs

	mu      sync.Mutex
	queue   [][]byte
	dropped int
	closed  bool
	wake    chan struct{}
	done    chan struct{}
}

// coreEvent is one of the node's events (core/events.go) as the callback
// gets it: the event's JSON, the shape GET /dweb/v1/events and `dweb
// watch --json` give, with "type" set to its kind like every callback
// event.
type coreEvent struct {
	Type string `json:"type"`
	core.Event
}

// forwardEvents queues the node's events for the callback as they happen,
// until the node closes the subscription.
func (n *node) forwardEvents(sub *core.Subscription) {
	defer close(n.fwd)
	for ev := range sub.C {
		n.ev.emit(coreEvent{Type: ev.Kind, Event: ev})
	}
}

type eventsDropped struct {
	Type  string `json:"type"` // "events.dropped"
	Count int    `json:"count"`
}

func newEvents() *events {
	e := &events{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go e.loop()
	return e
}

// emit queues v's JSON. Without a sink the event is discarded.
func (e *events) emit(v any) {
	if e.sink.Load() == nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	e.mu.Lock()
	switch {
	case e.closed:
	case len(e.queue) >= maxQueued:
		e.dropped++
	default:
		e.queue = append(e.queue, b)
	}
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *events) setSink(s func([]byte), fromSink bool) {
	var p *func([]byte)
	if s != nil {
		p = &s
	}
	if fromSink {
		e.sink.Store(p)
		return
	}
	e.cbMu.Lock()
	e.sink.Store(p)
	e.cbMu.Unlock()
}

func (e *events) loop() {
	defer close(e.done)
	for {
		<-e.wake
		for {
			e.mu.Lock()
			q, dropped, closed := e.queue, e.dropped, e.closed
			e.queue, e.dropped = nil, 0
			e.mu.Unlock()
			if dropped > 0 {
				b, _ := json.Marshal(eventsDropped{Type: "events.dropped", Count: dropped})
				q = append([][]byte{b}, q...)
			}
			for _, b := range q {
				e.deliver(b)
			}
			if len(q) == 0 {
				if closed {
					return
				}
				break
			}
		}
	}
}

func (e *events) deliver(b []byte) {
	e.cbMu.Lock()
	defer e.cbMu.Unlock()
	defer func() { recover() }() // a panicking sink loses its event, not the process
	if s := e.sink.Load(); s != nil {
		(*s)(b)
	}
}

// close delivers what is queued, then stops the goroutine and waits for it.
func (e *events) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	<-e.done
}
