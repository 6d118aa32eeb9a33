package blobsync

import (
	"bufio"
	"bytes"
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
