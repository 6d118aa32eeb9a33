package core

import (
	"bytes"
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
//
// It also keeps each node's reachability as the peer.reachable and
// peer.unreachable events tell it (reach), and which repos of which
// groups the node serves, as the tunnel descriptors last read said
// (repos), so those events name the member.
type providerHealth struct {
	mu    sync.Mutex
	nodes map[key.NodeID]*nodeHealth
}

type nodeHealth struct {
	ok   time.Time     // last tunnel opened
	down time.Time     // last opening failed, or the node shut down
	rtt  time.Duration // moving average of opening times

	reach int8               // what the events last told: 0 nothing, reachUp, reachDown
	repos map[memberRef]bool // the (group, repo) pairs whose descriptors name the node
}

// Values of nodeHealth.reach.
const (
	reachUp   = 1
	reachDown = -1
)

// memberRef is one repo of one group.
type memberRef struct{ group, repo key.RecordKey }

// maxNodeRepos bounds nodeHealth.repos.
const maxNodeRepos = 256

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

// opened records a tunnel to id opened in took. If the events had not
// told id reachable, it returns the repos id serves, to tell now.
func (h *providerHealth) opened(id key.NodeID, took time.Duration) []memberRef {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.node(id)
	n.ok = time.Now()
	if n.rtt == 0 {
		n.rtt = took
	} else {
		n.rtt = (3*n.rtt + took) / 4
	}
	return n.turn(reachUp)
}

// answered records that id reached this node by itself (it opened a
// tunnel of group g to it): as opened, without a time to learn from. A
// node whose repo in g this node has not read yet is known as g's member
// with no repo until then (serves), so its events name the group.
func (h *providerHealth) answered(id key.NodeID, g key.RecordKey) []memberRef {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.node(id)
	n.ok = time.Now()
	if !slices.ContainsFunc(mapKeys(n.repos), func(r memberRef) bool { return r.group == g }) {
		n.addRepo(memberRef{group: g})
	}
	return n.turn(reachUp)
}

func mapKeys(m map[memberRef]bool) []memberRef {
	out := make([]memberRef, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	return out
}

// addRepo records that n serves r; a repo of a group replaces the
// group's placeholder without a repo (answered).
func (n *nodeHealth) addRepo(r memberRef) {
	if n.repos == nil {
		n.repos = make(map[memberRef]bool)
	}
	if !r.repo.IsZero() {
		delete(n.repos, memberRef{group: r.group})
	}
	if len(n.repos) < maxNodeRepos {
		n.repos[r] = true
	}
}

// failed records that no path to id opened (or that id shut down). If the
// events had not told id unreachable, it returns the repos id serves, to
// tell now.
func (h *providerHealth) failed(id key.NodeID) []memberRef {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.node(id)
	n.down = time.Now()
	return n.turn(reachDown)
}

// shutdown records that id shut down cleanly.
func (h *providerHealth) shutdown(id key.NodeID) []memberRef { return h.failed(id) }

// turn sets n's reachability to r; if it was not r, it returns the repos
// n serves (empty, not nil, when none is known); nil if it was r.
func (n *nodeHealth) turn(r int8) []memberRef {
	if n.reach == r {
		return nil
	}
	n.reach = r
	out := make([]memberRef, 0, len(n.repos))
	for ref := range n.repos {
		out = append(out, ref)
	}
	slices.SortFunc(out, func(a, b memberRef) int {
		if c := bytes.Compare(a.group[:], b.group[:]); c != 0 {
			return c
		}
		return bytes.Compare(a.repo[:], b.repo[:])
	})
	return out
}

// serves records which repos of group g each node serves, from the
// tunnel descriptors just read (ms).
func (h *providerHealth) serves(g key.RecordKey, ms []group.Member) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range ms {
		h.node(m.Tunnel.Node).addRepo(memberRef{g, m.Repo})
	}
}

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
