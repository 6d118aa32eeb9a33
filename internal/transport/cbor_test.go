package transport

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

type testMsg struct {
	Op   string            `cbor:"1,keyasint"`
	Seq  uint64            `cbor:"2,keyasint"`
	Data []byte            `cbor:"3,keyasint,omitempty"`
	Tags map[string]uint32 `cbor:"4,keyasint,omitempty"`
}

func TestMsgRoundTrip(t *testing.T) {
	in := testMsg{Op: "get", Seq: 42, Data: []byte{1, 2, 3}, Tags: map[string]uint32{"b": 2, "a": 1}}
	var buf bytes.Buffer
	if err := WriteMsg(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out testMsg
	if err := ReadMsg(&buf, 1024, &out); err != nil {
		t.Fatal(err)
	}
	if out.Op != in.Op || out.Seq != in.Seq || !bytes.Equal(out.Data, in.Data) || len(out.Tags) != 2 || out.Tags["a"] != 1 {
		t.Fatalf("got %+v, want %+v", out, in)
	}
	if err := ReadMsg(&buf, 1024, &out); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

func TestMarshalDeterministic(t *testing.T) {
	// Map key order must not depend on Go's map iteration.
	m := map[string]int{}
	for _, k := range strings.Split("q w e r t y u i o p a s d f g h j k l", " ") {
		m[k] = len(k)
	}
	first, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		b, err := Marshal(m)
		if err != nil || !bytes.Equal(b, first) {
			t.Fatalf("Marshal is not deterministic (%v)", err)
		}
	}
	// Shortest integer form (RFC 8949 §4.2.1): 23 is one byte, 24 two.
	if b, err := Marshal(uint64(23)); err != nil || !bytes.Equal(b, []byte{0x17}) {
		t.Fatalf("23 encodes as %x (%v)", b, err)
	}
	if b, err := Marshal(uint64(24)); err != nil || !bytes.Equal(b, []byte{0x18, 0x18}) {
		t.Fatalf("24 encodes as %x (%v)", b, err)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	deep := bytes.Repeat([]byte{0x81}, MaxCBORNestedLevels+1) // [[[[...
	deep = append(deep, 0x00)
	cases := map[string][]byte{
		"duplicate map key": {0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02},
		"trailing bytes":    {0x01, 0x02},
		"indefinite length": {0x9f, 0x01, 0xff},
		"too deep":          deep,
		"huge array claim":  {0x9a, 0xff, 0xff, 0xff, 0xff},
		"invalid utf8":      {0x61, 0xff},
		"truncated":         {0x62, 'a'},
		"empty":             {},
	}
	for name, b := range cases {
		var v any
		if err := Unmarshal(b, &v); err == nil {
			t.Errorf("%s: decoded %x as %v, want error", name, b, v)
		}
	}
}

func TestReadMsgLimit(t *testing.T) {
	var buf bytes.Buffer
	WriteMsg(&buf, strings.Repeat("x", 200))
	var s string
	var le *LimitError
	if err := ReadMsg(&buf, 100, &s); !errors.As(err, &le) {
		t.Fatalf("got %v, want *LimitError", err)
	}
}

func FuzzReadMsg(f *testing.F) {
	for _, v := range []any{
		testMsg{Op: "put", Seq: 1, Data: []byte("x")},
		map[string]any{"a": []any{1, "b", []byte{2}}},
		"hello", uint64(1 << 40), []any{},
	} {
		var buf bytes.Buffer
		if err := WriteMsg(&buf, v); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add([]byte{0, 0, 0, 7, 0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02})
	f.Add([]byte{0, 0, 0, 5, 0x9a, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m testMsg
		if err := ReadMsg(bytes.NewReader(data), 1<<16, &m); err == nil {
			b, err := Marshal(m)
			if err != nil {
				t.Fatalf("re-encode decoded message: %v", err)
			}
			var m2 testMsg
			if err := Unmarshal(b, &m2); err != nil {
				t.Fatalf("decode re-encoded message: %v", err)
			}
		}
		var v any
		if err := ReadMsg(bytes.NewReader(data), 1<<16, &v); err == nil {
			if _, err := Marshal(v); err != nil {
				// Decoded generic values (map[any]any) must re-encode.
				t.Fatalf("re-encode %T: %v", v, err)
			}
		}
	})
}
