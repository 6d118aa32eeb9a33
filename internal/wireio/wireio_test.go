package wireio

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
)

func TestReadN(t *testing.T) {
	for _, n := range []int{0, 1, FirstChunk - 1, FirstChunk, FirstChunk + 1, 5*FirstChunk + 7, 1 << 20} {
		want := make([]byte, n)
		for i := range want {
			want[i] = byte(i * 7)
		}
		// One byte per Read, and a tail the reader must not consume.
		r := iotest.OneByteReader(bytes.NewReader(append(want, 0xee)))
		got, err := ReadN(r, n)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("n=%d: %d bytes, %v", n, len(got), err)
		}
		if cap(got) > 2*n+64 {
			t.Errorf("n=%d: capacity %d", n, cap(got))
		}
		if rest, _ := io.ReadAll(r); !bytes.Equal(rest, []byte{0xee}) {
			t.Errorf("n=%d: read past n, %d bytes left", n, len(rest))
		}
	}
	if _, err := ReadN(bytes.NewReader(nil), 10); err != io.EOF {
		t.Errorf("empty reader: %v, want io.EOF", err)
	}
	for _, have := range []int{1, FirstChunk, FirstChunk + 1, 3 * FirstChunk} {
		if _, err := ReadN(bytes.NewReader(make([]byte, have)), 1<<20); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%d of 1 MiB: %v, want io.ErrUnexpectedEOF", have, err)
		}
	}
	boom := errors.New("boom")
	if _, err := ReadN(io.MultiReader(bytes.NewReader(make([]byte, 100)), iotest.ErrReader(boom)), 1000); !errors.Is(err, boom) {
		t.Errorf("reader error: %v", err)
	}
	if _, err := ReadN(bytes.NewReader(nil), -1); err == nil {
		t.Error("negative length accepted")
	}
}

// TestReadNMemory: a reader that announces 16 MiB and ends after 10 bytes
// costs FirstChunk, not 16 MiB.
func TestReadNMemory(t *testing.T) {
	const runs, announced = 50, 16 << 20
	payload := []byte("ten bytes!")
	perRun := allocBytes(runs, func() {
		if _, err := ReadN(bytes.NewReader(payload), announced); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v", err)
		}
	})
	if perRun > 2*FirstChunk {
		t.Fatalf("%d bytes allocated per read of a 16 MiB announcement that sent 10", perRun)
	}
}

// allocBytes returns the bytes fn allocates per call, averaged over runs.
func allocBytes(runs int, fn func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	fn() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		fn()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

func FuzzReadN(f *testing.F) {
	f.Add([]byte{}, 0)
	f.Add([]byte("abc"), 3)
	f.Add([]byte("abc"), 4)
	f.Add(bytes.Repeat([]byte{1}, 3*FirstChunk+5), 3*FirstChunk+1)
	f.Add([]byte{1, 2}, 1<<20)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		n %= 1 << 20
		got, err := ReadN(iotest.HalfReader(bytes.NewReader(data)), n)
		switch {
		case n < 0:
			if err == nil {
				t.Fatal("negative length accepted")
			}
		case len(data) >= n:
			if err != nil || !bytes.Equal(got, data[:n]) {
				t.Fatalf("ReadN(%d of %d bytes) = %d bytes, %v", n, len(data), len(got), err)
			}
			if cap(got) > max(2*n+64, FirstChunk) {
				t.Fatalf("capacity %d for %d bytes", cap(got), n)
			}
		case len(data) == 0:
			if err != io.EOF {
				t.Fatalf("empty input: %v, want io.EOF", err)
			}
		default:
			if err != io.ErrUnexpectedEOF || got != nil {
				t.Fatalf("%d of %d bytes: %v, want io.ErrUnexpectedEOF", len(data), n, err)
			}
		}
	})
}
