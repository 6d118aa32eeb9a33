package record

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/zeebo/blake3"
)

func blakeSum(b []byte) [32]byte { return blake3.Sum256(b) }

func FuzzDecodeValue(f *testing.F) {
	owner, _, d := testRecord(f)
	for _, data := range [][]byte{nil, []byte("x"), make([]byte, 300)} {
		f.Add(mustEncode(f, mustValue(f, d.Key(), 0, 3, data, owner)))
	}
	// Validly signed, but above MaxSeq: VerifyValue must refuse them.
	for _, seq := range []uint64{MaxSeq + 1, 1<<64 - 1} {
		f.Add(mustEncode(f, signedAt(d.Key(), 0, seq, []byte("x"), owner)))
	}
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa4, 0x01, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeValue(b)
		if err != nil {
			return
		}
		if len(v.Writer) != 32 || len(v.Sig) != 64 || len(v.Data) > MaxValueSize {
			t.Fatalf("decoded bad shape: %d %d %d", len(v.Writer), len(v.Sig), len(v.Data))
		}
		if err := d.VerifyValue(0, v); err == nil && v.Seq > MaxSeq {
			t.Fatalf("VerifyValue accepted seq %d, over MaxSeq", v.Seq)
		}
		enc, err := EncodeValue(v)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := DecodeValue(enc)
		if err != nil || v2.Seq != v.Seq || !bytes.Equal(v2.Data, v.Data) || !bytes.Equal(v2.Sig, v.Sig) {
			t.Fatalf("re-decode: %v", err)
		}
		if Better(v, v2) || Better(v2, v) {
			t.Fatal("re-decoded value compares unequal")
		}
	})
}

func FuzzDecodeDescriptor(f *testing.F) {
	_, _, d := testRecord(f)
	checked := Schema{Membership: &MembershipSchema{FirstAdmin: key.NewKeypair().Public(), Slots: 64}}
	for _, d := range []*Descriptor{d, mustDescriptor(f, key.NewKeypair(), Schema{OwnerSubkeys: 1}), mustDescriptor(f, key.NewKeypair(), checked)} {
		b, err := EncodeDescriptor(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xa3, 0x01, 0x40, 0x02, 0xa0, 0x03, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDescriptor(b)
		if err != nil {
			return
		}
		if len(d.Owner) != 32 || len(d.Sig) != 64 {
			t.Fatalf("decoded bad shape")
		}
		n := d.SubkeyCount()
		if n == 0 || n > MaxSubkeys {
			t.Fatalf("decoded schema with %d subkeys", n)
		}
		if m := d.Schema.Membership; m != nil {
			if len(m.FirstAdmin) != 32 || n != 1+m.Slots || d.Schema.OwnerSubkeys != 0 || len(d.Schema.Members) != 0 {
				t.Fatalf("decoded membership-checked schema %+v with %d subkeys", d.Schema, n)
			}
			if _, err := d.Writer(0); !errors.Is(err, ErrNotWriter) {
				t.Fatalf("Writer(0) of a membership-checked record: %v", err)
			}
		} else {
			for sk := uint32(0); sk < n; sk++ {
				if w, err := d.Writer(sk); err != nil || len(w) != 32 {
					t.Fatalf("Writer(%d): %v", sk, err)
				}
			}
		}
		_ = d.Verify() // must not panic
		_ = d.Key()
	})
}
