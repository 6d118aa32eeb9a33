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
// so record's decoders bound and check them.
//
//	PING       {op 1}                                  -> {code}
//	FIND_NODE  {op 2, target}                          -> {code, closer}
//	GET        {op 3, target=record key, subkey, want} -> {code, desc?, value?, closer}
//	STORE      {op 4, target=record key, subkey, desc, value}
//	                                                   -> {code, msg, value? (the better current value when code is stale)}
const (
	opPing     uint8 = 1
	opFindNode uint8 = 2
	opGet      uint8 = 3
	opStore    uint8 = 4
)

// MaxMessageSize bounds every DHT frame, in bytes: room for the largest
// encoded descriptor and value in one STORE, plus framing.
const MaxMessageSize = record.MaxEncodedDescriptor + record.MaxEncodedValue + 1024

// maxWireContacts bounds the contacts a response may carry.
const maxWireContacts = 64

type request struct {
	Op       uint8  `cbor:"1,keyasint"`
	Target   []byte `cbor:"2,keyasint,omitempty"` // 32 bytes: node ID or record key
	Subkey   uint32 `cbor:"3,keyasint,omitempty"`
	WantDesc bool   `cbor:"4,keyasint,omitempty"`
	Desc     []byte `cbor:"5,keyasint,omitempty"` // record.EncodeDescriptor
	Value    []byte `cbor:"6,keyasint,omitempty"` // record.EncodeValue
}

type response struct {
	Code   uint16        `cbor:"1,keyasint,omitempty"`
	Msg    string        `cbor:"2,keyasint,omitempty"`
	Desc   []byte        `cbor:"3,keyasint,omitempty"`
	Value  []byte        `cbor:"4,keyasint,omitempty"`
	Closer []wireContact `cbor:"5,keyasint,omitempty"`
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
