package record

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dwebkit/dweb/internal/key"
)

func testRecord(t testing.TB) (owner, member key.Keypair, d *Descriptor) {
	t.Helper()
	owner, member = key.NewKeypair(), key.NewKeypair()
	d, err := NewDescriptor(owner, Schema{OwnerSubkeys: 2, Members: []MemberRange{{Key: member.Public(), Count: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	return owner, member, d
}

// mustValue is NewValue for setup: an error fails the test, so a check on
// the value never runs on a nil one.
func mustValue(t testing.TB, k key.RecordKey, subkey uint32, seq uint64, data []byte, writer key.Keypair) *Value {
	t.Helper()
	v, err := NewValue(k, subkey, seq, data, writer)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// mustDescriptor is NewDescriptor for setup; an error fails the test.
func mustDescriptor(t testing.TB, owner key.Keypair, s Schema) *Descriptor {
	t.Helper()
	d, err := NewDescriptor(owner, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// mustEncode is EncodeValue for setup; an error fails the test.
func mustEncode(t testing.TB, v *Value) []byte {
	t.Helper()
	b, err := EncodeValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDescriptorRoundTrip(t *testing.T) {
	owner, member, d := testRecord(t)
	if err := d.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if d.SubkeyCount() != 5 {
		t.Fatalf("SubkeyCount = %d, want 5", d.SubkeyCount())
	}
	b, err := EncodeDescriptor(d)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := DecodeDescriptor(b)
	if err != nil {
		t.Fatalf("DecodeDescriptor: %v", err)
	}
	if d2.Key() != d.Key() || d2.Verify() != nil {
		t.Fatal("decoded descriptor differs")
	}
	b2, err := EncodeDescriptor(d2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatal("encoding is not deterministic")
	}
	for sk, want := range [][]byte{owner.Public(), owner.Public(), member.Public(), member.Public(), member.Public()} {
		w, err := d.Writer(uint32(sk))
		if err != nil || !bytes.Equal(w, want) {
			t.Fatalf("Writer(%d) = %x, %v", sk, w, err)
		}
	}
	if _, err := d.Writer(5); !errors.Is(err, ErrSubkeyRange) {
		t.Fatalf("Writer(5) err = %v, want ErrSubkeyRange", err)
	}
}

func TestRecordKeyCommitsToSchema(t *testing.T) {
	owner := key.NewKeypair()
	d1 := mustDescriptor(t, owner, Schema{OwnerSubkeys: 1})
	d2 := mustDescriptor(t, owner, Schema{OwnerSubkeys: 2})
	d3 := mustDescriptor(t, key.NewKeypair(), Schema{OwnerSubkeys: 1})
	if d1.Key() == d2.Key() || d1.Key() == d3.Key() {
		t.Fatal("record keys collide across schema or owner")
	}
	d1again := mustDescriptor(t, owner, Schema{OwnerSubkeys: 1})
	if d1.Key() != d1again.Key() {
		t.Fatal("record key is not deterministic")
	}
}

func TestBadSchemaRefused(t *testing.T) {
	owner := key.NewKeypair()
	m := key.NewKeypair().Public()
	for name, s := range map[string]Schema{
		"empty":        {},
		"too many":     {OwnerSubkeys: MaxSubkeys + 1},
		"sum too many": {OwnerSubkeys: MaxSubkeys, Members: []MemberRange{{Key: m, Count: 1}}},
		"overflow":     {OwnerSubkeys: 1, Members: []MemberRange{{Key: m, Count: ^uint32(0)}, {Key: m, Count: 2}}},
		"short key":    {OwnerSubkeys: 1, Members: []MemberRange{{Key: m[:31], Count: 1}}},
		"zero count":   {OwnerSubkeys: 1, Members: []MemberRange{{Key: m, Count: 0}}},
	} {
		if _, err := NewDescriptor(owner, s); !errors.Is(err, ErrBadSchema) {
			t.Errorf("%s: err = %v, want ErrBadSchema", name, err)
		}
	}
	if _, err := NewDescriptor(owner, Schema{Members: []MemberRange{{Key: m, Count: MaxSubkeys}}}); err != nil {
		t.Errorf("members only, MaxSubkeys: %v", err)
	}
}

func TestForgedDescriptorRefused(t *testing.T) {
	_, _, d := testRecord(t)
	forged := *d
	forged.Schema.OwnerSubkeys = 3 // owner did not sign this schema
	if err := forged.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("changed schema: err = %v, want ErrBadSignature", err)
	}
	other := key.NewKeypair()
	forged = *d
	forged.Owner = other.Public() // same schema, someone else claims it
	if err := forged.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("changed owner: err = %v, want ErrBadSignature", err)
	}
	forged = *d
	forged.Sig = forged.Sig[:10]
	if err := forged.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("short sig: err = %v", err)
	}
	forged = *d
	forged.Owner = forged.Owner[:5]
	if err := forged.Verify(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short owner: err = %v", err)
	}
}

func TestValueRoundTripAndVerify(t *testing.T) {
	owner, member, d := testRecord(t)
	k := d.Key()
	v, err := NewValue(k, 0, 7, []byte("hello"), owner)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.VerifyValue(0, v); err != nil {
		t.Fatalf("VerifyValue: %v", err)
	}
	b, err := EncodeValue(v)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := DecodeValue(b)
	if err != nil {
		t.Fatalf("DecodeValue: %v", err)
	}
	if v2.Seq != 7 || !bytes.Equal(v2.Data, []byte("hello")) || d.VerifyValue(0, v2) != nil {
		t.Fatalf("decoded value %+v differs", v2)
	}
	mv := mustValue(t, k, 3, 1, []byte("member"), member)
	if err := d.VerifyValue(3, mv); err != nil {
		t.Fatalf("member value: %v", err)
	}
	// Empty data is a valid value (a cleared subkey).
	ev := mustValue(t, k, 1, 1, nil, owner)
	if err := d.VerifyValue(1, ev); err != nil {
		t.Fatalf("empty value: %v", err)
	}
}

func TestValueRefused(t *testing.T) {
	owner, member, d := testRecord(t)
	k := d.Key()
	v := mustValue(t, k, 0, 1, []byte("x"), owner)

	forged := *v
	forged.Data = []byte("y")
	if err := d.VerifyValue(0, &forged); !errors.Is(err, ErrBadSignature) {
		t.Errorf("changed data: err = %v, want ErrBadSignature", err)
	}
	forged = *v
	forged.Seq = 2
	if err := d.VerifyValue(0, &forged); !errors.Is(err, ErrBadSignature) {
		t.Errorf("changed seq: err = %v, want ErrBadSignature", err)
	}
	if err := d.VerifyValue(1, v); !errors.Is(err, ErrBadSignature) {
		t.Errorf("moved to subkey 1: err = %v, want ErrBadSignature", err)
	}
	_, _, other := testRecord(t)
	ov := mustValue(t, other.Key(), 0, 1, []byte("x"), owner)
	if err := d.VerifyValue(0, ov); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signed for another record: err = %v, want ErrBadSignature", err)
	}

	// Wrong writer: the member writes an owner subkey, the owner a member one,
	// a stranger anything.
	mv := mustValue(t, k, 0, 1, []byte("x"), member)
	if err := d.VerifyValue(0, mv); !errors.Is(err, ErrNotWriter) {
		t.Errorf("member on owner subkey: err = %v, want ErrNotWriter", err)
	}
	ow := mustValue(t, k, 2, 1, []byte("x"), owner)
	if err := d.VerifyValue(2, ow); !errors.Is(err, ErrNotWriter) {
		t.Errorf("owner on member subkey: err = %v, want ErrNotWriter", err)
	}
	sv := mustValue(t, k, 4, 1, []byte("x"), key.NewKeypair())
	if err := d.VerifyValue(4, sv); !errors.Is(err, ErrNotWriter) {
		t.Errorf("stranger: err = %v, want ErrNotWriter", err)
	}
	rv := mustValue(t, k, 5, 1, []byte("x"), member)
	if err := d.VerifyValue(5, rv); !errors.Is(err, ErrSubkeyRange) {
		t.Errorf("subkey 5: err = %v, want ErrSubkeyRange", err)
	}

	// Oversize: refused at creation, and a hand-made one at verification.
	big := make([]byte, MaxValueSize+1)
	_, err := NewValue(k, 0, 1, big, owner)
	var le *LimitError
	if !errors.Is(err, ErrTooLarge) || !errors.As(err, &le) || le.Max != MaxValueSize {
		t.Errorf("NewValue oversize: err = %v", err)
	}
	if _, err := NewValue(k, 0, 1, big[:MaxValueSize], owner); err != nil {
		t.Errorf("NewValue at the limit: %v", err)
	}
	huge := &Value{Seq: 1, Data: big, Writer: owner.Public(), Sig: owner.Sign(valueSigned(k, 0, 1, big))}
	if err := d.VerifyValue(0, huge); !errors.Is(err, ErrTooLarge) {
		t.Errorf("VerifyValue oversize: err = %v, want ErrTooLarge", err)
	}
	hb := mustEncode(t, huge)
	if _, err := DecodeValue(hb); !errors.Is(err, ErrTooLarge) {
		t.Errorf("DecodeValue oversize: err = %v, want ErrTooLarge", err)
	}
	if err := d.VerifyValue(0, nil); err == nil {
		t.Error("nil value accepted")
	}
}

// signedAt is a value at seq signed as a hostile writer would sign it,
// past NewValue's check.
func signedAt(k key.RecordKey, subkey uint32, seq uint64, data []byte, w key.Keypair) *Value {
	return &Value{Seq: seq, Data: data, Writer: w.Public(), Sig: w.Sign(valueSigned(k, subkey, seq, data))}
}

func TestSeqLimit(t *testing.T) {
	owner, _, d := testRecord(t)
	k := d.Key()
	if _, err := NewValue(k, 0, MaxSeq, []byte("x"), owner); err != nil {
		t.Errorf("NewValue at MaxSeq: %v", err)
	}
	for _, seq := range []uint64{MaxSeq + 1, MaxSeq * 2, 1<<64 - 1} {
		if _, err := NewValue(k, 0, seq, []byte("x"), owner); !errors.Is(err, ErrSeqRange) {
			t.Errorf("NewValue seq %d: err = %v, want ErrSeqRange", seq, err)
		}
		v := signedAt(k, 0, seq, []byte("x"), owner)
		if err := d.VerifyValue(0, v); !errors.Is(err, ErrSeqRange) {
			t.Errorf("VerifyValue seq %d: err = %v, want ErrSeqRange", seq, err)
		}
		// The codec still reads it: a holder decodes, then refuses it.
		if dv, err := DecodeValue(mustEncode(t, v)); err != nil || dv.Seq != seq {
			t.Errorf("DecodeValue seq %d: %v", seq, err)
		}
	}
	if err := d.VerifyValue(0, signedAt(k, 0, MaxSeq, []byte("x"), owner)); err != nil {
		t.Errorf("VerifyValue at MaxSeq: %v", err)
	}
	if n, err := NextSeq(MaxSeq - 1); err != nil || n != MaxSeq {
		t.Errorf("NextSeq(MaxSeq-1) = %d, %v", n, err)
	}
	for _, seq := range []uint64{MaxSeq, MaxSeq + 1, 1<<64 - 1} {
		if _, err := NextSeq(seq); !errors.Is(err, ErrSeqRange) {
			t.Errorf("NextSeq(%d): err = %v, want ErrSeqRange", seq, err)
		}
	}
}

func TestBetter(t *testing.T) {
	owner, _, d := testRecord(t)
	k := d.Key()
	mk := func(seq uint64, data string) *Value {
		v, err := NewValue(k, 0, seq, []byte(data), owner)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	lo, hi := mk(1, "zzz"), mk(2, "aaa")
	if !Better(hi, lo) || Better(lo, hi) {
		t.Fatal("higher seq does not win")
	}
	if !Better(lo, nil) || Better(nil, lo) || Better(nil, nil) {
		t.Fatal("nil handling wrong")
	}
	same := mk(1, "zzz")
	if Better(lo, same) || Better(same, lo) {
		t.Fatal("equal values: neither should win")
	}
	// Equal seq, different data: the smaller BLAKE3(Data) wins, and exactly
	// one side wins whichever way round it is asked.
	vals := []*Value{}
	for _, s := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		vals = append(vals, mk(5, s))
	}
	for _, a := range vals {
		for _, b := range vals {
			if a == b {
				continue
			}
			if Better(a, b) == Better(b, a) {
				t.Fatalf("Better not antisymmetric for %q, %q", a.Data, b.Data)
			}
			ha, hb := blakeSum(a.Data), blakeSum(b.Data)
			if Better(a, b) != (bytes.Compare(ha[:], hb[:]) < 0) {
				t.Fatalf("tie-break for %q vs %q does not follow BLAKE3(Data)", a.Data, b.Data)
			}
		}
	}
	// Transitivity: the winner of the whole set beats every other value.
	w := vals[0]
	for _, v := range vals[1:] {
		if Better(v, w) {
			w = v
		}
	}
	for _, v := range vals {
		if v != w && !Better(w, v) {
			t.Fatalf("winner %q does not beat %q", w.Data, v.Data)
		}
	}
	// Same data, different signature bytes (not verifiable, but Better must
	// still be total).
	x := *vals[0]
	x.Sig = bytes.Clone(x.Sig)
	x.Sig[0] ^= 1
	if Better(&x, vals[0]) == Better(vals[0], &x) {
		t.Fatal("Better not total on differing signatures")
	}
}

func TestSealOpen(t *testing.T) {
	secret := key.NewSecret()
	_, _, d := testRecord(t)
	_, _, d2 := testRecord(t)
	k := d.Key()
	pt := []byte("group name")
	sealed, err := Seal(secret, k, 1, pt)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != len(pt)+SealOverhead || bytes.Contains(sealed, pt) {
		t.Fatalf("sealed is %d bytes or holds the plaintext", len(sealed))
	}
	got, err := Open(secret, k, 1, sealed)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	again, err := Seal(secret, k, 1, pt)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again, sealed) {
		t.Fatal("nonce not random")
	}
	for name, f := range map[string]func() ([]byte, error){
		"other subkey": func() ([]byte, error) { return Open(secret, k, 2, sealed) },
		"other record": func() ([]byte, error) { return Open(secret, d2.Key(), 1, sealed) },
		"other secret": func() ([]byte, error) { return Open(key.NewSecret(), k, 1, sealed) },
		"altered": func() ([]byte, error) {
			b := bytes.Clone(sealed)
			b[len(b)-1] ^= 1
			return Open(secret, k, 1, b)
		},
		"short": func() ([]byte, error) { return Open(secret, k, 1, sealed[:10]) },
	} {
		if _, err := f(); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: err = %v, want ErrDecrypt", name, err)
		}
	}
	full, err := Seal(secret, k, 0, make([]byte, MaxPlaintextSize))
	if err != nil || len(full) != MaxValueSize {
		t.Fatalf("Seal at MaxPlaintextSize: %d bytes, %v", len(full), err)
	}
	if _, err := Seal(secret, k, 0, make([]byte, MaxPlaintextSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Seal oversize: err = %v", err)
	}
}

func TestDecodeRejectsBadShapes(t *testing.T) {
	owner, _, d := testRecord(t)
	k := d.Key()
	v := mustValue(t, k, 0, 1, []byte("x"), owner)
	for name, bad := range map[string]*Value{
		"short writer": {Seq: 1, Data: v.Data, Writer: v.Writer[:31], Sig: v.Sig},
		"no sig":       {Seq: 1, Data: v.Data, Writer: v.Writer},
	} {
		b := mustEncode(t, bad)
		if _, err := DecodeValue(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	for name, b := range map[string][]byte{
		"empty":      {},
		"array":      {0x80},
		"indefinite": {0xbf, 0xff},
		"dup keys":   {0xa2, 0x01, 0x01, 0x01, 0x02},
		"tag":        {0xc1, 0x00},
	} {
		if _, err := DecodeValue(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("value %s: err = %v", name, err)
		}
		if _, err := DecodeDescriptor(b); err == nil {
			t.Errorf("descriptor %s: decoded", name)
		}
	}
	if _, err := DecodeDescriptor(make([]byte, MaxEncodedDescriptor+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversize descriptor: err = %v", err)
	}
}

func TestMembershipSchema(t *testing.T) {
	// The default kind's encoding is unchanged by the new field, so the
	// keys of every existing record stay what they were.
	if got, want := (Schema{OwnerSubkeys: 65}).Bytes(), []byte{0xa1, 0x01, 0x18, 0x41}; !bytes.Equal(got, want) {
		t.Fatalf("default schema encodes as %x, want %x", got, want)
	}
	admin, other := key.NewKeypair(), key.NewKeypair()
	s := Schema{Membership: &MembershipSchema{FirstAdmin: admin.Public(), Slots: 64}}
	d := mustDescriptor(t, key.NewKeypair(), s)
	if n := d.SubkeyCount(); n != 65 {
		t.Fatalf("SubkeyCount = %d, want 65", n)
	}
	// The key commits to the first admin.
	s2 := Schema{Membership: &MembershipSchema{FirstAdmin: other.Public(), Slots: 64}}
	if d2 := (&Descriptor{Owner: d.Owner, Schema: s2}); d2.Key() == d.Key() {
		t.Fatal("record key does not commit to the first admin")
	}
	if _, err := d.Writer(3); !errors.Is(err, ErrNotWriter) {
		t.Fatalf("Writer: %v, want ErrNotWriter", err)
	}
	// Any writer's well-signed value passes VerifyValue: the list decides.
	for _, w := range []key.Keypair{admin, other} {
		if err := d.VerifyValue(5, mustValue(t, d.Key(), 5, 1, []byte("x"), w)); err != nil {
			t.Fatalf("VerifyValue: %v", err)
		}
	}
	v := mustValue(t, d.Key(), 5, 1, []byte("x"), other)
	v.Data = []byte("y")
	if err := d.VerifyValue(5, v); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("altered value: %v, want ErrBadSignature", err)
	}
	if err := d.VerifyValue(65, mustValue(t, d.Key(), 65, 1, nil, other)); !errors.Is(err, ErrSubkeyRange) {
		t.Fatalf("subkey 65: %v, want ErrSubkeyRange", err)
	}
	if err := d.VerifyValue(1, signedAt(d.Key(), 1, MaxSeq+1, nil, other)); !errors.Is(err, ErrSeqRange) {
		t.Fatalf("seq above MaxSeq: %v, want ErrSeqRange", err)
	}
	for _, bad := range []Schema{
		{Membership: &MembershipSchema{FirstAdmin: admin.Public()[:31], Slots: 1}},
		{Membership: &MembershipSchema{FirstAdmin: admin.Public(), Slots: 0}},
		{Membership: &MembershipSchema{FirstAdmin: admin.Public(), Slots: MaxSubkeys}},
		{OwnerSubkeys: 1, Membership: &MembershipSchema{FirstAdmin: admin.Public(), Slots: 1}},
		{Members: []MemberRange{{Key: other.Public(), Count: 1}}, Membership: &MembershipSchema{FirstAdmin: admin.Public(), Slots: 1}},
	} {
		if _, err := NewDescriptor(admin, bad); !errors.Is(err, ErrBadSchema) {
			t.Errorf("schema %+v: %v, want ErrBadSchema", bad.Membership, err)
		}
	}
	enc, err := EncodeDescriptor(d)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeDescriptor(enc)
	if err != nil || back.Verify() != nil || back.Key() != d.Key() {
		t.Fatalf("round trip: %v", err)
	}
}
