package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	payloads := [][]byte{{}, []byte("hello"), bytes.Repeat([]byte{7}, 5000)}
	for _, p := range payloads {
		if err := WriteFrame(&buf, p); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range payloads {
		got, err := ReadFrame(&buf, 1<<20)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := ReadFrame(&buf, 1<<20); err != io.EOF {
		t.Fatalf("at end: got %v, want io.EOF", err)
	}
}

func TestReadFrameTruncated(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, []byte("hello world")); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	for _, n := range []int{1, 3, 4, 5, len(full) - 1} {
		_, err := ReadFrame(bytes.NewReader(full[:n]), 100)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: got %v, want io.ErrUnexpectedEOF", n, err)
		}
	}
}

func TestReadFrameLimit(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, make([]byte, 101)); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFrame(&buf, 100)
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("got %v, want *LimitError", err)
	}
	if le.Size != 101 || le.Max != 100 || le.What != "frame" {
		t.Fatalf("got %+v", le)
	}
	if got, want := le.Error(), "frame: 101 bytes exceeds limit 100"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	// Exactly at the limit is fine.
	buf.Reset()
	WriteFrame(&buf, make([]byte, 100))
	if _, err := ReadFrame(&buf, 100); err != nil {
		t.Fatalf("frame at limit: %v", err)
	}
}

// A header claiming 4 GiB must be refused before any payload allocation.
func TestReadFrameHugeLengthDoesNotAllocate(t *testing.T) {
	hdr := []byte{0xff, 0xff, 0xff, 0xff}
	r := bytes.NewReader(hdr)
	var err error
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(hdr)
		_, err = ReadFrame(r, 16<<20)
	})
	var le *LimitError
	if !errors.As(err, &le) || le.Size != 1<<32-1 {
		t.Fatalf("got %v, want *LimitError for 4294967295 bytes", err)
	}
	if allocs > 2 { // the header buffer and the *LimitError at most
		t.Fatalf("%v allocations per call, want <= 2", allocs)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r.Reset(hdr)
	ReadFrame(r, 16<<20)
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
		t.Fatalf("ReadFrame allocated %d bytes for a refused frame", d)
	}
}

func TestReadFrameNegativeMax(t *testing.T) {
	var le *LimitError
	if _, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 1, 9}), -5); !errors.As(err, &le) {
		t.Fatalf("got %v, want *LimitError", err)
	}
	if b, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 0}), -5); err != nil || len(b) != 0 {
		t.Fatalf("empty frame with negative max: %v %v", b, err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0}, 16)
	f.Add([]byte{0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}, 16)
	f.Add([]byte{0, 0, 0, 5, 'h', 'e'}, 16)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, 1<<20)
	f.Add([]byte{0, 0}, 16)
	f.Add([]byte{}, 0)
	f.Add([]byte{0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 1, 9}, 3)
	// A long announcement that sends little, and a payload over several
	// of the body buffer's growth steps.
	f.Add([]byte{0, 1, 0, 0, 1, 2, 3}, 1<<20)
	f.Add(append([]byte{0, 0, 0x27, 0x10}, bytes.Repeat([]byte{0x5a}, 10000)...), 1<<20)
	f.Fuzz(func(t *testing.T, data []byte, maxSize int) {
		maxSize %= 1 << 20       // keep the fuzzer's own allocations small
		limit := max(maxSize, 0) // ReadFrame treats a negative max as 0
		r := bytes.NewReader(data)
		b, err := ReadFrame(r, maxSize)
		if err != nil {
			var le *LimitError
			switch {
			case err == io.EOF:
				if len(data) != 0 {
					t.Fatalf("io.EOF with %d bytes of input", len(data))
				}
			case errors.Is(err, io.ErrUnexpectedEOF):
			case errors.As(err, &le):
				if le.Size <= int64(limit) {
					t.Fatalf("LimitError %v under the limit %d", le, limit)
				}
			default:
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(b) > limit {
			t.Fatalf("frame of %d bytes over max %d", len(b), limit)
		}
		if n := binary.BigEndian.Uint32(data); int(n) != len(b) || !bytes.Equal(b, data[4:4+len(b)]) {
			t.Fatalf("frame does not match input")
		}
		var out bytes.Buffer
		if err := WriteFrame(&out, b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data[:4+len(b)]) {
			t.Fatalf("re-encoding differs")
		}
	})
}
