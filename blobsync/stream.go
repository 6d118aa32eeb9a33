package blobsync

import (
	"bytes"
	"fmt"
	"io"

	"lukechampine.com/blake3/bao"
)

// Exported forms of the stream codec, for benchmarks and tools that work
// on streams outside a Store (cmd/dweb's "bench verify").

// ComputeOutboard reads size bytes from r and returns their hash and the
// blob's outboard (8-byte little-endian size, then the parents in pre-order;
// nil for a blob of at most ChunkGroupSize bytes). The outboard is held in
// memory: 1/256 of size.
func ComputeOutboard(r io.Reader, size int64) (Hash, []byte, error) {
	if size < 0 || size > MaxBlobSize {
		return Hash{}, nil, &LimitError{What: "blob size", Limit: MaxBlobSize, Got: size}
	}
	ob := &memWriterAt{b: make([]byte, outboardSize(uint64(size)))}
	root, err := bao.Encode(ob, io.LimitReader(r, size), size, ChunkGroupLog, true)
	if err != nil {
		return Hash{}, nil, fmt.Errorf("blobsync: outboard: %w", err)
	}
	if size <= ChunkGroupSize {
		return root, nil, nil
	}
	return root, ob.b, nil
}

// WriteStream writes the whole-blob stream (docs/protocol.md, "Blobs":
// parents interleaved with 16 KiB groups) of the size bytes read from data,
// whose outboard is outboard (as ComputeOutboard returns it), to w.
func WriteStream(w io.Writer, data io.Reader, outboard []byte, size int64) error {
	if size < 0 || size > MaxBlobSize {
		return &LimitError{What: "blob size", Limit: MaxBlobSize, Got: size}
	}
	var ob *fwdReader
	if size > ChunkGroupSize {
		if uint64(len(outboard)) != outboardSize(uint64(size)) {
			return fmt.Errorf("%w: outboard is %d bytes, want %d", ErrCorrupt, len(outboard), outboardSize(uint64(size)))
		}
		ob = newFwdReader(bytes.NewReader(outboard[outboardHeader:]), 64<<10)
	}
	return new(encoder).encode(w, newFwdReader(data, ioBufSize), ob, uint64(size), nil, nil)
}

// VerifyStream reads a whole-blob stream of a blob of size bytes named h
// from r, verifying each 16 KiB group (and each parent) before writing its
// bytes to data. It is the receive path's verifier (verify.go); errors wrap
// ErrCorrupt at the first bad group or parent, io.ErrUnexpectedEOF if r ends
// early.
func VerifyStream(r io.Reader, h Hash, size int64, data io.Writer) error {
	if size < 0 {
		return &LimitError{What: "blob size", Limit: MaxBlobSize, Got: size}
	}
	return new(verifier).verify(r, h, uint64(size), nil, seqSink{data: data}, nil)
}
