package blobsync

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/zeebo/blake3"
	"lukechampine.com/blake3/bao"
)

const benchSize = 64 << 20

// BenchmarkHash is the reference: plain BLAKE3 (zeebo) over 64 MiB.
func BenchmarkHash(b *testing.B) {
	data := content(benchSize, 12)
	b.SetBytes(benchSize)
	for b.Loop() {
		blake3.Sum256(data)
	}
}

// BenchmarkVerify runs the receive-side verifier over a 64 MiB combined
// stream (read through a 256 KiB bufio reader, as Fetch does), discarding
// the verified bytes. It should run at >= 70% of BenchmarkHash.
func BenchmarkVerify(b *testing.B) {
	data := content(benchSize, 12)
	combined, root := bao.EncodeBuf(data, ChunkGroupLog, false)
	stream := combined[8:]
	v := new(verifier)
	b.SetBytes(benchSize)
	for b.Loop() {
		if err := v.verify(bufio.NewReaderSize(bytes.NewReader(stream), ioBufSize), root, benchSize, nil, seqSink{io.Discard, io.Discard}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode runs the server side: building the combined stream from
// the data and outboard.
func BenchmarkEncode(b *testing.B) {
	data := content(benchSize, 12)
	ob, _ := bao.EncodeBuf(data, ChunkGroupLog, true)
	e := new(encoder)
	b.SetBytes(benchSize)
	for b.Loop() {
		if err := e.encode(io.Discard, newFwdReader(bytes.NewReader(data), ioBufSize), newFwdReader(bytes.NewReader(ob[outboardHeader:]), ioBufSize), benchSize, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServeFile builds the stream of a 64 MiB blob from a file (in
// the page cache) as the serve loop does, into a buffered writer over
// io.Discard: "reader" through a read buffer (the path inline blobs
// take), "file" with the file path's vectored reads into its batches.
func BenchmarkServeFile(b *testing.B) {
	data := content(benchSize, 12)
	ob, _ := bao.EncodeBuf(data, ChunkGroupLog, true)
	path := filepath.Join(b.TempDir(), "blob")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for _, mode := range []string{"reader", "file"} {
		b.Run(mode, func(b *testing.B) {
			e := &encoder{direct: io.Discard}
			bw := bufio.NewWriterSize(io.Discard, ioBufSize)
			b.SetBytes(benchSize)
			for b.Loop() {
				obr := newFwdReader(bytes.NewReader(ob[outboardHeader:]), 64<<10)
				if mode == "file" {
					err = e.encodeFile(bw, f, 0, obr, benchSize, nil, nil)
				} else {
					err = e.encode(bw, newFwdReader(io.NewSectionReader(f, 0, benchSize), ioBufSize), obr, benchSize, nil, nil)
				}
				if err != nil {
					b.Fatal(err)
				}
				bw.Flush()
			}
		})
	}
}

// BenchmarkHashTree is hashTree over 64 MiB in memory: the root and the
// outboard, on -cpu workers' worth of cores (run with -cpu 1,2 to see it
// scale), next to BenchmarkHash.
func BenchmarkHashTree(b *testing.B) {
	data := content(benchSize, 12)
	dir := b.TempDir()
	b.SetBytes(benchSize)
	for b.Loop() {
		th, err := hashTree(context.Background(), treeSource{ra: bytes.NewReader(data), size: benchSize}, dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := th.writeOutboard(io.Discard); err != nil {
			b.Fatal(err)
		}
		th.close()
	}
}

// BenchmarkServeChildren serves a collection of 2000 blobs of 100 KB in
// children requests of 256 entries from a store that got them in a
// download, kept a file per blob or in one pack (the receiver verifies
// and drops them: its cost is the same either way). Run with
// -benchtime 3x: the setup downloads 200 MB.
func BenchmarkServeChildren(b *testing.B) {
	for _, mode := range []string{"files", "pack"} {
		b.Run(mode, func(b *testing.B) {
			srv := newTestStore(b)
			sizes := make([]int, 2000)
			for i := range sizes {
				sizes[i] = 100_000
			}
			f := &collFixture{c: &Collection{}, blobs: map[Hash][]byte{}}
			for i, n := range sizes {
				h := addBlob(b, srv, content(n, uint64(1000+i)))
				f.c.Put(Entry{Name: fmt.Sprintf("f%04d", i), Hash: h, Size: int64(n)})
			}
			enc, err := f.c.Encode()
			if err != nil {
				b.Fatal(err)
			}
			f.h = addBlob(b, srv, enc)
			mid := newTestStoreOpts(b, StoreOptions{SmallFiles: mode == "files"})
			if _, err := mid.DownloadCollection(context.Background(), f.h, []Provider{prov(b, "srv", srv)}, DownloadOptions{}); err != nil {
				b.Fatal(err)
			}
			if n := len(packsIn(b, mid)); (n == 1) != (mode == "pack") {
				b.Fatalf("%s: %d packs", mode, n)
			}
			conn, _ := servePipe(b, mid, nil)
			rc := newRangeConn(conn)
			v := new(verifier)
			b.SetBytes(int64(len(sizes)) * 100_000)
			for b.Loop() {
				for start := 0; start < len(sizes); start += 256 {
					var children []ChildRanges
					for i := start; i < min(start+256, len(sizes)); i++ {
						children = append(children, ChildRanges{Index: uint64(i)})
					}
					go rc.requestChildren(f.h, children)
					if err := rc.readChildrenHeader(len(children)); err != nil {
						b.Fatal(err)
					}
					for _, c := range children {
						size, ok, err := rc.readChildHeader(c.Index)
						if err != nil || !ok {
							b.Fatalf("child %d: %v %v", c.Index, ok, err)
						}
						if err := v.verify(rc.br, f.c.Entries[c.Index].Hash, size, nil, discardSink{}, nil); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
		})
	}
}
