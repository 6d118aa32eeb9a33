package tunnel

import (
	"errors"
	"fmt"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/quic-go/quic-go"
	"github.com/zeebo/blake3"
)

// Relay wire (docs/tunnel.md, section "Relays"). Every stream that starts
// with the transport.ProtoRelay byte carries one request frame from the
// opener and one reply frame back: CBOR messages in 4-byte-length frames
// (transport.WriteMsg), each at most maxRelayMsg bytes. What follows depends
// on the operation:
//
//	op          opener -> answerer       after an OK reply
//	reserve     node -> relay            the stream stays open; it is the reservation
//	connect     initiator -> relay       the stream carries the target's tunnel bytes
//	incoming    relay -> reserved node   the stream carries the initiator's tunnel bytes
//	dial-back   node -> any node         nothing; the reply says whether a fresh dial reached the node
//	ping        any -> any               nothing; the reply carries the opener's observed address
type relayOp uint8

const (
	opReserve  relayOp = 1
	opConnect  relayOp = 2
	opIncoming relayOp = 3
	opDialBack relayOp = 4
	opPing     relayOp = 5
)

func (op relayOp) String() string {
	switch op {
	case opReserve:
		return "reserve"
	case opConnect:
		return "connect"
	case opIncoming:
		return "incoming"
	case opDialBack:
		return "dial-back"
	case opPing:
		return "ping"
	}
	return fmt.Sprintf("op(%d)", uint8(op))
}

// maxRelayMsg bounds one relay request or reply frame, in bytes.
const maxRelayMsg = 1024

// relayRequest is the first frame of every relay stream.
type relayRequest struct {
	Op relayOp `cbor:"1,keyasint"`
	// Peer is the target node (connect) or the initiator as the relay saw
	// it (incoming); zero otherwise.
	Peer key.NodeID `cbor:"2,keyasint"`
	// Addr is the UDP host:port to dial back (dial-back); "" means the
	// address the answerer sees the request come from.
	Addr string `cbor:"3,keyasint,omitempty"`
	// Proofs (reserve) prove the opener a member of groups the relay may
	// serve: each is MembershipProof under one group's PSK, at most
	// maxProofs of them, 32 bytes each.
	Proofs [][]byte `cbor:"4,keyasint,omitempty"`
}

// relayReply answers a relayRequest.
type relayReply struct {
	Code RelayCode `cbor:"1,keyasint"`
	Msg  string    `cbor:"2,keyasint,omitempty"`
	// Observed is the opener's UDP address as the answerer sees it.
	Observed string `cbor:"3,keyasint,omitempty"`
	// Reserve: the reservation's limits.
	TTLSeconds  uint32 `cbor:"4,keyasint,omitempty"`
	MaxBytes    int64  `cbor:"5,keyasint,omitempty"`
	MaxCircuits uint32 `cbor:"6,keyasint,omitempty"`
	// Dial-back: whether the fresh dial reached the node.
	Reachable bool `cbor:"7,keyasint,omitempty"`
	// Reserve: the relay took one of the proofs, so the reservation is a
	// member's (its TTL and limits), not a stranger's.
	Member bool `cbor:"8,keyasint,omitempty"`
}

// maxProofs bounds the membership proofs of one reserve request (a node in
// more groups sends those of 16 of them), which keeps the request under
// maxRelayMsg and the relay's work per request small.
const maxProofs = 16

// MembershipContext is the BLAKE3 derive-key context of the key a member
// proves its membership to a relay with, derived from the group's tunnel
// PSK.
const MembershipContext = "dweb 2026 relay membership"

// MembershipProof is what a node sends a relay to prove it holds the group
// secret behind psk (PSK(secret)): BLAKE3 keyed by derive_key(
// MembershipContext, psk) over relay || node (the two node IDs, 32 bytes
// each). Only holders of the secret can compute it; it names both ends, so
// a relay cannot replay it to another relay, nor another node present it
// (the relay checks node against the TLS-proved caller); and it names no
// group, so a relay outside the group learns nothing from it.
func MembershipProof(psk [32]byte, relay, node key.NodeID) [32]byte {
	var k [32]byte
	blake3.DeriveKey(MembershipContext, psk[:], k[:])
	h, err := blake3.NewKeyed(k[:])
	if err != nil {
		panic("tunnel: blake3 keyed hash: " + err.Error()) // 32-byte key: cannot fail
	}
	h.Write(relay[:])
	h.Write(node[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// RelayCode is the status of a relay reply. The codes are wire values.
type RelayCode uint16

// Relay reply codes.
const (
	RelayOK                RelayCode = 0
	RelayBadRequest        RelayCode = 1 // malformed request, unknown op, bad address
	RelayNotRelay          RelayCode = 2 // the node does not serve as a relay
	RelayNoReservation     RelayCode = 3 // connect: the target holds no reservation here
	RelayLimit             RelayCode = 4 // a limit is reached: reservations, circuits, bytes, concurrent dial-backs
	RelayTargetUnreachable RelayCode = 5 // connect: the reserved node's connection is gone
	RelayRefused           RelayCode = 6 // incoming/connect: the target refused the circuit
	RelayDialBackRefused   RelayCode = 7 // dial-back: the address is not on the requester's observed IP
)

// Sentinel errors for the relay reply codes; a *RelayError matches the one of
// its code with errors.Is.
var (
	ErrRelayBadRequest        = errors.New("relay: bad request")
	ErrNotRelay               = errors.New("relay: node does not relay")
	ErrNoReservation          = errors.New("relay: target holds no reservation")
	ErrRelayLimit             = errors.New("relay: limit reached")
	ErrRelayTargetUnreachable = errors.New("relay: target unreachable")
	ErrRelayRefused           = errors.New("relay: target refused the circuit")
	ErrDialBackRefused        = errors.New("relay: dial-back address refused")
	// ErrRelayClosed is returned after Relay.Close.
	ErrRelayClosed = errors.New("relay: closed")
)

var codeErrs = map[RelayCode]error{
	RelayBadRequest:        ErrRelayBadRequest,
	RelayNotRelay:          ErrNotRelay,
	RelayNoReservation:     ErrNoReservation,
	RelayLimit:             ErrRelayLimit,
	RelayTargetUnreachable: ErrRelayTargetUnreachable,
	RelayRefused:           ErrRelayRefused,
	RelayDialBackRefused:   ErrDialBackRefused,
}

// RelayError is a refusal received from a relay (or from a node asked for a
// dial-back). Test it with errors.Is against the sentinels above.
type RelayError struct {
	Peer key.NodeID // who refused
	Op   string     // the operation: reserve, connect, incoming, dial-back, ping
	Code RelayCode
	Msg  string // the peer's explanation, for logs
}

func (e *RelayError) Error() string {
	return fmt.Sprintf("relay %s: %s refused (code %d): %s", e.Peer, e.Op, e.Code, e.Msg)
}

// Unwrap returns the sentinel for Code (nil for unknown codes).
func (e *RelayError) Unwrap() error { return codeErrs[e.Code] }

// Stream reset codes a relay uses when it ends a spliced circuit or a
// reservation (RESET_STREAM / STOP_SENDING).
const (
	CodeRelayBytes    quic.StreamErrorCode = 0x401 // the reservation's byte budget is spent
	CodeRelayExpired  quic.StreamErrorCode = 0x402 // the reservation expired or its node went away
	CodeRelayClosed   quic.StreamErrorCode = 0x403 // the relay is shutting down
	CodeRelayReplaced quic.StreamErrorCode = 0x404 // the node reserved again; this reservation stream is superseded
	CodeRelayBroken   quic.StreamErrorCode = 0x405 // the other side of the circuit failed
)

// Default relay limits (RelayLimits zero values).
const (
	DefaultMaxReservations  = 128
	DefaultReservationTTL   = time.Hour
	DefaultReservationBytes = 1 << 30
	DefaultMaxCircuits      = 16
	DefaultMaxDialBacks     = 8
	DefaultRelayDialTimeout = 5 * time.Second

	// DefaultMaxStrangerReservations: strangers (nodes that prove no
	// membership of a group this relay serves) may hold a quarter of the
	// reservations, so the members always find three quarters free.
	DefaultMaxStrangerReservations = 32
	// DefaultStrangerReservationTTL: a stranger's reservation lasts 10
	// min, a member's DefaultReservationTTL; a stranger who hoards
	// reservations has to keep asking for them.
	DefaultStrangerReservationTTL = 10 * time.Minute
	// DefaultMaxReservationsPerPrefix: reservations of all nodes of one
	// IPv4 /24 or IPv6 /48 (a quarter of the relay), members behind one
	// carrier NAT included.
	DefaultMaxReservationsPerPrefix = 32
	// DefaultMaxStrangerReservationsPerPrefix: strangers of one /24 or /48
	// hold at most 4, however many node IDs they make.
	DefaultMaxStrangerReservationsPerPrefix = 4
)

// Kinds of the relay's counts in the node's resource manager.
const (
	KindRelayReservation rcmgr.Kind = "relay_reservation" // every reservation held on this relay
	KindRelayStranger    rcmgr.Kind = "relay_stranger"    // reservations of strangers
)

// RelayLimits bound what a relay carries. Zero fields take the defaults.
type RelayLimits struct {
	// MaxReservations is how many nodes may hold a reservation at once.
	// Default DefaultMaxReservations (128); more are refused with RelayLimit.
	MaxReservations int
	// ReservationTTL is how long one reservation lasts; at expiry the relay
	// ends it and every circuit through it, and the node reserves again.
	// Default DefaultReservationTTL (1 h).
	ReservationTTL time.Duration
	// MaxBytes is the byte budget of one reservation: every byte spliced in
	// either direction of any of its circuits counts. A circuit that would
	// exceed it is reset with CodeRelayBytes; new circuits are refused.
	// Default DefaultReservationBytes (1 GiB).
	MaxBytes int64
	// MaxCircuits is how many circuits to one reserved node may be open at
	// once. Default DefaultMaxCircuits (16).
	MaxCircuits int
	// MaxDialBacks is how many dial-back probes may run at once on this
	// node. Default DefaultMaxDialBacks (8).
	MaxDialBacks int
	// DialTimeout bounds the relay's stream to a reserved node and one
	// dial-back probe. Default DefaultRelayDialTimeout (5 s).
	DialTimeout time.Duration

	// A reservation is a member's when its request proves membership of
	// a group this relay serves (MembershipProof, checked against
	// RelayOptions.GroupPSKs), else a stranger's. Strangers get the
	// shorter TTL and the smaller shares below; reservations are counted
	// per prefix (IPv4 /24, IPv6 /48; rcmgr.Prefix) whatever the node IDs,
	// in the node's resource manager.

	// MaxStrangerReservations is how many reservations strangers may hold
	// at once, all together. Default DefaultMaxStrangerReservations (32).
	MaxStrangerReservations int
	// StrangerReservationTTL is how long a stranger's reservation lasts
	// (at most ReservationTTL). Default DefaultStrangerReservationTTL
	// (10 min).
	StrangerReservationTTL time.Duration
	// MaxReservationsPerPrefix bounds the reservations of one prefix,
	// members and strangers. Default DefaultMaxReservationsPerPrefix (32).
	MaxReservationsPerPrefix int
	// MaxStrangerReservationsPerPrefix bounds the strangers' reservations
	// of one prefix. Default DefaultMaxStrangerReservationsPerPrefix (4).
	MaxStrangerReservationsPerPrefix int
}

func (l *RelayLimits) setDefaults() {
	if l.MaxReservations <= 0 {
		l.MaxReservations = DefaultMaxReservations
	}
	if l.ReservationTTL <= 0 {
		l.ReservationTTL = DefaultReservationTTL
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultReservationBytes
	}
	if l.MaxCircuits <= 0 {
		l.MaxCircuits = DefaultMaxCircuits
	}
	if l.MaxDialBacks <= 0 {
		l.MaxDialBacks = DefaultMaxDialBacks
	}
	if l.DialTimeout <= 0 {
		l.DialTimeout = DefaultRelayDialTimeout
	}
	if l.MaxStrangerReservations <= 0 {
		l.MaxStrangerReservations = DefaultMaxStrangerReservations
	}
	if l.StrangerReservationTTL <= 0 {
		l.StrangerReservationTTL = DefaultStrangerReservationTTL
	}
	l.StrangerReservationTTL = min(l.StrangerReservationTTL, l.ReservationTTL)
	if l.MaxReservationsPerPrefix <= 0 {
		l.MaxReservationsPerPrefix = DefaultMaxReservationsPerPrefix
	}
	if l.MaxStrangerReservationsPerPrefix <= 0 {
		l.MaxStrangerReservationsPerPrefix = DefaultMaxStrangerReservationsPerPrefix
	}
}
