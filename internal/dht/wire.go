package dht

import (
	"fmt"
	"net/netip"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

// Wire protocol (transport.ProtoDHT). One request per bidirectional stream:
// the caller writes one request frame and closes its side, the callee writes
// one response frame. Frames are transport.WriteMsg frames (4-byte
// big-endian length, deterministic CBOR) of at most MaxMessageSize bytes.
// Descriptors and values travel as their record encodings (record.Encode*),
// so record's decoders bound and check them. docs/dht.md has the full table.
//
//	PING          {op 1}                                  -> {code}
//	FIND_NODE     {op 2, target}                          -> {code, closer}
//	GET           {op 3, target=record key, subkey, want} -> {code, desc?, value?, closer}
//	STORE         {op 4, target, subkey, desc, value?, refreshed}
//	                                                      -> {code, msg, value? (the better current value when code is stale)}
//	INSPECT       {op 5, target, refreshed}               -> {code, has, seqs [{subkey, seq, hash}], closer}
//	WATCH         {op 6, target, subkeys, watch, lease}   -> {code, lease, has, seqs}
//	VALUE_CHANGED {op 7, target, subkey, watch, value}    -> {code}
//	HANDOFF       {op 8}                                  -> {code, count}
//
// refreshed is the Unix time (seconds) the sender last saw the record
// refreshed by its owner; the receiver keeps the later of its own and
// min(refreshed, now), and drops records not refreshed for Options.Expiry.
// A STORE without value stores the descriptor only.
//
// Client mode: every request and every response carries key 11 (request) /
// 10 (response) "client" = true when its sender is in client mode (it
// cannot be dialled: Options.Client, SetClient). The receiver serves it but
// does not put it in its routing table (and drops it if it was there),
// never lists it in closer contacts, never counts it as a holder (no
// STORE, HANDOFF or replication to it), and pushes watch changes to it
// only over a connection the client keeps open, never by dialling it.
const (
	opPing         uint8 = 1
	opFindNode     uint8 = 2
	opGet          uint8 = 3
	opStore        uint8 = 4
	opInspect      uint8 = 5
	opWatch        uint8 = 6
	opValueChanged uint8 = 7
	opHandoff      uint8 = 8
)

// opNames labels ops in metrics and logs.
var opNames = map[uint8]string{
	opPing: "ping", opFindNode: "find_node", opGet: "get", opStore: "store",
	opInspect: "inspect", opWatch: "watch", opValueChanged: "value_changed", opHandoff: "handoff",
}

// MaxMessageSize bounds every DHT frame, in bytes: room for the largest
// encoded descriptor and value in one STORE, plus framing. An INSPECT
// answer for record.MaxSubkeys subkeys (about 50 bytes each) fits too.
const MaxMessageSize = record.MaxEncodedDescriptor + record.MaxEncodedValue + 1024

// maxWireContacts bounds the contacts a response may carry.
const maxWireContacts = 64

type request struct {
	Op        uint8    `cbor:"1,keyasint"`
	Target    []byte   `cbor:"2,keyasint,omitempty"` // 32 bytes: node ID or record key
	Subkey    uint32   `cbor:"3,keyasint,omitempty"`
	WantDesc  bool     `cbor:"4,keyasint,omitempty"`
	Desc      []byte   `cbor:"5,keyasint,omitempty"`  // record.EncodeDescriptor
	Value     []byte   `cbor:"6,keyasint,omitempty"`  // record.EncodeValue
	Refreshed int64    `cbor:"7,keyasint,omitempty"`  // Unix seconds
	Subkeys   []uint32 `cbor:"8,keyasint,omitempty"`  // WATCH: subkeys watched; empty: all
	Watch     uint64   `cbor:"9,keyasint,omitempty"`  // WATCH, VALUE_CHANGED: the watcher's watch ID
	LeaseMS   uint32   `cbor:"10,keyasint,omitempty"` // WATCH: lease asked, milliseconds; 0 cancels
	Client    bool     `cbor:"11,keyasint,omitempty"` // the sender is in client mode (not dialable)
}

type response struct {
	Code    uint16        `cbor:"1,keyasint,omitempty"`
	Msg     string        `cbor:"2,keyasint,omitempty"`
	Desc    []byte        `cbor:"3,keyasint,omitempty"`
	Value   []byte        `cbor:"4,keyasint,omitempty"`
	Closer  []wireContact `cbor:"5,keyasint,omitempty"`
	Has     bool          `cbor:"6,keyasint,omitempty"`  // INSPECT, WATCH: the holder has the descriptor
	Seqs    []wireSeq     `cbor:"7,keyasint,omitempty"`  // INSPECT, WATCH: stored subkeys, ascending
	LeaseMS uint32        `cbor:"8,keyasint,omitempty"`  // WATCH: lease granted, milliseconds
	Count   uint32        `cbor:"9,keyasint,omitempty"`  // HANDOFF: records the holder will send
	Client  bool          `cbor:"10,keyasint,omitempty"` // the answerer is in client mode (not dialable)
}

// wireSeq is one stored subkey as INSPECT reports it: its seq and
// BLAKE3-256 of its data, enough to apply record.Better without the data.
type wireSeq struct {
	Subkey uint32 `cbor:"1,keyasint"`
	Seq    uint64 `cbor:"2,keyasint"`
	Hash   []byte `cbor:"3,keyasint"` // 32 bytes
}

type wireContact struct {
	ID   []byte `cbor:"1,keyasint"` // 32 bytes
	Addr []byte `cbor:"2,keyasint"` // netip.AddrPort binary form: 4 or 16 address bytes, zone, 2 port bytes LE
}

func toWire(cs []Contact) []wireContact {
	out := make([]wireContact, 0, len(cs))
	for _, c := range cs {
		a, err := c.Addr.MarshalBinary()
		if err != nil {
			continue
		}
		out = append(out, wireContact{ID: c.ID[:], Addr: a})
	}
	return out
}

// fromWire converts and validates contacts from a peer, skipping bad ones.
func fromWire(ws []wireContact) []Contact {
	if len(ws) > maxWireContacts {
		ws = ws[:maxWireContacts]
	}
	out := make([]Contact, 0, len(ws))
	for _, w := range ws {
		if len(w.ID) != key.Size || len(w.Addr) > 64 {
			continue
		}
		var ap netip.AddrPort
		if ap.UnmarshalBinary(w.Addr) != nil {
			continue
		}
		c := Contact{ID: key.NodeID(w.ID), Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
		if c.validate() == nil {
			out = append(out, c)
		}
	}
	return out
}

func target32(b []byte) ([32]byte, error) {
	var t [32]byte
	if len(b) != len(t) {
		return t, fmt.Errorf("%w: target is %d bytes, want 32", ErrBadRequest, len(b))
	}
	copy(t[:], b)
	return t, nil
}
