package core

import (
	"slices"
	"sync"
	"time"

	"github.com/dwebkit/dweb/group"
	"github.com/dwebkit/dweb/internal/key"
)

// providerHealth remembers, per member node, how this node's last tunnel
// openings to it went: when one last succeeded and how long openings take,
// when one last failed or the node shut down cleanly. Downloads ask the
// nodes that answered first, fastest first, and leave out a node that is
// down (until downFor passes or it answers again), so no download waits
// twice on a dead one. In memory: a restart starts afresh.
type providerHealth struct {
	mu    sync.Mutex
	nodes map[key.NodeID]*nodeHealth
}

type nodeHealth struct {
	ok   time.Time     // last tunnel opened
	down time.Time     // last opening failed, or the node shut down
	rtt  time.Duration // moving average of opening times
}

// downFor is how long a node whose tunnel could not be opened, or that
// shut down, is left out of downloads.
const downFor = 30 * time.Second

func (h *providerHealth) node(id key.NodeID) *nodeHealth {
	if h.nodes == nil {
		h.nodes = make(map[key.NodeID]*nodeHealth)
	}
	n := h.nodes[id]
	if n == nil {
		if len(h.nodes) >= 4096 {
			clear(h.nodes)
		}
		n = &nodeHealth{}
		h.nodes[id] = n
	}
	return n
}

// opened records a tunnel to id opened in took.
func (h *providerHealth) opened(id key.NodeID, took time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.node(id)
	n.ok = time.Now()
	if n.rtt == 0 {
		n.rtt = took
	} else {
		n.rtt = (3*n.rtt + took) / 4
	}
}

// failed records that no path to id opened.
func (h *providerHealth) failed(id key.NodeID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.node(id).down = time.Now()
}

// shutdown records that id shut down cleanly.
func (h *providerHealth) shutdown(id key.NodeID) { h.failed(id) }

// isDown reports whether id failed or shut down within downFor and has
// not answered since.
func (h *providerHealth) isDown(id key.NodeID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[id]
	return n != nil && n.down.After(n.ok) && time.Since(n.down) < downFor
}

// order returns ms as downloads should try them: the nodes that answered
// before, fastest first; then the ones never tried; the ones down are
// left out unless every one is down. The order of ms breaks ties (the
// repos a caller prefers come first).
func (h *providerHealth) order(ms []group.Member) []group.Member {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	rank := func(m group.Member) (int, time.Duration) {
		n := h.nodes[m.Tunnel.Node]
		switch {
		case n == nil:
			return 1, 0
		case n.down.After(n.ok) && now.Sub(n.down) < downFor:
			return 2, 0
		case !n.ok.IsZero():
			return 0, n.rtt
		}
		return 1, 0
	}
	out := slices.Clone(ms)
	slices.SortStableFunc(out, func(a, b group.Member) int {
		ra, ta := rank(a)
		rb, tb := rank(b)
		if ra != rb {
			return ra - rb
		}
		return int(ta - tb)
	})
	live := slices.DeleteFunc(slices.Clone(out), func(m group.Member) bool { r, _ := rank(m); return r == 2 })
	if len(live) > 0 {
		return live
	}
	return out
}
