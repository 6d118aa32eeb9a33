package blobsync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	lblake3 "lukechampine.com/blake3"
	"lukechampine.com/blake3/bao"
)

func TestAddFileAndRead(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	for _, n := range testSizes {
		b := content(n, 1)
		h, size, err := s.AddFile(ctx, writeTemp(t, b))
		if err != nil {
			t.Fatalf("size %d: AddFile: %v", n, err)
		}
		// lukechampine's BLAKE3 is an independent implementation from the
		// zeebo one the store hashes with.
		if want := Hash(lblake3.Sum256(b)); h != want || size != int64(n) {
			t.Fatalf("size %d: AddFile = %s, %d; want %s", n, h, size, want)
		}
		if ok, err := s.Has(h); !ok || err != nil {
			t.Fatalf("size %d: Has = %v, %v", n, ok, err)
		}
		if got, err := s.Size(h); got != int64(n) || err != nil {
			t.Fatalf("size %d: Size = %d, %v", n, got, err)
		}
		got, err := s.ReadAll(h, 2<<20)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("size %d: ReadAll: %v, equal=%v", n, err, bytes.Equal(got, b))
		}
		r, rn, err := s.Open(h)
		if err != nil || rn != int64(n) {
			t.Fatalf("size %d: Open: %d %v", n, rn, err)
		}
		got, err = io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("size %d: Open read: %v", n, err)
		}
		if n > ChunkGroupSize {
			ob, err := outboardOf(s, h)
			want, _ := bao.EncodeBuf(b, ChunkGroupLog, true)
			if err != nil || !bytes.Equal(ob, want) {
				t.Fatalf("size %d: outboard differs from bao.EncodeBuf (%v)", n, err)
			}
		} else if _, err := os.Stat(s.dataPath(h)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("size %d: small blob has a data file (%v)", n, err)
		}
		if h2, err := s.AddBytes(ctx, b); err != nil || h2 != h {
			t.Fatalf("size %d: AddBytes of the same bytes: %s %v", n, h2, err)
		}
	}
	for _, name := range dirFiles(t, s) {
		if strings.HasSuffix(name, ".part") {
			t.Fatalf("part file left behind: %s", name)
		}
	}
}

func TestAddBytesLarge(t *testing.T) {
	s := newTestStore(t)
	b := content(3*ChunkGroupSize+7, 2)
	h, err := s.AddBytes(context.Background(), b)
	if err != nil || h != HashBytes(b) {
		t.Fatalf("AddBytes: %s %v", h, err)
	}
	got, err := s.ReadAll(h, int64(len(b)))
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("ReadAll: %v", err)
	}
	var le *LimitError
	if _, err := s.ReadAll(h, 100); !errors.As(err, &le) || le.Got != int64(len(b)) {
		t.Fatalf("ReadAll over max: %v", err)
	}
}

func TestNotFoundAndDelete(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	var missing Hash
	missing[0] = 1
	if _, err := s.Size(missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Size missing: %v", err)
	}
	if _, _, err := s.Open(missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open missing: %v", err)
	}
	if ok, err := s.Has(missing); ok || err != nil {
		t.Fatalf("Has missing: %v %v", ok, err)
	}
	for _, n := range []int{10, 100000} {
		h, err := s.AddBytes(ctx, content(n, 3))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(h); err != nil {
			t.Fatal(err)
		}
		if has(t, s, h) {
			t.Fatalf("size %d: Has after Delete", n)
		}
		if err := s.Delete(h); err != nil {
			t.Fatalf("second Delete: %v", err)
		}
	}
	if names := dirFiles(t, s); len(names) != 0 {
		t.Fatalf("files left after Delete: %v", names)
	}
}

func TestOpenStoreRemovesParts(t *testing.T) {
	s := newTestStore(t)
	stale := filepath.Join(s.Dir(), "abc.data.part")
	keep := filepath.Join(s.Dir(), "other")
	os.WriteFile(stale, []byte("x"), 0o600)
	os.WriteFile(keep, []byte("x"), 0o600)
	if _, err := OpenStore(s.db, s.Dir(), StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale part file survived: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("unrelated file removed: %v", err)
	}
}

func TestExport(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	out := t.TempDir()
	for _, n := range []int{0, 5, 1<<20 + 3} {
		b := content(n, 4)
		h, err := s.AddBytes(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(out, "x")
		if err := s.Export(ctx, h, dst); err != nil {
			t.Fatalf("size %d: Export: %v", n, err)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("size %d: exported bytes differ (%v)", n, err)
		}
	}
	var missing Hash
	dst := filepath.Join(out, "missing")
	if err := s.Export(ctx, missing, dst); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Export missing: %v", err)
	}
	des, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 1 {
		t.Fatalf("export dir holds %d files, want only x", len(des))
	}
}

func TestHashText(t *testing.T) {
	h := HashBytes([]byte("abc"))
	const want = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
	if h.String() != want {
		t.Fatalf("String = %s", h)
	}
	p, err := ParseHash(strings.ToUpper(want))
	if err != nil || p != h {
		t.Fatalf("ParseHash: %v", err)
	}
	var u Hash
	if err := u.UnmarshalText([]byte(want)); err != nil || u != h {
		t.Fatalf("UnmarshalText: %v", err)
	}
	for _, bad := range []string{"", "abc", want[:63] + "g", want + "00"} {
		if _, err := ParseHash(bad); err == nil {
			t.Fatalf("ParseHash(%q) accepted", bad)
		}
	}
}

func TestHashFileMatchesB3sum(t *testing.T) {
	b3sum, err := exec.LookPath("b3sum")
	if err != nil {
		t.Skip("b3sum not in PATH")
	}
	for _, n := range testSizes {
		p := writeTemp(t, content(n, 5))
		out, err := exec.Command(b3sum, "--no-names", p).Output()
		if err != nil {
			t.Fatal(err)
		}
		h, size, err := HashFile(p)
		if err != nil || size != int64(n) {
			t.Fatalf("HashFile: %d %v", size, err)
		}
		if got := strings.TrimSpace(string(out)); got != h.String() {
			t.Fatalf("size %d: b3sum %s, HashFile %s", n, got, h)
		}
	}
}

// TestAddFileLargeOutboard covers the path for blobs over 2 GiB, where the
// outboard's parents go through a scratch file before the outboard file,
// on a smaller blob (one whose outboard does not go inline).
func TestAddFileLargeOutboard(t *testing.T) {
	old := maxOutboardBuf
	maxOutboardBuf = 0
	t.Cleanup(func() { maxOutboardBuf = old })
	s := newTestStore(t)
	b := content(5<<20+3, 14)
	h, _, err := s.AddFile(context.Background(), writeTemp(t, b))
	if err != nil || h != HashBytes(b) {
		t.Fatalf("AddFile: %s %v", h, err)
	}
	ob, err := outboardOf(s, h)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := bao.EncodeBuf(b, ChunkGroupLog, true); !bytes.Equal(ob, want) {
		t.Fatal("outboard differs from bao.EncodeBuf")
	}
}

func TestAddFileErrors(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	if _, _, err := s.AddFile(ctx, filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("AddFile missing = %v", err)
	}
	if _, _, err := s.AddFile(ctx, t.TempDir()); err == nil {
		t.Fatal("AddFile of a directory succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.AddFile(cctx, writeTemp(t, content(100000, 15))); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddFile with a cancelled context = %v", err)
	}
	if names := dirFiles(t, s); len(names) != 0 {
		t.Fatalf("files left: %v", names)
	}
}

// TestHashCBOR: a Hash inside another package's CBOR message is a 32-byte
// byte string.
func TestHashCBOR(t *testing.T) {
	h := HashBytes([]byte("x"))
	b, err := wireEnc.Marshal(h)
	if err != nil || len(b) != 34 || b[0] != 0x58 || b[1] != 32 {
		t.Fatalf("CBOR of Hash = %x, %v", b, err)
	}
	var back Hash
	if err := wireDec.Unmarshal(b, &back); err != nil || back != h {
		t.Fatalf("decode: %v", err)
	}
}

// TestAddFileTree imports files of sizes around every boundary, with
// blocks of two groups so that even small files are hashed by several
// workers: each is named by the hash b3sum prints (zeebo/blake3 when
// b3sum is absent), keeps bao's outboard where inlineOutboard says, holds
// the file's bytes, and leaves no part or scratch file behind; imported by
// reference (AddFileRef), the same hash and outboard.
func TestAddFileTree(t *testing.T) {
	b3sum, _ := exec.LookPath("b3sum")
	s, ref := newTestStore(t), newTestStore(t)
	ctx := context.Background()
	sizes := append(treeSizes(), outboardSizes...)
	withBlock(t, 2*ChunkGroupSize, func() {
		for _, n := range sizes {
			b := content(n, uint64(n)+77)
			p := writeTemp(t, b)
			want := HashBytes(b)
			if b3sum != "" {
				out, err := exec.Command(b3sum, "--no-names", p).Output()
				if err != nil {
					t.Fatal(err)
				}
				if want, err = ParseHash(strings.TrimSpace(string(out))); err != nil {
					t.Fatal(err)
				}
			}
			h, size, err := s.AddFile(ctx, p)
			if err != nil || h != want || size != int64(n) {
				t.Fatalf("size %d: AddFile = %s %d %v, want %s", n, h, size, err, want)
			}
			got, err := s.ReadAll(h, int64(n))
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("size %d: stored bytes differ (%v)", n, err)
			}
			if n > inlineMax {
				checkOutboard(t, s, h, b, "AddFile")
			}
			if h, _, err := ref.AddFileRef(ctx, p); err != nil || h != want {
				t.Fatalf("size %d: AddFileRef = %s %v, want %s", n, h, err, want)
			}
			if n > inlineMax {
				checkOutboard(t, ref, h, b, "AddFileRef")
			}
			for _, name := range append(dirFiles(t, s), dirFiles(t, ref)...) {
				if strings.HasSuffix(name, ".part") {
					t.Fatalf("size %d: left %s", n, name)
				}
			}
		}
	})
}

// TestAddReader streams blobs of sizes around every boundary into the
// store, as an upload arrives (short reads of random lengths) and from a
// buffer (*bytes.Reader, read in parallel): each is named by its BLAKE3
// hash, holds its bytes and bao's outboard, and leaves no part file.
func TestAddReader(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	sizes := append(treeSizes(), outboardSizes...)
	withBlock(t, 2*ChunkGroupSize, func() {
		for _, n := range sizes {
			b := content(n, uint64(n)+91)
			for _, buffered := range []bool{false, true} {
				var r io.Reader = &chunkyReader{bytes.NewReader(b), rand.New(rand.NewPCG(2, uint64(n)))}
				if buffered {
					r = bytes.NewReader(b)
				}
				h, size, err := s.AddReader(ctx, r, int64(n))
				if err != nil || h != HashBytes(b) || size != int64(n) {
					t.Fatalf("size %d buffered %v: AddReader = %s %d %v", n, buffered, h, size, err)
				}
				got, err := s.ReadAll(h, int64(n))
				if err != nil || !bytes.Equal(got, b) {
					t.Fatalf("size %d buffered %v: stored bytes differ (%v)", n, buffered, err)
				}
				if n > inlineMax {
					checkOutboard(t, s, h, b, "AddReader")
				}
				for _, name := range dirFiles(t, s) {
					if strings.HasSuffix(name, ".part") {
						t.Fatalf("size %d: left %s", n, name)
					}
				}
				if err := s.Delete(h); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// TestAddReaderBroken: an upload that fails mid-way, yields more than its
// limit, or whose context ends leaves nothing in the store: no entry, no
// file (part or final), and the error says why.
func TestAddReaderBroken(t *testing.T) {
	s := newTestStore(t)
	b := content(5<<20+17, 4)
	boom := errors.New("connection reset")
	ctx, cancel := context.WithCancel(context.Background())
	cancelAfter := &funcReader{r: bytes.NewReader(b), after: 2 << 20, f: cancel}
	cases := []struct {
		name  string
		ctx   context.Context
		r     io.Reader
		limit int64
		want  func(error) bool
	}{
		{"reader fails", context.Background(), io.MultiReader(bytes.NewReader(b[:3<<20]), iotestErr{boom}), 0,
			func(err error) bool { return errors.Is(err, boom) }},
		{"reader fails in the first group", context.Background(), io.MultiReader(bytes.NewReader(b[:1000]), iotestErr{boom}), 0,
			func(err error) bool { return errors.Is(err, boom) }},
		{"over the limit", context.Background(), bytes.NewReader(b), int64(len(b)) - 1,
			func(err error) bool { var le *LimitError; return errors.As(err, &le) }},
		{"stream over the limit", context.Background(), &chunkyReader{bytes.NewReader(b), rand.New(rand.NewPCG(3, 3))}, 4 << 20,
			func(err error) bool { var le *LimitError; return errors.As(err, &le) }},
		{"small stream over the limit", context.Background(), bytes.NewBufferString("0123456789"), 9,
			func(err error) bool { var le *LimitError; return errors.As(err, &le) }},
		{"context ends", ctx, cancelAfter, 0,
			func(err error) bool { return errors.Is(err, context.Canceled) }},
	}
	for _, c := range cases {
		h, _, err := s.AddReader(c.ctx, c.r, c.limit)
		if !c.want(err) {
			t.Fatalf("%s: err %v", c.name, err)
		}
		if !h.IsZero() {
			t.Fatalf("%s: returned hash %s", c.name, h)
		}
		if left := dirFiles(t, s); len(left) != 0 {
			t.Fatalf("%s: left %v", c.name, left)
		}
		if ok, _ := s.Has(HashBytes(b)); ok {
			t.Fatalf("%s: the whole blob is in the store", c.name)
		}
		u, err := s.Usage()
		if err != nil || u.Blobs != 0 {
			t.Fatalf("%s: usage %+v %v", c.name, u, err)
		}
	}
}

// funcReader calls f once after it has read after bytes.
type funcReader struct {
	r     io.Reader
	after int
	f     func()
	read  int
}

func (r *funcReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.read += n
	if r.read >= r.after && r.f != nil {
		r.f()
		r.f = nil
	}
	return n, err
}
