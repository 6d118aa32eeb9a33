package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
)

// fuzzAdminURI is an admin URI with fixed keys, so its text stays the
// same across runs.
func fuzzAdminURI(addrs ...string) AdminURI {
	u := AdminURI{Node: key.NodeID{0: 0xad, 31: 1}, Noise: [32]byte{0: 0x40, 31: 2}, Key: key.Secret{0: 0x5e, 31: 3}}
	for _, a := range addrs {
		u.Addrs = append(u.Addrs, netip.MustParseAddrPort(a))
	}
	return u
}

// FuzzParseAdminURI parses arbitrary text as an admin URI (ParseAdminURI:
// the CLI's --to and `dweb admin` arguments, the drain API's "to" list).
// It must never panic. A refusal wraps ErrAdminURI and is one line. An
// accepted URI names a node, a Noise key and a secret that are not zero,
// and 1 to 4 addresses with a port; its String parses to an equal URI and
// is stable. Seeds and the corpus are URIs as AdminURI.String writes
// them; the seeds add the broken ones of TestAdminURIRoundTrip's kind.
func FuzzParseAdminURI(f *testing.F) {
	canon := fuzzAdminURI("192.0.2.10:4000").String()
	for _, u := range []AdminURI{
		fuzzAdminURI("192.0.2.10:4000"),
		fuzzAdminURI("192.0.2.10:4000", "[2001:db8::10]:4000"),
		fuzzAdminURI("127.0.0.1:1", "[::1]:2", "10.0.0.1:3", "[fe80::1%eth0]:4"),
	} {
		fuzzcorpus.Add(f, u.String())
	}
	for _, s := range []string{
		"  " + strings.Replace(canon, "dweb+admin:", "DWEB+ADMIN://", 1) + "\n",
		strings.Replace(canon, "dweb+admin", "save+dweb", 1),
		"dweb+admin:",
		"dweb+admin:?",
		strings.Split(canon, "&addr=")[0],
		canon + "&x=1",
		canon + "&v=1",
		strings.Replace(canon, "v=1", "v=01", 1),
		strings.Replace(canon, "v=1", "v=2", 1),
		canon + "&addr=example.org:1",
		canon + "&addr=127.0.0.1:0",
		canon + "&addr=%5B%3A%3A1%5D%3A9",
		canon + "&addr=%zz",
		canon + "#x",
		canon + "&addr",
		canon + "&addr=1.2.3.4:5&addr=1.2.3.4:6&addr=1.2.3.4:7&addr=1.2.3.4:8",
		strings.Replace(canon, "key="+key.Secret{0: 0x5e, 31: 3}.Text(), "key=AAAA", 1),
		strings.Replace(canon, "node="+key.NodeID{0: 0xad, 31: 1}.String(), "node="+key.NodeID{}.String(), 1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseAdminURI(s)
		if err != nil {
			if !errors.Is(err, ErrAdminURI) {
				t.Fatalf("error %v does not wrap ErrAdminURI", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q is not one line", err)
			}
			return
		}
		if u.Node.IsZero() || u.Noise == [32]byte{} || u.Key.IsZero() || len(u.Addrs) == 0 || len(u.Addrs) > maxAdminAddrs {
			t.Fatalf("accepted %+v: a zero key, or %d addresses", u, len(u.Addrs))
		}
		for _, a := range u.Addrs {
			if !a.IsValid() || a.Port() == 0 {
				t.Fatalf("accepted address %v", a)
			}
		}
		out := u.String()
		again, err := ParseAdminURI(out)
		if err != nil || !reflect.DeepEqual(again, u) {
			t.Fatalf("String of %q is %q, which parses to %+v, %v", s, out, again, err)
		}
		if out2 := again.String(); out2 != out {
			t.Fatalf("String not stable: %q then %q", out, out2)
		}
	})
}

// adminFrame is v as one admin frame, as WriteMsg sends it.
func adminFrame(tb testing.TB, v any) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := transport.WriteMsg(&b, v); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// FuzzAdminMessage reads arbitrary bytes as the request a backup server
// reads after the admin handshake (readAdminRequest, then
// adminRequest.check, as serveAdmin and adminDo do) or, with reply set, as
// the answer an admin client reads (readAdminResponse). It must never
// panic, and:
//
//   - a frame that declares more than its limit (maxAdminRequest, 16 KiB;
//     maxAdminResponse, 1 MiB) is refused with a *transport.LimitError
//     whatever follows, before its body is read; io.EOF comes only from
//     empty input, io.ErrUnexpectedEOF only from a cut frame, other errors
//     only from a body that does not decode;
//   - a request that check refuses gets a *BadInputError (the answer's
//     code 400); one it passes names a known operation, and a fetch names
//     1 to 256 hashes; either way it encodes again within the limit, to
//     an equal request;
//   - an answer is the groups, or an *AdminError carrying the server's
//     code and message; the groups encode again within the limit, and
//     after one more decode the encoding is stable.
//
// Seeds and the corpus are the requests AdminClient sends and the answers
// adminDo gives, encoded with transport.WriteMsg; the seeds add broken
// frames.
func FuzzAdminMessage(f *testing.F) {
	g := AdminGroup{ID: key.RecordKey{0: 0x61}, Name: "family", CreatedAt: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC),
		Files: 12, Held: 10, Missing: 2, BytesHeld: 1 << 30, LastPass: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
	hashes := make([]blobsync.Hash, maxFetchHashes)
	for i := range hashes {
		hashes[i] = blobsync.HashBytes([]byte{byte(i), byte(i >> 8)})
	}
	for _, req := range []adminRequest{
		{Op: "join", Invite: "save+dweb:?v=1&dht=x"},
		{Op: "list"},
		{Op: "remove", Group: "family"},
		{Op: "fetch", Group: g.ID.String(), Hashes: hashes[:1]},
		{Op: "fetch", Group: "family", Hashes: hashes},
	} {
		fuzzcorpus.Add(f, false, adminFrame(f, req))
	}
	for _, resp := range []adminResponse{
		{Groups: []AdminGroup{g}},
		{Groups: []AdminGroup{}},
		{Groups: []AdminGroup{g, {ID: key.RecordKey{0: 0x62}, Name: "newsroom"}}},
		{Error: "unknown group: \"x\"", Code: 404},
		{Error: "fetch: 0 hashes, want 1 to 256", Code: 400},
	} {
		fuzzcorpus.Add(f, true, adminFrame(f, resp))
	}
	list := adminFrame(f, adminRequest{Op: "list"})
	for _, b := range [][]byte{
		adminFrame(f, adminRequest{Op: "drop"}),
		adminFrame(f, adminRequest{Op: "fetch", Group: "family"}),
		adminFrame(f, struct {
			Op     string          `cbor:"1,keyasint"`
			Hashes []blobsync.Hash `cbor:"4,keyasint"`
		}{"fetch", append(hashes, hashes[0])}),
		adminFrame(f, adminResponse{Code: 500}),
		adminFrame(f, map[int]any{3: "time", 1: []any{map[int]any{3: "not a time"}}}),
		{0, 0, 0x40, 1},
		{0, 0x10, 0, 1},
		list[:len(list)-1],
		append(list, list...),
		{0, 0, 0, 1, 0xa0},
		{},
	} {
		f.Add(false, b)
		f.Add(true, b)
	}
	f.Fuzz(func(t *testing.T, reply bool, b []byte) {
		limit := maxAdminRequest
		if reply {
			limit = maxAdminResponse
		}
		var v any
		var err error
		if reply {
			v, err = readAdminResponse(bytes.NewReader(b))
		} else {
			v, err = readAdminRequest(bytes.NewReader(b))
		}
		if len(b) >= 4 && binary.BigEndian.Uint32(b) > uint32(limit) {
			if !errors.As(err, new(*transport.LimitError)) {
				t.Fatalf("frame of %d bytes over the %d-byte limit: %v, want a *LimitError", binary.BigEndian.Uint32(b), limit, err)
			}
			return
		}
		var ae *AdminError
		if err != nil && !(reply && errors.As(err, &ae)) {
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
		n := int(binary.BigEndian.Uint32(b))
		if !reply {
			req := v.(adminRequest)
			if err := req.check(); err != nil {
				if !errors.As(err, new(*BadInputError)) {
					t.Fatalf("check error %v is not a *BadInputError", err)
				}
			} else if req.Op == "fetch" && (len(req.Hashes) == 0 || len(req.Hashes) > maxFetchHashes) {
				t.Fatalf("fetch of %d hashes passed the check", len(req.Hashes))
			}
			enc, err := transport.Marshal(req)
			if err != nil || len(enc) > maxAdminRequest {
				t.Fatalf("request %+v encodes to %d bytes, %v", req, len(enc), err)
			}
			var again adminRequest
			if err := transport.Unmarshal(enc, &again); err != nil || !reflect.DeepEqual(again, req) {
				t.Fatalf("round trip changed %+v to %+v, %v", req, again, err)
			}
			return
		}
		var resp adminResponse
		if err := transport.Unmarshal(b[4:4+n], &resp); err != nil {
			t.Fatalf("accepted answer does not decode: %v", err)
		}
		if ae != nil {
			if ae.Code != resp.Code || ae.Msg != resp.Error || (ae.Code == 0 && ae.Msg == "") {
				t.Fatalf("AdminError %+v for an answer with code %d, error %q", ae, resp.Code, resp.Error)
			}
			return
		}
		groups := v.([]AdminGroup)
		if resp.Error != "" || resp.Code != 0 || len(groups) != len(resp.Groups) {
			t.Fatalf("groups %d for an answer with code %d, error %q, %d groups", len(groups), resp.Code, resp.Error, len(resp.Groups))
		}
		enc, err := transport.Marshal(adminResponse{Groups: groups})
		if err != nil || len(enc) > maxAdminResponse {
			t.Fatalf("groups encode to %d bytes, %v", len(enc), err)
		}
		again, err := readAdminResponse(bytes.NewReader(adminFrame(t, adminResponse{Groups: groups})))
		if err != nil || len(again) != len(groups) {
			t.Fatalf("re-encoded groups do not read back: %d groups, %v", len(again), err)
		}
		for i := range groups {
			a, b := again[i], groups[i]
			if a.ID != b.ID || a.Name != b.Name || a.Files != b.Files || a.Held != b.Held || a.Missing != b.Missing || a.BytesHeld != b.BytesHeld {
				t.Fatalf("group %d changed in the round trip: %+v, then %+v", i, b, a)
			}
		}
		if enc2, _ := transport.Marshal(adminResponse{Groups: again}); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding not stable: %x then %x", enc, enc2)
		}
	})
}
