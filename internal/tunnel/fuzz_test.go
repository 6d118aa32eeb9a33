package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/flynn/noise"
)

// fuzzConn reads from fixed bytes and swallows writes.
type fuzzConn struct{ r io.Reader }

func (c fuzzConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c fuzzConn) Write(p []byte) (int, error) { return len(p), nil }
func (c fuzzConn) Close() error                { return nil }

// Fixed keys so seeds stay valid across runs.
var (
	fuzzGroup     = key.RecordKey{1, 2, 3}
	fuzzPSK       = [32]byte{9}
	fuzzResponder = mustStatic([32]byte{0x11})
	fuzzInitiator = mustStatic([32]byte{0x22})
)

func mustStatic(priv [32]byte) StaticKey {
	k, err := StaticKeyFromPrivate(priv[:])
	if err != nil {
		panic(err)
	}
	return k
}

// validOpening is a well-formed hello frame and message 1 for fuzzGroup.
func validOpening(t testing.TB, version byte, group key.RecordKey) []byte {
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: suite, Pattern: noise.HandshakeIK, Initiator: true,
		Prologue: prologue(group, nil), PresharedKey: fuzzPSK[:], PresharedKeyPlacement: 2,
		StaticKeypair: fuzzInitiator.dhKey(), PeerStatic: fuzzResponder.Public[:],
	})
	if err != nil {
		t.Fatal(err)
	}
	out := binary.BigEndian.AppendUint16(nil, helloLen)
	out = append(out, version)
	out = append(out, group[:]...)
	out = binary.BigEndian.AppendUint16(out, msg1Len)
	out, _, _, err = hs.WriteMessage(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func FuzzAccept(f *testing.F) {
	open := validOpening(f, Version, fuzzGroup)
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff})
	f.Add(open[:2+helloLen])
	f.Add(open)
	f.Add(validOpening(f, 7, fuzzGroup))
	f.Add(validOpening(f, Version, key.RecordKey{4}))
	f.Add(append(append([]byte(nil), open...), 0, TagSize))
	f.Add(append(append([]byte(nil), open...), bytes.Repeat([]byte{0}, 2+TagSize)...))
	f.Add(append(append([]byte(nil), open...), 0xff, 0xff, 1, 2, 3))
	cfg := AcceptConfig{
		Static: fuzzResponder,
		LookupPSK: func(g key.RecordKey) ([32]byte, bool) {
			return fuzzPSK, g == fuzzGroup
		},
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := Accept(context.Background(), fuzzConn{bytes.NewReader(in)}, cfg)
		if err == nil {
			// Only a forged key confirmation could get here.
			t.Fatalf("Accept succeeded on fuzz input %x", in)
		}
		if s != nil {
			t.Fatal("session returned with an error")
		}
	})
}

// fuzzBinding is the TLS exporter FuzzDialAnswer binds a TLS-transport
// handshake to.
var fuzzBinding = bytes.Repeat([]byte{0xb1}, MinTLSBinding)

// answerConn is the initiator's end of a stream to a responder that is a
// real Noise responder (fuzzResponder, holding fuzzPSK) up to what it
// sends: when Dial writes its hello and message 1, the responder builds
// message 2 with payload as its flags payload, and Dial reads that frame
// as the fuzz input alters it (alter). It records the key confirmation
// Dial writes next and whether Dial closed it.
type answerConn struct {
	t       *testing.T
	binding []byte
	payload []byte
	alter   func(frame []byte) []byte

	r      *bytes.Reader
	frame  []byte             // message 2 as the responder sent it
	sent   int                // bytes Dial was given to read, altered
	recv   *noise.CipherState // the responder's receiving cipher
	hash   []byte             // the responder's handshake hash
	writes [][]byte
	closed bool
}

func (c *answerConn) Read(p []byte) (int, error) {
	if c.r == nil {
		return 0, io.EOF
	}
	return c.r.Read(p)
}

func (c *answerConn) Close() error { c.closed = true; return nil }

func (c *answerConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	if len(c.writes) > 1 {
		return len(p), nil
	}
	// The opening: hello frame, message 1 frame.
	if len(p) < 2+helloLen+2 || int(binary.BigEndian.Uint16(p)) != helloLen || p[2] != Version {
		c.t.Fatalf("Dial wrote a malformed hello: %x", p)
	}
	var group key.RecordKey
	copy(group[:], p[3:2+helloLen])
	msg1 := p[2+helloLen+2:]
	if int(binary.BigEndian.Uint16(p[2+helloLen:])) != len(msg1) {
		c.t.Fatalf("Dial wrote message 1 with a wrong length: %x", p)
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: suite, Pattern: noise.HandshakeIK, Initiator: false,
		Prologue: prologue(group, c.binding), PresharedKey: fuzzPSK[:], PresharedKeyPlacement: 2,
		StaticKeypair: fuzzResponder.dhKey(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	if _, _, _, err := hs.ReadMessage(nil, msg1); err != nil {
		c.t.Fatalf("Dial's message 1 does not decrypt: %v", err)
	}
	frame := binary.BigEndian.AppendUint16(nil, uint16(msg2Len+len(c.payload)))
	frame, cs1, _, err := hs.WriteMessage(frame, c.payload)
	if err != nil {
		c.t.Fatal(err)
	}
	c.frame, c.recv, c.hash = frame, cs1, hs.ChannelBinding()
	answer := c.alter(bytes.Clone(frame))
	c.sent = len(answer)
	c.r = bytes.NewReader(answer)
	return len(p), nil
}

// FuzzDialAnswer fuzzes the dialling side of the tunnel handshake: Dial
// reading the responder's message 2. The responder is real (answerConn)
// and answers with payload as its flags payload, so a member of the group
// that sends any flags can be played; the bytes Dial reads are its message
// 2 frame XORed with mask (a mask longer than the frame appends its tail)
// and cut to cut bytes when cut is non-zero, so the fuzzer can write any
// answer and still start from valid ones. tls makes Dial offer TLS
// transport. It must never panic, and Dial succeeds exactly when the
// frame reached it whole and unaltered and the payload is one it may
// accept (a payload only if it offered flags, and no flag it did not
// offer): a Noise forgery is the only other way. Then the session is in
// TLS transport mode exactly when the responder accepted the flag, it
// names the responder's key and group, shares the responder's handshake
// hash, Dial read nothing past the frame, and its key confirmation
// decrypts, empty, under the responder's key. Otherwise the error wraps
// ErrHandshake and Dial closed the stream.
func FuzzDialAnswer(f *testing.F) {
	fuzzcorpus.Add(f, false, []byte{}, []byte{}, uint16(0))
	fuzzcorpus.Add(f, true, []byte{flagTLSTransport}, []byte{}, uint16(0))
	fuzzcorpus.Add(f, true, []byte{0}, []byte{}, uint16(0))
	fuzzcorpus.Add(f, false, []byte{}, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'n', 'e', 'x', 't'}, uint16(0))
	f.Add(false, []byte{}, []byte{0, 0, 0, 1}, uint16(0))       // a bit of e
	f.Add(false, []byte{}, []byte{0, 1}, uint16(0))             // the length
	f.Add(false, []byte{}, []byte{}, uint16(2+msg2Len-1))       // cut in the tag
	f.Add(false, []byte{}, []byte{}, uint16(1))                 // cut in the length
	f.Add(false, []byte{flagTLSTransport}, []byte{}, uint16(0)) // flags not offered
	f.Add(true, []byte{}, []byte{}, uint16(0))                  // offered, no answer
	f.Add(true, []byte{flagTLSTransport | 0x80}, []byte{}, uint16(0))
	f.Add(true, []byte{1, 1}, []byte{}, uint16(0))
	f.Add(true, []byte{1}, append(make([]byte, 2+msg2Len), 1), uint16(0))                    // the flags byte
	f.Add(false, []byte{}, append(make([]byte, 2+msg2Len), 1, 2, 3, 4), uint16(2+msg2Len+3)) // bytes after it, cut

	f.Fuzz(func(t *testing.T, tls bool, payload, mask []byte, cut uint16) {
		c := &answerConn{t: t, payload: payload, alter: func(b []byte) []byte {
			for i, m := range mask {
				if i < len(b) {
					b[i] ^= m
				} else {
					b = append(b, m)
				}
			}
			if cut != 0 && int(cut) < len(b) {
				b = b[:cut]
			}
			return b
		}}
		cfg := DialConfig{Static: fuzzInitiator, RemoteStatic: fuzzResponder.Public, Group: fuzzGroup, PSK: fuzzPSK}
		var offered []byte
		if tls {
			c.binding, cfg.Binding, cfg.TLSTransport = fuzzBinding, fuzzBinding, true
			offered = []byte{flagTLSTransport}
		}
		if len(payload) > MaxFrame-msg2Len {
			return // the responder cannot send it
		}
		s, err := Dial(context.Background(), c, cfg)

		frameLen := 2 + msg2Len + len(payload)
		intact := (cut == 0 || int(cut) >= frameLen) && !slices.ContainsFunc(mask[:min(len(mask), frameLen)], func(m byte) bool { return m != 0 })
		acceptable := len(payload) == len(offered) && (len(payload) == 0 || payload[0]&^offered[0] == 0)
		if err != nil {
			if !errors.Is(err, ErrHandshake) {
				t.Fatalf("Dial error %v does not wrap ErrHandshake", err)
			}
			if !c.closed {
				t.Fatal("Dial failed and left the stream open")
			}
			if intact && acceptable {
				t.Fatalf("Dial refused an intact answer with payload %x: %v", payload, err)
			}
			return
		}
		if !intact || !acceptable {
			t.Fatalf("Dial accepted an answer altered by mask %x, cut %d, payload %x", mask, cut, payload)
		}
		if want := len(payload) == 1 && payload[0]&flagTLSTransport != 0; s.TLSTransport() != want {
			t.Fatalf("TLS transport %v, the responder's payload %x says %v", s.TLSTransport(), payload, want)
		}
		if s.RemoteStatic() != fuzzResponder.Public || s.Group() != fuzzGroup || !bytes.Equal(s.ChannelBinding(), c.hash) {
			t.Fatal("session does not name the responder, its group and its handshake hash")
		}
		if unread := c.r.Len(); unread != c.sent-frameLen {
			t.Fatalf("Dial left %d bytes unread, want the %d after message 2", unread, c.sent-frameLen)
		}
		if len(c.writes) != 2 || len(c.writes[1]) != 2+TagSize || int(binary.BigEndian.Uint16(c.writes[1])) != TagSize {
			t.Fatalf("key confirmation is not one empty frame: %x", c.writes[1:])
		}
		if pt, err := c.recv.Decrypt(nil, nil, c.writes[1][2:]); err != nil || len(pt) != 0 {
			t.Fatalf("key confirmation does not decrypt empty under the responder's key: %v", err)
		}
	})
}

// fuzzKey keys the transport frames of FuzzSessionRead.
var fuzzKey = [32]byte{0x5e, 0x55}

// bufConn is a stream that collects what is written to it.
type bufConn struct{ *bytes.Buffer }

func (bufConn) Close() error { return nil }

// writeFrames is what a session keyed with fuzzKey writes for pt, in
// Write calls of chunk bytes each, and the plaintext length of each frame.
func writeFrames(pt []byte, chunk int) ([]byte, []int) {
	var out bytes.Buffer
	s := newSession(bufConn{&out}, noise.UnsafeNewCipherState(suite, fuzzKey, 0), nil, fuzzGroup, [32]byte{}, nil)
	var sizes []int
	for len(pt) > 0 {
		n := min(chunk, len(pt))
		if _, err := s.Write(pt[:n]); err != nil {
			panic(err)
		}
		for m := n; m > 0; m -= MaxPlaintext {
			sizes = append(sizes, min(m, MaxPlaintext))
		}
		pt = pt[n:]
	}
	return out.Bytes(), sizes
}

// FuzzSessionRead fuzzes the transport frames a session reads after the
// handshake (Session.Read, readFrame). The stream is what a peer's session
// writes for pt in Write calls of chunk bytes, XORed with mask (a longer
// mask appends its tail) and cut to cut bytes when cut is non-zero; the
// reader reads it with a buffer of buf bytes. It must never panic, and:
//
//   - what Read returns is always a prefix of pt: no byte that failed
//     authentication, or came out of order, is ever handed on;
//   - no Read returns more than len(p) bytes or more than one frame's
//     MaxPlaintext;
//   - reading ends with io.EOF at a frame boundary (everything read is
//     the plaintext of whole frames) or with an error wrapping ErrFrame,
//     and the next Read returns the same error;
//   - frames that arrive unaltered are read whole; then an unaltered
//     stream ends with io.EOF.
func FuzzSessionRead(f *testing.F) {
	fuzzcorpus.Add(f, []byte("hello, tunnel"), uint16(5), []byte{}, uint32(0), uint16(4))
	fuzzcorpus.Add(f, bytes.Repeat([]byte("0123456789"), 1000), uint16(4096), []byte{}, uint32(0), uint16(1000))
	fuzzcorpus.Add(f, []byte("x"), uint16(1), []byte{}, uint32(0), uint16(0))
	f.Add([]byte("hello, tunnel"), uint16(5), []byte{0, 0, 1}, uint32(0), uint16(4))    // ciphertext
	f.Add([]byte("hello, tunnel"), uint16(5), []byte{0, 1}, uint32(0), uint16(4))       // a length
	f.Add([]byte("hello, tunnel"), uint16(5), []byte{}, uint32(2+5+TagSize), uint16(4)) // a frame boundary
	f.Add([]byte("hello, tunnel"), uint16(5), []byte{}, uint32(2+5+TagSize-1), uint16(4))
	f.Add([]byte("hello, tunnel"), uint16(5), []byte{}, uint32(1), uint16(4))
	f.Add([]byte{}, uint16(0), []byte{0, 0}, uint32(0), uint16(4))                                 // an empty frame without its tag
	f.Add([]byte{}, uint16(0), []byte{0xff, 0xff}, uint32(0), uint16(4))                           // a 64 KiB frame, cut
	f.Add([]byte("ab"), uint16(1), append(make([]byte, 2+1+TagSize), 0, 17), uint32(0), uint16(4)) // garbage after
	f.Fuzz(func(t *testing.T, pt []byte, chunk uint16, mask []byte, cut uint32, buf uint16) {
		stream, sizes := writeFrames(pt, int(chunk)+1)
		// intact: every frame arrives unaltered (garbage may follow).
		intact := cut == 0 || int(cut) >= len(stream)
		appended := len(mask) > len(stream)
		for i, m := range mask {
			if i < len(stream) {
				stream[i] ^= m
				intact = intact && m == 0
			} else {
				stream = append(stream, m)
			}
		}
		unaltered := intact && !appended
		if cut != 0 && int(cut) < len(stream) {
			stream = stream[:cut]
		}
		s := newSession(fuzzConn{bytes.NewReader(stream)}, nil, noise.UnsafeNewCipherState(suite, fuzzKey, 0), fuzzGroup, [32]byte{}, nil)
		p := make([]byte, int(buf)+1)
		var got []byte
		var err error
		for err == nil {
			var n int
			n, err = s.Read(p)
			if n > len(p) || n > MaxPlaintext {
				t.Fatalf("Read returned %d bytes into %d", n, len(p))
			}
			if len(got)+n > len(pt) || !bytes.Equal(p[:n], pt[len(got):len(got)+n]) {
				t.Fatalf("Read handed on bytes %d..%d, which are not the plaintext's", len(got), len(got)+n)
			}
			got = append(got, p[:n]...)
		}
		if n, again := s.Read(p); n != 0 || again != err {
			t.Fatalf("after %v, Read returned %d, %v", err, n, again)
		}
		if err != io.EOF {
			if !errors.Is(err, ErrFrame) {
				t.Fatalf("Read error %v is neither io.EOF nor ErrFrame", err)
			}
			if unaltered {
				t.Fatalf("unaltered stream refused after %d bytes: %v", len(got), err)
			}
			if intact && len(got) != len(pt) {
				t.Fatalf("%v after %d bytes of %d, all in frames that arrived unaltered", err, len(got), len(pt))
			}
			return
		}
		whole := 0
		for _, n := range sizes {
			if whole == len(got) {
				break
			}
			whole += n
		}
		if whole != len(got) {
			t.Fatalf("io.EOF after %d bytes, inside a frame", len(got))
		}
		if intact && len(got) != len(pt) {
			t.Fatalf("frames arrived unaltered: read %d bytes of %d, then io.EOF", len(got), len(pt))
		}
	})
}
