package blobsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/zeebo/blake3"
	"lukechampine.com/blake3/bao"
)

// treeSizes are blob sizes at and around the boundaries that shape the
// tree: empty, chunks, groups, blocks (of the block sizes the tests use)
// and powers of two up to 4 MiB.
func treeSizes() []int {
	sizes := []int{0, 1, 1023, 1024, 1025, 3*ChunkGroupSize + 5}
	for k := 14; k <= 22; k++ {
		sizes = append(sizes, 1<<k-1, 1<<k, 1<<k+1)
	}
	return append(sizes, 3<<20+12345, 5*(1<<16)+ChunkGroupSize)
}

// withBlock runs f with importBlock set to block.
func withBlock(t *testing.T, block uint64, f func()) {
	t.Helper()
	old := importBlock
	importBlock = block
	defer func() { importBlock = old }()
	f()
}

// chunkyReader returns short reads of random lengths, as a network does.
type chunkyReader struct {
	r   io.Reader
	rng *rand.Rand
}

func (c *chunkyReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1+c.rng.IntN(min(len(p), 70000))]
	}
	return c.r.Read(p)
}

// TestHashTree checks hashTree against zeebo/blake3 (the root is the
// plain hash) and against lukechampine's bao.Encode with 16 KiB groups
// (the outboard is the sequential one, byte for byte), for random-access,
// streamed and in-memory (mapped) sources, several block sizes and sizes around every
// boundary; and that the data callback sees every byte once, at its
// offset.
func TestHashTree(t *testing.T) {
	blocks := []uint64{ChunkGroupSize, 2 * ChunkGroupSize, 1 << 16, 1 << 20}
	for _, block := range blocks {
		for _, size := range treeSizes() {
			b := content(size, uint64(size))
			wantRoot := Hash(blake3.Sum256(b))
			var wantOb []byte
			if size > ChunkGroupSize {
				var root [32]byte
				wantOb, root = bao.EncodeBuf(b, ChunkGroupLog, true)
				if root != wantRoot {
					t.Fatalf("size %d: bao root %x, blake3 %s", size, root, wantRoot)
				}
			}
			for _, mode := range []string{"readat", "stream", "mem"} {
				name := fmt.Sprintf("block %d size %d %s", block, size, mode)
				src := treeSource{ra: bytes.NewReader(b), size: int64(size)}
				switch mode {
				case "stream":
					src = treeSource{r: &chunkyReader{bytes.NewReader(b), rand.New(rand.NewPCG(1, uint64(size)))}, limit: int64(size)}
				case "mem":
					// Hashed in place (as from a mapping), so no
					// data callback.
					src.mem = b[:size:size]
				}
				got := make([]byte, size)
				var mu sync.Mutex
				seen := 0
				data := func(p []byte, off int64) error {
					mu.Lock()
					defer mu.Unlock()
					copy(got[off:], p)
					seen += len(p)
					return nil
				}
				var th *treeHash
				var err error
				cb := data
				if mode == "mem" {
					cb = nil
					got, seen = b, size
				}
				withBlock(t, block, func() { th, err = hashTree(context.Background(), src, t.TempDir(), cb) })
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if th.root != wantRoot || th.size != uint64(size) {
					t.Fatalf("%s: root %s size %d, want %s", name, th.root, th.size, wantRoot)
				}
				var ob bytes.Buffer
				if err := th.writeOutboard(&ob); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				th.close()
				if !bytes.Equal(ob.Bytes(), wantOb) {
					t.Fatalf("%s: outboard of %d bytes differs from bao's %d", name, ob.Len(), len(wantOb))
				}
				if seen != size || !bytes.Equal(got, b) {
					t.Fatalf("%s: data callback saw %d bytes, or the wrong ones", name, seen)
				}
			}
		}
	}
}

// TestHashTreeScratch checks the outboard when the segments spill to the
// scratch file: the same bytes as bao's, and the file gone after close.
func TestHashTreeScratch(t *testing.T) {
	old := maxOutboardBuf
	maxOutboardBuf = 1000
	defer func() { maxOutboardBuf = old }()
	const size = 5<<20 + 777
	b := content(size, 3)
	wantOb, _ := bao.EncodeBuf(b, ChunkGroupLog, true)
	dir := t.TempDir()
	for _, stream := range []bool{false, true} {
		src := treeSource{ra: bytes.NewReader(b), size: size}
		if stream {
			src = treeSource{r: bytes.NewReader(b), limit: size}
		}
		var th *treeHash
		var err error
		withBlock(t, 1<<16, func() { th, err = hashTree(context.Background(), src, dir, nil) })
		if err != nil {
			t.Fatal(err)
		}
		if th.segs.f == nil {
			t.Fatal("segments did not spill to a scratch file")
		}
		var ob bytes.Buffer
		if err := th.writeOutboard(&ob); err != nil {
			t.Fatal(err)
		}
		th.close()
		if !bytes.Equal(ob.Bytes(), wantOb) {
			t.Fatalf("stream %v: outboard differs from bao's", stream)
		}
		if left, _ := readDirNames(dir); len(left) != 0 {
			t.Fatalf("stream %v: left %v", stream, left)
		}
	}
}

// TestHashTreeErrors: a source that fails, a stream over its limit, a
// file shorter than its size and a data sink that fails each fail the run
// with their error.
func TestHashTreeErrors(t *testing.T) {
	b := content(1<<20+5, 9)
	boom := errors.New("boom")
	cases := []struct {
		name string
		src  treeSource
		data func([]byte, int64) error
		want func(error) bool
	}{
		{"reader error", treeSource{r: io.MultiReader(bytes.NewReader(b[:300000]), iotestErr{boom}), limit: MaxBlobSize}, nil,
			func(err error) bool { return errors.Is(err, boom) }},
		{"over the limit", treeSource{r: bytes.NewReader(b), limit: int64(len(b)) - 1}, nil,
			func(err error) bool { var le *LimitError; return errors.As(err, &le) }},
		{"short file", treeSource{ra: bytes.NewReader(b[:len(b)-1]), size: int64(len(b))}, nil,
			func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"sink error", treeSource{ra: bytes.NewReader(b), size: int64(len(b))}, func([]byte, int64) error { return boom },
			func(err error) bool { return errors.Is(err, boom) }},
	}
	for _, c := range cases {
		withBlock(t, 1<<16, func() {
			_, err := hashTree(context.Background(), c.src, t.TempDir(), c.data)
			if !c.want(err) {
				t.Errorf("%s: err %v", c.name, err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := hashTree(ctx, treeSource{ra: bytes.NewReader(b), size: int64(len(b))}, t.TempDir(), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err %v", err)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

func readDirNames(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names, err
}
