package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
)

// memberProvider is one group member's node as a blobsync.Provider: Open
// opens a Noise tunnel to it (direct addresses first, then relays). When
// every path fails it re-reads the node's tunnel descriptor from the DHT
// (the node may have moved to another address or relay since it was read)
// and, if the descriptor changed, tries again, up to resolveRetries times.
type memberProvider struct {
	b    *Backend
	gs   *groupState
	lane int // transport lane: 0, the pooled connection; 1..: a connection of its own

	mu sync.Mutex
	td datarepo.TunnelDescriptor
}

func (p *memberProvider) ID() string {
	if p.lane > 0 {
		return p.td.Node.String() + "/" + strconv.Itoa(p.lane)
	}
	return p.td.Node.String()
}

func (p *memberProvider) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	p.mu.Lock()
	td := p.td
	p.mu.Unlock()
	start := time.Now()
	if p.lane > 0 {
		// An extra lane: direct paths only, and its failure says nothing
		// of the node (lane 0 tells that).
		sess, err := p.b.openTunnelLane(ctx, p.gs, td, p.lane)
		if err != nil {
			return nil, err
		}
		p.b.traffic.opened.Add(1)
		return countingConn{ReadWriteCloser: sess, read: &p.b.traffic.received}, nil
	}
	sess, err := p.b.openTunnel(ctx, p.gs, td)
	for try := 0; err != nil && try < resolveRetries && ctx.Err() == nil; try++ {
		fresh, rerr := p.b.resolveDescriptor(ctx, p.gs, td.Node)
		if rerr != nil || sameDescriptor(fresh, td) {
			break
		}
		p.b.log.Info("tunnel descriptor changed, retrying", "peer", td.Node, "addrs", fresh.Addrs, "relays", fresh.Relays)
		td = fresh
		p.mu.Lock()
		p.td = fresh
		p.mu.Unlock()
		sess, err = p.b.openTunnel(ctx, p.gs, td)
	}
	if err != nil {
		if ctx.Err() == nil {
			p.b.tellPeer(KindPeerUnreachable, td.Node, PeerFailed, p.b.health.failed(td.Node))
		}
		return nil, err
	}
	p.b.tellPeer(KindPeerReachable, td.Node, PeerTunnel, p.b.health.opened(td.Node, time.Since(start)))
	p.b.traffic.opened.Add(1)
	return countingConn{ReadWriteCloser: sess, read: &p.b.traffic.received}, nil
}

// Lanes (Options.Lanes): the default; the smallest blob whose download is
// striped over them (below it a blob takes a few round trips, which one
// connection's window covers); the round-trip time from which a path is
// wide-area and gets every lane; and the lanes of a nearer path (a LAN,
// loopback).
//
// A near path gets lanes too, fewer: there one window fills the link,
// but quic-go handles each connection's packets in one goroutine (its run
// loop: decryption, frames, acknowledgements), so one connection moves at
// most what one core on each side can process; with two, the two run
// loops work on two cores. Measured on loopback, 2 cores, 1 GiB, 3 rounds
// a run, interleaved (docs/BENCHMARKS.md, "Two lanes on a near path"):
// one lane 0.69-0.80 of a raw quic-go stream, two 0.78-0.93, four no
// better than two; the receiver's peak RSS 35-40 MB against 51-56 MB.
const (
	DefaultLanes = transport.MaxLanes
	LaneMinSize  = 16 << 20
	LaneMinRTT   = 5 * time.Millisecond
	NearLanes    = 2
)

// LanesFor is how many lanes (QUIC connections, each with its own
// congestion window: transport.OpenStreamLane) a download of a blob of
// size bytes opens to one provider, given Options.Lanes (lanes) and the
// round trip of the pooled connection to it (rtt; known false when there
// is none yet): 1 for a blob under LaneMinSize or with no round trip
// known (the first download from a node); lanes over a path of LaneMinRTT
// or more; at most NearLanes over a nearer one.
func LanesFor(lanes int, size int64, rtt time.Duration, known bool) int {
	switch {
	case lanes <= 1 || size < LaneMinSize || !known:
		return 1
	case rtt >= LaneMinRTT:
		return lanes
	default:
		return min(lanes, NearLanes)
	}
}

// lanesTo is LanesFor for a blob of size bytes from node, with this
// node's Options.Lanes and the round trip of its pooled connection.
func (b *Backend) lanesTo(node key.NodeID, size int64) int {
	r := b.run()
	if r == nil {
		return 1
	}
	rtt, ok := r.ep.PeerRTT(node)
	return LanesFor(b.lanes, size, rtt, ok)
}

// lanesOf resolves Options.Lanes: DWEB_LANES when set, else n, else
// DefaultLanes; outside 1..transport.MaxLanes is a *BadInputError.
func lanesOf(n int) (int, error) {
	if v := os.Getenv("DWEB_LANES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			return 0, badInput(fmt.Errorf("DWEB_LANES=%q: not a number", v))
		}
	}
	if n == 0 {
		n = DefaultLanes
	}
	if n < 1 || n > transport.MaxLanes {
		return 0, badInput(fmt.Errorf("lanes %d: want 1..%d", n, transport.MaxLanes))
	}
	return n, nil
}

// ErrNoMembers is returned when a blob must be fetched but no other member
// of the group announces a node to fetch it from.
var ErrNoMembers = errors.New("no other member of the group is reachable")

// download fetches blob h from every member of gs at once (the nodes
// serving the repos in prefer first): verified chunk group by chunk group,
// split across the members that hold it, resumable from what an earlier
// attempt verified. size is the blob's size as a collection entry gives
// it, or 0: a hint that saves a round trip (blobsync.DownloadOptions.
// SizeHint), never trusted. progress, if not nil, gets the download's
// state.
func (b *Backend) download(ctx context.Context, gs *groupState, h blobsync.Hash, size int64, prefer []key.RecordKey, progress func(blobsync.Progress)) error {
	if ok, _ := b.blobs.Has(h); ok {
		return nil
	}
	provs, err := b.blobProviders(ctx, gs, size, prefer)
	if err != nil {
		return err
	}
	_, err = b.blobs.Download(ctx, h, provs, blobsync.DownloadOptions{Progress: progress, Logger: b.log, SizeHint: size})
	return err
}

// downloadTo is download that also writes the blob to the file dst
// (blobsync.Store.DownloadTo: as the bytes arrive when this download
// verifies them all, else from the store after), and returns how.
func (b *Backend) downloadTo(ctx context.Context, gs *groupState, h blobsync.Hash, size int64, prefer []key.RecordKey, progress func(blobsync.Progress), dst string) (blobsync.ExportMethod, error) {
	var provs []blobsync.Provider
	if ok, _ := b.blobs.Has(h); !ok {
		var err error
		if provs, err = b.blobProviders(ctx, gs, size, prefer); err != nil {
			return 0, err
		}
	}
	return b.blobs.DownloadTo(ctx, h, provs, blobsync.DownloadOptions{Progress: progress, Logger: b.log, SizeHint: size}, dst)
}

// blobProviders is memberProviders for one blob of size bytes: striped
// over lanes from 16 MiB (LaneMinSize; lanesTo).
func (b *Backend) blobProviders(ctx context.Context, gs *groupState, size int64, prefer []key.RecordKey) ([]blobsync.Provider, error) {
	return b.memberProviders(ctx, gs, prefer, size)
}

// downloadFile is download for a collection entry: its blob, or for a
// chunked entry its chunk list and the chunks not held
// (blobsync.Store.DownloadChunked).
func (b *Backend) downloadFile(ctx context.Context, gs *groupState, e blobsync.Entry, prefer []key.RecordKey, progress func(blobsync.Progress)) error {
	if e.Chunks.IsZero() {
		return b.download(ctx, gs, e.Hash, e.Size, prefer, progress)
	}
	if ok, _ := b.blobs.HasFile(e); ok {
		return nil
	}
	provs, err := b.memberProviders(ctx, gs, prefer, 0) // chunks are at most 4 MiB: one lane
	if err != nil {
		return err
	}
	_, err = b.blobs.DownloadChunked(ctx, e.Chunks, e.Size, provs, blobsync.DownloadOptions{Progress: progress, Logger: b.log, DeltaBase: b.blobs.DeltaBaseOf(e)})
	return err
}

// memberProviders returns every other member of gs that announces a node
// as blob providers, their tunnels pooled in gs.streams, in the order of
// b.health: the nodes that answered before, fastest first, then the
// others (those serving the repos in prefer first), without the nodes
// down unless all are; ErrNoMembers if there is none.
//
// For a blob of size bytes (0: small ones, one lane) each member is
// lanesTo(member, size) providers, one per transport lane (its own QUIC
// connection), so that the download splits across them.
func (b *Backend) memberProviders(ctx context.Context, gs *groupState, prefer []key.RecordKey, size int64) ([]blobsync.Provider, error) {
	members, err := gs.g.Providers(ctx, prefer, b.NodeID())
	if err != nil {
		return nil, err
	}
	if len(members) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoMembers, gs.info.Name)
	}
	b.rememberMembers(gs, members)
	b.health.serves(gs.info.ID, members)
	members = b.health.order(members)
	provs := make([]blobsync.Provider, 0, len(members))
	for _, m := range members {
		for lane := range b.lanesTo(m.Tunnel.Node, size) {
			provs = append(provs, gs.streams.Provider(&memberProvider{b: b, gs: gs, td: m.Tunnel, lane: lane}))
		}
	}
	return provs, nil
}

// peerShutdown learns that node id shut down cleanly (its connection to
// this node closed as its endpoint closed): DHT lookups and downloads
// leave it out until it is heard from again.
func (b *Backend) peerShutdown(id key.NodeID) {
	b.log.Debug("peer shut down", "peer", id)
	b.curDHT().PeerShutdown(id)
	b.tellPeer(KindPeerUnreachable, id, PeerShutdown, b.health.shutdown(id))
}

// tellPeer emits a peer event of kind about node id for each member repo
// in refs (what providerHealth returned: empty when nothing changed).
func (b *Backend) tellPeer(kind string, id key.NodeID, reason string, refs []memberRef) {
	for _, r := range refs {
		b.emit(kind, r.group, r.repo, PeerEvent{Node: id, Reason: reason})
	}
}
