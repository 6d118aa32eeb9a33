package blobsync

import (
	"bufio"
	"bytes"
	"context"
	"io"
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
