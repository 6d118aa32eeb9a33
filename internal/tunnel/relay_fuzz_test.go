package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
)

// Observed addresses FuzzRelayFrame's dial-back requests come from: an
// IPv4 and an IPv6 requester, picked by the input's length.
var fuzzObserved = [2]netip.AddrPort{
	netip.MustParseAddrPort("198.51.100.7:40000"),
	netip.MustParseAddrPort("[2001:db8::7]:40000"),
}

// relayFrame is v as one relay frame, as the wire carries it.
func relayFrame(tb testing.TB, v any) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := transport.WriteMsg(&b, v); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// FuzzRelayFrame reads arbitrary bytes as the frame that opens a relay
// stream (readRelayRequest: anyone who can reach the node sends it, before
// any authentication) or, with reply set, as the frame that answers one
// (readRelayReply). It must never panic, and:
//
//   - a frame that declares more than maxRelayMsg bytes is refused with a
//     *transport.LimitError whatever follows it, so the limit is checked
//     before the body is read or allocated; io.EOF comes only from empty
//     input, io.ErrUnexpectedEOF only from a cut frame, and any other error
//     only from a body that does not decode;
//   - an accepted message encodes again in at most maxRelayMsg bytes and
//     decodes to an equal value;
//   - a request's dial-back target (dialBackTarget) is on the requester's
//     observed IP with a non-zero port, and a refusal it answers fits one
//     reply frame, so the requester can read why;
//   - a reply's observed address (parseObserved) is zero or one another
//     node could send to (unmapped, no IPv6 zone, a specified IP, a
//     non-zero port), and a *RelayError of its code unwraps to the code's sentinel
//     (none for a code it does not know).
//
// Seeds: every request and reply the relay code sends, encoded with
// transport.WriteMsg, and broken frames.
func FuzzRelayFrame(f *testing.F) {
	peer := key.NodeID{0: 0x5e, 31: 0xed} // fixed, so the corpus files stay the same
	valid := []struct {
		reply bool
		v     any
	}{
		{false, relayRequest{Op: opReserve}},
		{false, relayRequest{Op: opConnect, Peer: peer}},
		{false, relayRequest{Op: opIncoming, Peer: peer}},
		{false, relayRequest{Op: opDialBack}},
		{false, relayRequest{Op: opDialBack, Addr: "198.51.100.7:41000"}},
		{false, relayRequest{Op: opDialBack, Addr: "[2001:db8::7]:41000"}},
		{false, relayRequest{Op: opPing}},
		{true, relayReply{Code: RelayOK, Observed: "198.51.100.7:40000", TTLSeconds: 3600, MaxBytes: DefaultReservationBytes, MaxCircuits: DefaultMaxCircuits}},
		{true, relayReply{Code: RelayOK, Observed: "[2001:db8::7]:40000"}},
		{true, relayReply{Code: RelayOK, Observed: "198.51.100.7:40000", Reachable: true}},
		{true, relayReply{Code: RelayNotRelay, Msg: "this node does not relay", Observed: "198.51.100.7:40000"}},
		{true, relayReply{Code: RelayNoReservation, Msg: peer.String() + " holds no reservation here"}},
		{true, relayReply{Code: RelayLimit, Msg: "too many dial-backs in progress"}},
		{true, relayReply{Code: RelayDialBackRefused, Msg: "dial-back address 192.0.2.1:9 is not on your observed address 198.51.100.7:40000"}},
	}
	for _, s := range valid {
		fuzzcorpus.Add(f, s.reply, relayFrame(f, s.v))
	}
	ping := relayFrame(f, relayRequest{Op: opPing})
	for _, b := range [][]byte{
		{},
		{0, 0},
		{0, 0, 0, 0},
		{0xff, 0xff, 0xff, 0xff},
		{0, 0, 4, 1, 0xa0},                   // one byte over maxRelayMsg, no body
		ping[:len(ping)-1],                   // cut
		append(ping, ping...),                // a second frame follows: not read
		{0, 0, 0, 4, 0xa1, 0x01, 0x18, 0x63}, // {1: 99}: an op the relay does not know
		{0, 0, 0, 5, 0xa2, 0x01, 0x01, 0x01, 0x02}, // a duplicate key
		{0, 0, 0, 3, 0xa1, 0x01, 0x18},             // a whole frame, a cut CBOR item
		relayFrame(f, relayRequest{Op: opDialBack, Addr: "192.0.2.1:9"}),
		relayFrame(f, relayRequest{Op: opDialBack, Addr: "[::ffff:198.51.100.7]:41000"}),
		relayFrame(f, relayRequest{Op: opDialBack, Addr: "198.51.100.7:0"}),
		relayFrame(f, relayRequest{Op: opDialBack, Addr: "not an address"}),
		// Addresses whose refusal quotes them at length.
		relayFrame(f, relayRequest{Op: opDialBack, Addr: "198.51.100.7:" + strings.Repeat("9", 900)}),
		relayFrame(f, relayRequest{Op: opDialBack, Addr: strings.Repeat("\x01", 900)}),
	} {
		f.Add(false, b)
		f.Add(true, b)
	}

	f.Fuzz(func(t *testing.T, reply bool, b []byte) {
		r := bytes.NewReader(b)
		var got any
		var err error
		if reply {
			got, err = readRelayReply(r)
		} else {
			got, err = readRelayRequest(r)
		}
		if len(b) >= 4 && binary.BigEndian.Uint32(b) > maxRelayMsg {
			var le *transport.LimitError
			if !errors.As(err, &le) {
				t.Fatalf("frame of %d bytes over the %d-byte limit: %v, want a *LimitError", binary.BigEndian.Uint32(b), maxRelayMsg, err)
			}
			return
		}
		if err != nil {
			complete := len(b) >= 4 && len(b)-4 >= int(binary.BigEndian.Uint32(b))
			switch {
			case len(b) == 0:
				if err != io.EOF {
					t.Fatalf("error %v from empty input, want io.EOF", err)
				}
			case !complete:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("error %v from a cut frame, want io.ErrUnexpectedEOF", err)
				}
			case !strings.HasPrefix(err.Error(), "cbor decode"):
				t.Fatalf("error %v from a whole frame is not a decode error", err)
			}
			return
		}
		enc, err := transport.Marshal(got)
		if err != nil {
			t.Fatalf("accepted %+v does not encode: %v", got, err)
		}
		if len(enc) > maxRelayMsg {
			t.Fatalf("accepted %+v encodes to %d bytes, over maxRelayMsg", got, len(enc))
		}
		again := reflect.New(reflect.TypeOf(got))
		if err := transport.Unmarshal(enc, again.Interface()); err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", got, err)
		}
		if !reflect.DeepEqual(again.Elem().Interface(), got) {
			t.Fatalf("round trip changed %+v to %+v", got, again.Elem().Interface())
		}

		if !reply {
			req := got.(relayRequest)
			if req.Op != opDialBack {
				return
			}
			observed := fuzzObserved[len(b)%2]
			target, refuse := dialBackTarget(req.Addr, observed)
			if refuse != nil {
				if refuse.Code != RelayBadRequest && refuse.Code != RelayDialBackRefused {
					t.Fatalf("dial-back refused with code %d", refuse.Code)
				}
				if enc, err := transport.Marshal(refuse.forPeer(observed)); err != nil || len(enc) > maxRelayMsg {
					t.Fatalf("refusal of dial-back address %q is %d bytes (%v), over the %d a reply may have", req.Addr, len(enc), err, maxRelayMsg)
				}
				return
			}
			if target.Addr() != observed.Addr() || target.Port() == 0 {
				t.Fatalf("dial-back address %q from %s accepted as %s", req.Addr, observed, target)
			}
			return
		}
		rep := got.(relayReply)
		if obs := parseObserved(rep.Observed); obs.IsValid() {
			if a := obs.Addr(); a.Is4In6() || a.Zone() != "" || a.IsUnspecified() || obs.Port() == 0 {
				t.Fatalf("observed address %q parsed as %s, not one to publish", rep.Observed, obs)
			}
		}
		rerr := &RelayError{Peer: peer, Op: "ping", Code: rep.Code, Msg: rep.Msg}
		want := codeErrs[rep.Code]
		if rerr.Unwrap() != want || (want != nil && !errors.Is(rerr, want)) {
			t.Fatalf("RelayError of code %d unwraps to %v, want %v", rep.Code, rerr.Unwrap(), want)
		}
	})
}
