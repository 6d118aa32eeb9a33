package dht

import (
	"errors"
	"fmt"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/transport"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNotFound: no node (nor this one) holds a descriptor for the key.
	ErrNotFound = errors.New("dht: record not found")
	// ErrStale: a holder already has a value that wins over the one written
	// (higher seq, or equal seq and smaller BLAKE3(data)). The error is a
	// *StaleError carrying that value.
	ErrStale = errors.New("dht: a better value is already stored")
	// ErrKeyMismatch: the descriptor sent does not hash to the record key
	// given with it.
	ErrKeyMismatch = errors.New("dht: descriptor does not match record key")
	// ErrBadRequest: a peer sent a request or response this node cannot
	// parse or that breaks the protocol.
	ErrBadRequest = errors.New("dht: bad request")
	// ErrRemote: a peer failed a request for a reason it did not name.
	ErrRemote = errors.New("dht: remote error")
	// ErrNoPeers: no contact answered (bootstrap) or no holder accepted a
	// store.
	ErrNoPeers = errors.New("dht: no peer answered")
	// ErrClosed: the DHT was closed.
	ErrClosed = errors.New("dht: closed")
	// ErrQuota: a peer is over one of its quotas on this node (records
	// stored for it, Options.MaxRecordsPerPeer; watches,
	// Options.MaxWatchesPerPeer).
	ErrQuota = errors.New("dht: peer over quota")
	// ErrRateLimited: a peer sent requests faster than Options.RequestRate
	// allows.
	ErrRateLimited = errors.New("dht: peer over request rate")
	// ErrNoList: a holder of a membership-checked record has no
	// membership list yet, so it cannot check a slot value; the writer
	// sends the list first and tries again (Set does).
	ErrNoList = errors.New("dht: no membership list held to check the slot against")
	// ErrBadList: a membership list that may not replace the one the
	// holder has (not signed by one of its admins, not its next version,
	// malformed; the MembershipChecker's error says which).
	ErrBadList = errors.New("dht: membership list refused")
)

// StaleError is returned when a write loses to the value a holder already
// has. errors.Is(err, ErrStale) holds for it.
type StaleError struct {
	Current *record.Value // the holder's value, verified against the descriptor
}

func (e *StaleError) Error() string {
	if e.Current == nil {
		return ErrStale.Error()
	}
	return fmt.Sprintf("%v (holder has seq %d)", ErrStale, e.Current.Seq)
}

// Unwrap makes errors.Is(err, ErrStale) true.
func (e *StaleError) Unwrap() error { return ErrStale }

// RemoteError is a failure reported by a peer: the wire code, mapped back to
// a sentinel, and the peer's message. errors.Is(err, sentinel) holds for the
// sentinel of the code (ErrStale, ErrNotFound, ErrKeyMismatch,
// ErrBadRequest, record.ErrBadSignature, record.ErrNotWriter,
// record.ErrSubkeyRange, record.ErrBadSchema, record.ErrTooLarge,
// record.ErrSeqRange, ErrQuota, ErrRateLimited, ErrNoList, ErrBadList or
// ErrRemote).
type RemoteError struct {
	Peer key.NodeID
	Code uint16
	Msg  string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("dht: peer %s: %s", e.Peer, e.Msg)
}

// Unwrap returns the sentinel of the wire code.
func (e *RemoteError) Unwrap() error { return codeErr(e.Code) }

// Wire error codes carried in a response. 0 is success. The mapping between
// codes and sentinels is here and nowhere else.
const (
	codeOK           uint16 = 0
	codeInternal     uint16 = 1
	codeBadRequest   uint16 = 2
	codeNotFound     uint16 = 3
	codeStale        uint16 = 4
	codeKeyMismatch  uint16 = 5
	codeBadSignature uint16 = 6
	codeNotWriter    uint16 = 7
	codeSubkeyRange  uint16 = 8
	codeBadSchema    uint16 = 9
	codeTooLarge     uint16 = 10
	codeQuota        uint16 = 11
	codeRateLimited  uint16 = 12
	codeSeqRange     uint16 = 13
	codeNoList       uint16 = 14
	codeBadList      uint16 = 15
)

var codeSentinels = []struct {
	code uint16
	err  error
}{
	{codeStale, ErrStale},
	{codeNotFound, ErrNotFound},
	{codeKeyMismatch, ErrKeyMismatch},
	{codeBadSignature, record.ErrBadSignature},
	{codeNotWriter, record.ErrNotWriter},
	{codeSubkeyRange, record.ErrSubkeyRange},
	{codeBadSchema, record.ErrBadSchema},
	{codeTooLarge, record.ErrTooLarge},
	{codeQuota, ErrQuota},
	{codeRateLimited, ErrRateLimited},
	{codeSeqRange, record.ErrSeqRange},
	{codeNoList, ErrNoList},
	{codeBadList, ErrBadList},
	{codeBadRequest, ErrBadRequest},
	{codeBadRequest, record.ErrMalformed},
}

// errCode returns the wire code for err.
func errCode(err error) uint16 {
	if err == nil {
		return codeOK
	}
	if _, ok := errors.AsType[*transport.LimitError](err); ok {
		return codeTooLarge
	}
	for _, cs := range codeSentinels {
		if errors.Is(err, cs.err) {
			return cs.code
		}
	}
	return codeInternal
}

// codeErr returns the sentinel for a wire code.
func codeErr(code uint16) error {
	for _, cs := range codeSentinels {
		if cs.code == code {
			return cs.err
		}
	}
	return ErrRemote
}
