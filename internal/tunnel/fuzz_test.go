package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"testing"

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
