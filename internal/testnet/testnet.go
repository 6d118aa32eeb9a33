// Package testnet builds networks of real dweb nodes for tests: each node
// has a QUIC endpoint on 127.0.0.1, a Pebble store in a temp dir and a DHT,
// bootstrapped through node 0. Everything is closed by t.Cleanup.
package testnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
)

// Node is one node of a test network.
type Node struct {
	Endpoint *transport.Endpoint
	Store    *store.DB
	DHT      *dht.DHT
	Dir      string
}

// Contact returns the node's DHT contact.
func (n *Node) Contact() dht.Contact { return n.DHT.Self() }

// Options configure the nodes of a test network; the zero value is the
// default.
type Options struct {
	// Membership is given to each node's DHT (dht.Options.Membership):
	// group's rules for membership-checked records, which this package
	// cannot import.
	Membership dht.MembershipChecker
}

// New starts n nodes (n >= 1) and bootstraps nodes 1..n-1 through node 0.
func New(t testing.TB, n int) []*Node {
	t.Helper()
	return NewWith(t, n, Options{})
}

// NewWith is New with options.
func NewWith(t testing.TB, n int, o Options) []*Node {
	t.Helper()
	dir := t.TempDir()
	nodes := make([]*Node, 0, n)
	for i := 0; i < n; i++ {
		var boot []dht.Contact
		if i > 0 {
			boot = []dht.Contact{nodes[0].Contact()}
		}
		nodes = append(nodes, StartWith(t, filepath.Join(dir, "node"+strconv.Itoa(i)), boot, o))
	}
	return nodes
}

// Start starts one node with a fresh identity and its store in dir,
// bootstrapping through boot (none: it is the first node).
func Start(t testing.TB, dir string, boot []dht.Contact) *Node {
	t.Helper()
	return StartWith(t, dir, boot, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, dir string, boot []dht.Contact, o Options) *Node {
	t.Helper()
	ep, err := transport.Listen(transport.Options{Identity: key.NewKeypair(), ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("testnet: listen: %v", err)
	}
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		ep.Close()
		t.Fatalf("testnet: store: %v", err)
	}
	d, err := dht.New(dht.Options{Endpoint: ep, Store: db, Bootstrap: boot, RPCTimeout: 3 * time.Second, Membership: o.Membership})
	if err != nil {
		ep.Close()
		db.Close()
		t.Fatalf("testnet: dht: %v", err)
	}
	n := &Node{Endpoint: ep, Store: db, DHT: d, Dir: dir}
	t.Cleanup(func() {
		d.Close()
		ep.Close()
		db.Close()
	})
	if len(boot) > 0 {
		// Tried up to three times, as a node's start retries it
		// (core/connect.go): on two busy cores under the race detector a
		// request can outlast the RPC timeout, and Bootstrap fails when
		// its lookup reached no node.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for try := 1; ; try++ {
			err := d.Bootstrap(ctx)
			if err == nil {
				break
			}
			if try == 3 || ctx.Err() != nil {
				t.Fatalf("testnet: bootstrap (%d tries): %v", try, err)
			}
		}
	}
	return n
}

// SignValue signs data as the value of subkey of record k at seq with w,
// as record.NewValue does but without its checks (a seq above
// record.MaxSeq, data over the limit): what a hostile writer can send.
// The signed message is record's (its package doc).
func SignValue(k key.RecordKey, subkey uint32, seq uint64, data []byte, w key.Keypair) *record.Value {
	msg := append([]byte("dweb record value v1\x00"), k[:]...)
	msg = binary.BigEndian.AppendUint32(msg, subkey)
	msg = binary.BigEndian.AppendUint64(msg, seq)
	msg = append(msg, data...)
	return &record.Value{Seq: seq, Data: bytes.Clone(data), Writer: w.Public(), Sig: w.Sign(msg)}
}

// RawStore sends one DHT STORE of v as subkey of desc's record from node
// from to the node at to, on a QUIC stream of its own, past every check
// dht.Set makes: what a hostile peer can send. It returns the holder's
// answer, its wire code (0 stored, 13 seq range, ...: docs/dht.md) and
// message.
func RawStore(ctx context.Context, from *Node, to dht.Contact, desc *record.Descriptor, subkey uint32, v *record.Value) (code uint16, msg string, err error) {
	de, err := record.EncodeDescriptor(desc)
	if err != nil {
		return 0, "", err
	}
	ve, err := record.EncodeValue(v)
	if err != nil {
		return 0, "", err
	}
	k := desc.Key()
	// The request's CBOR map (internal/dht/wire.go): 1 op (4 STORE),
	// 2 target, 3 subkey, 5 descriptor, 6 value.
	req := map[int]any{1: 4, 2: k[:], 3: subkey, 5: de, 6: ve}
	s, err := from.Endpoint.OpenStream(ctx, to.ID, to.Addr, transport.ProtoDHT)
	if err != nil {
		return 0, "", err
	}
	defer s.CancelRead(transport.CodeNoError)
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	if err := transport.WriteMsg(s, req); err != nil {
		return 0, "", err
	}
	s.Close()
	var resp struct {
		Code uint16 `cbor:"1,keyasint,omitempty"`
		Msg  string `cbor:"2,keyasint,omitempty"`
	}
	if err := transport.ReadMsg(s, dht.MaxMessageSize, &resp); err != nil {
		return 0, "", fmt.Errorf("testnet: STORE answer: %w", err)
	}
	return resp.Code, resp.Msg, nil
}

// B3sum returns the BLAKE3 hash, in hex, that the b3sum tool prints for
// the file at path: the parity check of dweb's hashes against the
// reference implementation. It returns "" when b3sum is not installed
// (the caller then relies on its own hash alone) and fails t if b3sum
// fails.
func B3sum(t testing.TB, path string) string {
	t.Helper()
	bin, err := exec.LookPath("b3sum")
	if err != nil {
		return ""
	}
	out, err := exec.Command(bin, "--no-names", path).Output()
	if err != nil {
		t.Fatalf("b3sum %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}

// EditFile changes the file at path as a user's edit would: it writes
// "edited" at byte off and sets its modification time an hour ahead, so
// that a check of size and mtime (reference-mode blobs) sees the change
// whatever the file system's time granularity.
func EditFile(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte("edited"), off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

// DirBytes is the sum of the sizes of the files directly in dir (bytes;
// subdirectories count their own entry's size, not their contents).
func DirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, de := range des {
		if fi, err := de.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}
