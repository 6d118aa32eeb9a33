package blobsync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/dwebkit/dweb/internal/fuzzcorpus"
)

func TestChunkPolIrreducible(t *testing.T) {
	if !chunkPol.Irreducible() {
		t.Fatalf("chunkPol %v is not irreducible", chunkPol)
	}
}

// chunkedFixture is a 12 MiB random file: chunked, as it is over
// ChunkThreshold, into about ten chunks.
const chunkedFixture = 12 << 20

// addChunked adds b as a chunked file to s and checks what it reports: the
// whole hash is b's BLAKE3, the chunks cover b in order within the size
// bounds, and the list blob decodes to them.
func addChunked(t *testing.T, s *Store, b []byte) ChunkedFile {
	t.Helper()
	cf, err := s.AddFileChunked(context.Background(), writeTemp(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if cf.Hash != HashBytes(b) || cf.Size != int64(len(b)) {
		t.Fatalf("whole hash %s size %d, want %s %d", cf.Hash, cf.Size, HashBytes(b), len(b))
	}
	var off int64
	for i, c := range cf.Chunks {
		if c.Size > ChunkMax || (c.Size < ChunkMin && i != len(cf.Chunks)-1) {
			t.Fatalf("chunk %d is %d bytes, outside [%d, %d]", i, c.Size, ChunkMin, ChunkMax)
		}
		if c.Hash != HashBytes(b[off:off+c.Size]) {
			t.Fatalf("chunk %d does not hash its bytes", i)
		}
		if !has(t, s, c.Hash) {
			t.Fatalf("chunk %d not stored", i)
		}
		off += c.Size
	}
	if off != int64(len(b)) {
		t.Fatalf("chunks cover %d bytes of %d", off, len(b))
	}
	l, err := s.ReadChunkList(cf.List)
	if err != nil || !reflect.DeepEqual(l.Chunks, cf.Chunks) {
		t.Fatalf("stored list: %v", err)
	}
	return cf
}

// exportChunked assembles cf from s and compares it with want.
func exportChunked(t *testing.T, s *Store, cf ChunkedFile, want []byte) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	if err := s.ExportChunked(context.Background(), cf.Hash, cf.List, cf.Size, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("assembled file differs (%v)", err)
	}
}

// TestChunkedEdits: a file is stored as chunks; an edit in the middle, an
// insertion at the start and an append each store only the chunks around
// the edit, and every version assembles byte-identical.
func TestChunkedEdits(t *testing.T) {
	s := newTestStore(t)
	v0 := content(chunkedFixture, 1)
	cf := addChunked(t, s, v0)
	if cf.Stored != int64(len(v0)) || len(cf.Chunks) < 4 {
		t.Fatalf("first add stored %d bytes in %d chunks", cf.Stored, len(cf.Chunks))
	}
	if again := addChunked(t, s, v0); again.Stored != 0 || again.List != cf.List {
		t.Fatalf("re-adding the same file stored %d bytes", again.Stored)
	}
	mid := bytes.Clone(v0)
	for i := range 1000 {
		mid[len(mid)/2+i] ^= 0xff
	}
	ins := append(content(100, 9), v0...)
	app := append(bytes.Clone(v0), content(3<<20, 10)...)
	for name, v := range map[string][]byte{"middle": mid, "insert": ins, "append": app} {
		t.Run(name, func(t *testing.T) {
			cf := addChunked(t, s, v)
			changed := int64(len(v) - len(v0))
			if changed <= 0 {
				changed = 1000
			}
			if lim := changed + 2*ChunkMax; cf.Stored > lim {
				t.Fatalf("stored %d bytes for a %d-byte edit, over %d", cf.Stored, changed, lim)
			}
			dst := filepath.Join(t.TempDir(), "out")
			if err := s.ExportChunked(context.Background(), cf.Hash, cf.List, cf.Size, dst); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dst)
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("exported file differs (%v)", err)
			}
			r, n, err := s.OpenChunked(context.Background(), cf.Hash, cf.List)
			if err != nil || n != int64(len(v)) {
				t.Fatalf("OpenChunked: %v, %d bytes", err, n)
			}
			defer r.Close()
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(r); err != nil || !bytes.Equal(buf.Bytes(), v) {
				t.Fatalf("OpenChunked read differs (%v)", err)
			}
		})
	}
}

// TestExportChunkedWrongHash: chunks that do not assemble to the entry's
// whole hash (or size) are refused, and nothing appears at dst.
func TestExportChunkedWrongHash(t *testing.T) {
	s := newTestStore(t)
	v := content(chunkedFixture, 2)
	cf := addChunked(t, s, v)
	other := HashBytes([]byte("another file"))
	dst := filepath.Join(t.TempDir(), "out")
	ctx := context.Background()
	if err := s.ExportChunked(ctx, other, cf.List, cf.Size, dst); !errors.Is(err, ErrWholeHash) || !strings.Contains(err.Error(), cf.Hash.String()) {
		t.Fatalf("ExportChunked with a wrong hash = %v", err)
	}
	if err := s.ExportChunked(ctx, cf.Hash, cf.List, cf.Size+1, dst); !errors.Is(err, ErrWholeHash) {
		t.Fatalf("ExportChunked with a wrong size = %v", err)
	}
	if des, _ := os.ReadDir(filepath.Dir(dst)); len(des) != 0 {
		t.Fatalf("left %d files behind", len(des))
	}
	r, _, err := s.OpenChunked(ctx, other, cf.List)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := new(bytes.Buffer).ReadFrom(r); !errors.Is(err, ErrWholeHash) {
		t.Fatalf("OpenChunked with a wrong hash read to the end with %v", err)
	}
	// A missing chunk is ErrNotFound.
	if err := s.Delete(cf.Chunks[1].Hash); err != nil {
		t.Fatal(err)
	}
	if err := s.ExportChunked(ctx, cf.Hash, cf.List, cf.Size, dst); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ExportChunked without a chunk = %v", err)
	}
	if ok, err := s.HasChunks(cf.List); ok || err != nil {
		t.Fatalf("HasChunks without a chunk = %v, %v", ok, err)
	}
}

func sampleChunkList() *ChunkList {
	return &ChunkList{Chunks: []ChunkRef{
		{HashBytes([]byte("a")), ChunkMin},
		{HashBytes([]byte("b")), ChunkMax},
		{HashBytes([]byte("a")), ChunkMin}, // a repeated chunk
		{HashBytes([]byte("c")), 1},
	}}
}

func TestChunkListCodec(t *testing.T) {
	l := sampleChunkList()
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != chunkListHeader+4*chunkRefSize {
		t.Fatalf("encoded %d bytes", len(b))
	}
	d, err := DecodeChunkList(b)
	if err != nil || !reflect.DeepEqual(d, l) || d.Size() != 2*ChunkMin+ChunkMax+1 {
		t.Fatalf("round trip: %v", err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(b)) }
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"empty":       {nil, "shorter than"},
		"magic":       {mut(func(b []byte) []byte { b[0] = 'X'; return b }), "magic"},
		"version":     {mut(func(b []byte) []byte { b[4] = 2; return b }), "version 2"},
		"no chunks":   {b[:chunkListHeader:chunkListHeader], "for 4 chunks"},
		"count zero":  {mut(func(b []byte) []byte { return append(b[:5], 0, 0, 0, 0) }), "no chunks"},
		"count high":  {mut(func(b []byte) []byte { b[5] = 0xff; return b }), "bytes for"},
		"trailing":    {append(bytes.Clone(b), 0), "bytes for"},
		"zero size":   {mut(func(b []byte) []byte { copy(b[chunkListHeader+32:], []byte{0, 0, 0, 0}); return b }), "size 0"},
		"size > max":  {mut(func(b []byte) []byte { copy(b[chunkListHeader+32:], []byte{0, 0x40, 0, 1}); return b }), "out of range"},
		"over limits": {make([]byte, MaxChunkListSize+1), "limit"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeChunkList(tc.b)
			if !errors.Is(err, ErrBadChunkList) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeChunkList = %v, want ErrBadChunkList mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := (&ChunkList{}).Encode(); !errors.Is(err, ErrBadChunkList) {
		t.Fatalf("Encode of an empty list = %v", err)
	}
}

// FuzzDecodeChunkList: whatever decodes is valid and re-encodes to the
// same bytes (the encoding is canonical). Seeds: lists the store made for
// real files, and the sample.
func FuzzDecodeChunkList(f *testing.F) {
	s := newTestStore(f)
	for i, n := range []int{ChunkThreshold + 1, 9 << 20} {
		p := filepath.Join(f.TempDir(), "f")
		if err := os.WriteFile(p, content(n, uint64(i)), 0o600); err != nil {
			f.Fatal(err)
		}
		cf, err := s.AddFileChunked(context.Background(), p)
		if err != nil {
			f.Fatal(err)
		}
		b, err := s.ReadAll(cf.List, MaxChunkListSize)
		if err != nil {
			f.Fatal(err)
		}
		fuzzcorpus.Add(f, b)
	}
	b, err := sampleChunkList().Encode()
	if err != nil {
		f.Fatal(err)
	}
	fuzzcorpus.Add(f, b)
	f.Add(b[:len(b)-1])
	f.Add([]byte("DWCL\x01\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := DecodeChunkList(b)
		if err != nil {
			if !errors.Is(err, ErrBadChunkList) {
				t.Fatalf("error %v does not wrap ErrBadChunkList", err)
			}
			return
		}
		b2, err := l.Encode()
		if err != nil {
			t.Fatalf("decoded list does not encode: %v", err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatal("re-encoding differs")
		}
	})
}

// TestGCKeepsChunks: GC keeps the chunk list and every chunk of a chunked
// entry of a root collection, and removes the chunks only an unreferenced
// version had.
func TestGCKeepsChunks(t *testing.T) {
	ctx := context.Background()
	s := newTestStoreOpts(t, StoreOptions{GCGrace: -1})
	v0 := content(chunkedFixture, 5)
	old := addChunked(t, s, v0)
	v1 := append(bytes.Clone(v0[:len(v0)/2]), content(2<<20, 6)...)
	cur := addChunked(t, s, v1)
	var c Collection
	c.Put(Entry{Name: "film.mp4", Hash: cur.Hash, Size: cur.Size, Chunks: cur.List})
	cb, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	coll := addBlob(t, s, cb)
	if _, err := s.GC(ctx, func(yield func(Hash) bool) { yield(coll) }); err != nil {
		t.Fatal(err)
	}
	exportChunked(t, s, cur, v1)
	want := map[Hash]bool{}
	for _, ch := range cur.Chunks {
		want[ch.Hash] = true
	}
	gone := 0
	for _, ch := range old.Chunks {
		if !want[ch.Hash] {
			if has(t, s, ch.Hash) {
				t.Fatalf("GC kept chunk %s only the old version had", ch.Hash)
			}
			gone++
		}
	}
	if gone == 0 || has(t, s, old.List) {
		t.Fatalf("GC removed %d of the old version's chunks; its list held: %v", gone, has(t, s, old.List))
	}
}

// TestAddReaderChunked: a stream of more than ChunkThreshold bytes is cut
// as it arrives into the same chunks and list as the same bytes added from
// a file, and assembles byte-identical; one of at most ChunkThreshold
// bytes stays one blob; too many bytes or a failing stream is an error
// that names nothing.
func TestAddReaderChunked(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	big := content(ChunkThreshold+3<<20, 21)
	cf, err := s.AddReaderChunked(ctx, io.MultiReader(bytes.NewReader(big)), 0) // a plain io.Reader
	if err != nil {
		t.Fatal(err)
	}
	if cf.Hash != HashBytes(big) || cf.Size != int64(len(big)) || cf.List.IsZero() || len(cf.Chunks) < 2 {
		t.Fatalf("stream of %d bytes: hash %s size %d list %s, %d chunks; want the whole BLAKE3 and chunks", len(big), cf.Hash, cf.Size, cf.List, len(cf.Chunks))
	}
	fromFile := addChunked(t, newTestStore(t), big)
	if cf.List != fromFile.List {
		t.Fatalf("chunk list %s from the stream, %s from a file of the same bytes", cf.List, fromFile.List)
	}
	exportChunked(t, s, cf, big)

	small := content(ChunkThreshold, 22)
	sf, err := s.AddReaderChunked(ctx, io.MultiReader(bytes.NewReader(small)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if sf.Hash != HashBytes(small) || sf.Size != ChunkThreshold || !sf.List.IsZero() || len(sf.Chunks) != 0 || !has(t, s, sf.Hash) {
		t.Fatalf("stream of ChunkThreshold bytes: %+v; want one blob", sf)
	}

	var le *LimitError
	for _, limit := range []int64{1 << 20, ChunkThreshold + 1<<20} {
		if _, err := s.AddReaderChunked(ctx, bytes.NewReader(big), limit); !errors.As(err, &le) {
			t.Fatalf("%d bytes with limit %d: %v, want a *LimitError", len(big), limit, err)
		}
	}
	broken := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(big[:ChunkThreshold+2<<20]), iotest.ErrReader(broken))
	if _, err := s.AddReaderChunked(ctx, r, 0); !errors.Is(err, broken) {
		t.Fatalf("a stream that fails: %v, want its error", err)
	}
}
