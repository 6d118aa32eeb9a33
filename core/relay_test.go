package core

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/tunnel"
)

// descriptorOf reads, as reader sees it in the DHT, the tunnel descriptor
// in slot 0 of owner's repo in group g.
func descriptorOf(ctx context.Context, t *testing.T, reader *Backend, g GroupInfo) (datarepo.TunnelDescriptor, bool) {
	t.Helper()
	gs, err := reader.group(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	r, err := datarepo.OpenKey(ctx, records{reader}, nil, gs.g.Keys(), g.Repo)
	if err != nil {
		t.Fatal(err)
	}
	td, ok, err := r.Tunnel(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	return td, ok
}

// TestDownloadThroughRelay: alice publishes no direct address and keeps a
// reservation on the relay; bob joins from the invite and downloads her
// file through the relay, and reports that path.
func TestDownloadThroughRelay(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)

	relay := startWith(t, filepath.Join(tmp, "relay"), Options{ServeRelay: true}, false)
	alice := startWith(t, filepath.Join(tmp, "alice"), Options{Bootstrap: []string{relay.Contact()}, Relays: []string{relay.Contact()}}, true)

	waitFor(t, "alice's reservation", func() bool { return len(alice.Relays()) == 1 })
	waitFor(t, "alice's reachability check", func() bool { return alice.Reachability().Checked })
	if r := alice.Reachability(); !r.Reachable || r.Observed != alice.Addr() || r.By != relay.NodeID() {
		t.Errorf("alice's reachability = %+v, want reachable at %s by the relay", r, alice.Addr())
	}
	if alice.curDHT().Client() {
		t.Fatal("alice is reachable but her DHT is in client mode")
	}
	// On loopback the check finds alice reachable; behind NAT it would not,
	// and checkReach would put her DHT in client mode, as here (the next
	// check is 10 min away). She then stays out of the others' routing
	// tables and still writes, reads and watches through them.
	// Her bootstrap, behind Start, must not send a request made before the
	// switch after it.
	waitBootedT(t, alice)
	alice.curDHT().SetClient(true)
	inTable := func(b *Backend) bool {
		return slices.ContainsFunc(b.curDHT().Contacts(), func(c dht.Contact) bool { return c.ID == alice.NodeID() })
	}
	waitFor(t, "alice out of the relay's routing table", func() bool { return !inTable(relay) })
	// Bob starts now: one that bootstrapped while alice was still a
	// server may hold her as a contact and ask her once (which is how
	// he would learn she is a client), which this test does not count.
	bob := startWith(t, filepath.Join(tmp, "bob"), Options{Bootstrap: []string{relay.Contact()}}, false)
	accepted := alice.curEP().Stats().Accepted

	p, data := writeFile(t, tmp, "report.bin", 2<<20+77)
	g, _, inv := newGroup(ctx, t, alice, "newsroom", p)
	join(ctx, t, inv, bob)
	td, ok := descriptorOf(ctx, t, bob, g)
	if !ok || len(td.Addrs) != 0 || len(td.Relays) != 1 || td.Relays[0] != relay.Contact() {
		t.Fatalf("alice's descriptor as bob reads it: %+v (ok %v), want no address and relay %s", td, ok, relay.Contact())
	}

	getFile(ctx, t, bob, g.ID, "report.bin", filepath.Join(tmp, "got.bin"), data)
	var path *PeerPath
	for _, pp := range bob.PeerPaths() {
		if pp.Node == alice.NodeID() {
			path = &pp
		}
	}
	if path == nil || path.Path != PathRelay || path.Via != relay.Contact() || path.Encryption != "noise" {
		t.Fatalf("bob's path to alice = %+v, want relay via %s", path, relay.Contact())
	}
	if st := relay.run().relay.Stats(); st.Bytes < uint64(len(data)) {
		t.Fatalf("relay spliced %d bytes, less than the %d-byte file", st.Bytes, len(data))
	}
	if inTable(relay) || inTable(bob) {
		t.Fatalf("alice, a DHT client, is in a routing table (relay %v, bob %v)", inTable(relay), inTable(bob))
	}
	if n := alice.curEP().Stats().Accepted - accepted; n != 0 {
		t.Fatalf("%d connections were made to alice, a DHT client: nobody may dial her", n)
	}
}

// TestNonMemberGetsNothing: a node that knows alice's address, node ID,
// static key and group key but not the group secret fails the handshake
// and receives no byte, directly or through the relay; a blobs stream
// outside a tunnel is refused.
func TestNonMemberGetsNothing(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	relay := startWith(t, filepath.Join(tmp, "relay"), Options{ServeRelay: true}, false)
	alice := startWith(t, filepath.Join(tmp, "alice"), Options{Bootstrap: []string{relay.Contact()}, Relays: []string{relay.Contact()}}, false)
	p, _ := writeFile(t, tmp, "secret.bin", 100<<10)
	g, _, _ := newGroup(ctx, t, alice, "closed", p)
	waitFor(t, "alice's reservation", func() bool { return len(alice.Relays()) == 1 })

	ep, err := transport.Listen(transport.Options{Identity: key.NewKeypair()})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	mallory := tunnel.NewRelay(ep, tunnel.RelayOptions{})
	defer mallory.Close()
	static, err := tunnel.NewStaticKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := tunnel.DialConfig{Static: static, RemoteStatic: alice.static.Public, Group: g.ID, PSK: tunnel.PSK(key.NewSecret())}

	direct, err := ep.OpenStream(ctx, alice.NodeID(), alice.Addr(), transport.ProtoTunnel)
	if err != nil {
		t.Fatal(err)
	}
	viaRelay, err := mallory.Connect(ctx, transport.Peer{ID: relay.NodeID(), Addr: relay.Addr()}, alice.NodeID())
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]io.ReadWriteCloser{"direct": direct, "relay": viaRelay} {
		// Capture what alice sends beyond the handshake: keep the raw stream.
		rec := &recorder{rw: s}
		if _, err := tunnel.Dial(ctx, rec, cfg); !errors.Is(err, tunnel.ErrHandshake) {
			t.Fatalf("%s: non-member handshake: %v, want ErrHandshake", name, err)
		}
		// Message 2 (48 bytes + 2-byte length) is all alice may send.
		if rec.read > 50 {
			t.Fatalf("%s: non-member received %d bytes, more than the handshake reply", name, rec.read)
		}
	}

	// A blobs stream outside a tunnel is reset without an answer.
	s, err := ep.OpenStream(ctx, alice.NodeID(), alice.Addr(), transport.ProtoBlobs)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("give me everything"))
	n, err := io.Copy(io.Discard, s)
	if n != 0 || err == nil {
		t.Fatalf("raw blobs stream: got %d bytes, err %v; want a reset and nothing", n, err)
	}
}

// recorder counts what is read through it and reads on after the
// handshake fails, to catch anything the responder sends late.
type recorder struct {
	rw   io.ReadWriteCloser
	read int
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.rw.Read(p)
	r.read += n
	return n, err
}
func (r *recorder) Write(p []byte) (int, error) { return r.rw.Write(p) }
func (r *recorder) Close() error {
	// Drain what the responder still sends before closing.
	buf := make([]byte, 4096)
	if d, ok := r.rw.(interface{ SetReadDeadline(time.Time) error }); ok {
		d.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	}
	for {
		n, err := r.rw.Read(buf)
		r.read += n
		if err != nil {
			break
		}
	}
	return r.rw.Close()
}

// TestTunnelSurvivesPortChange: alice restarts on another UDP port; bob,
// holding the descriptor he read before and no connection to her, fails
// on her old address, re-reads the descriptor from the DHT
// (memberProvider.Open) and fetches from the new one.
func TestTunnelSurvivesPortChange(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	boot := startWith(t, filepath.Join(tmp, "boot"), Options{}, false)
	aliceDir := filepath.Join(tmp, "alice")
	alice := startWith(t, aliceDir, Options{Bootstrap: []string{boot.Contact()}, ListenAddr: "127.0.0.1:0"}, false)
	bob := startWith(t, filepath.Join(tmp, "bob"), Options{Bootstrap: []string{boot.Contact()}}, false)

	p1, _ := writeFile(t, tmp, "one.bin", 300<<10)
	p2, d2 := writeFile(t, tmp, "two.bin", 300<<10)
	g, added, inv := newGroup(ctx, t, alice, "moving", p1, p2)
	join(ctx, t, inv, bob)
	if _, err := bob.GetFile(ctx, g.ID, key.RecordKey{}, "one.bin", filepath.Join(tmp, "got1"), nil); err != nil {
		t.Fatal(err)
	}
	stale, ok := descriptorOf(ctx, t, bob, g)
	if !ok {
		t.Fatal("no descriptor")
	}
	oldAddr := alice.Addr()

	// Alice moves to a new UDP port (as a phone changing networks).
	alice.Close()
	alice = startWith(t, aliceDir, Options{Bootstrap: []string{boot.Contact()}, ListenAddr: "127.0.0.1:0"}, false)
	if alice.Addr() == oldAddr {
		t.Fatalf("alice kept port %s", oldAddr)
	}
	waitFor(t, "alice's new descriptor", func() bool {
		td, ok := descriptorOf(ctx, t, bob, g)
		return ok && len(td.Addrs) > 0 && td.Addrs[0] == alice.Addr().String()
	})

	// Bob fetches with the descriptor he read before the move. His
	// connection to alice's new address (his DHT reads above made one) is
	// dropped first, as a NAT mapping expiring would: otherwise the pooled
	// connection would carry the tunnel whatever address the stale
	// descriptor names, and the re-resolve path would not run.
	gs, err := bob.group(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	var h2 = added[1].Hash
	stalep := &memberProvider{b: bob, gs: gs, td: stale}
	var used datarepo.TunnelDescriptor
	for try := range 5 {
		bob.curEP().Disconnect(alice.NodeID())
		if _, err := bob.blobs.Download(ctx, h2, []blobsync.Provider{stalep}, blobsync.DownloadOptions{}); err != nil {
			t.Fatalf("fetch with a stale descriptor: %v", err)
		}
		// Only the re-resolve path replaces the provider's descriptor.
		stalep.mu.Lock()
		used = stalep.td
		stalep.mu.Unlock()
		if len(used.Addrs) > 0 && used.Addrs[0] == alice.Addr().String() {
			break
		}
		// Alice's node called bob's between the Disconnect and the
		// fetch (its DHT at work, on a loaded machine): the tunnel rode
		// her connection and no re-read was needed. Again.
		t.Logf("try %d: the fetch used a connection alice opened", try)
		if err := bob.blobs.Delete(h2); err != nil {
			t.Fatal(err)
		}
	}
	if len(used.Addrs) == 0 || used.Addrs[0] != alice.Addr().String() {
		t.Fatalf("the provider still uses descriptor %+v: the fetch did not re-read it from the DHT", used)
	}
	var last PeerPath
	for _, pp := range bob.PeerPaths() {
		if pp.Node == alice.NodeID() {
			last = pp
		}
	}
	if last.Path != PathDirect || last.Via != alice.Addr().String() || last.Encryption != "tls" {
		t.Fatalf("bob reached alice by %+v, want direct to her new address %s", last, alice.Addr())
	}
	if fi, _ := getFile(ctx, t, bob, g.ID, "two.bin", filepath.Join(tmp, "got2"), d2); fi.Hash != h2 {
		t.Fatalf("GetFile two.bin = %+v, want hash %s", fi, h2)
	}
}

// TestDescriptorRemovedOnClose: a clean shutdown empties the node's tunnel
// descriptor, as a member reading the DHT sees.
func TestDescriptorRemovedOnClose(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	nodes := startNodes(t, tmp, "boot", "alice", "bob")
	alice, bob := nodes[1], nodes[2]
	g, _, inv := newGroup(ctx, t, alice, "leaving")
	join(ctx, t, inv, bob)
	if td, ok := descriptorOf(ctx, t, bob, g); !ok || td.Node != alice.NodeID() {
		t.Fatalf("before close: descriptor %+v ok %v", td, ok)
	}
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
	if td, ok := descriptorOf(ctx, t, bob, g); ok {
		t.Fatalf("after a clean close bob still reads descriptor %+v", td)
	}
}
