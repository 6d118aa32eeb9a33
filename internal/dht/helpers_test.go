package dht

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
)

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// signedAt signs data as the value of subkey at any seq, as a hostile
// writer can, past record.NewValue's checks (the signed message is
// record's, in its package doc).
func signedAt(k key.RecordKey, subkey uint32, seq uint64, data []byte, w key.Keypair) *record.Value {
	msg := append([]byte("dweb record value v1\x00"), k[:]...)
	msg = binary.BigEndian.AppendUint32(msg, subkey)
	msg = binary.BigEndian.AppendUint64(msg, seq)
	msg = append(msg, data...)
	return &record.Value{Seq: seq, Data: data, Writer: w.Public(), Sig: w.Sign(msg)}
}
