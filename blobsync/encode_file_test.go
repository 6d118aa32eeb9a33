package blobsync

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"lukechampine.com/blake3/bao"
)

// TestEncodeFileMatchesEncode: the file path writes, byte for byte, the
// stream the reader path writes, for whole blobs and ranges, with batch
// buffers that split the stream at every kind of place, from a file that
// holds the blob at an offset (a pack's slice); large batches go straight
// to the writer under the buffered one, in order.
func TestEncodeFileMatchesEncode(t *testing.T) {
	dir := t.TempDir()
	const base = 777
	sizes := []int{1, 1000, ChunkGroupSize, ChunkGroupSize + 1, 3 * ChunkGroupSize, 5*ChunkGroupSize + 3, 1<<20 + 12345}
	// {0,1},{2,3} of 3 groups: groups 0 and 2 meet in the stream (P P G0 G2)
	// but not in the file.
	rangeSets := [][]ChunkRange{nil, {{0, 1}}, {{1, 3}}, {{0, 1}, {2, 3}}, {{2, 3}, {5, 7}}, {{0, 2}, {40, 41}, {60, 1000}}}
	for _, size := range sizes {
		data := content(size, uint64(size))
		ob, _ := bao.EncodeBuf(data, ChunkGroupLog, true)
		path := filepath.Join(dir, fmt.Sprint(size))
		if err := os.WriteFile(path, append(make([]byte, base), append(data, "trailing bytes of a pack"...)...), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		groups := numGroups(uint64(size))
		for _, ranges := range rangeSets {
			if ranges != nil && ranges[0].Start >= groups {
				continue
			}
			var want bytes.Buffer
			if err := new(encoder).encode(&want, newFwdReader(bytes.NewReader(data), 0), newFwdReader(bytes.NewReader(ob[outboardHeader:]), 0), uint64(size), ranges, nil); err != nil {
				t.Fatal(err)
			}
			for _, batch := range []int{0, ChunkGroupSize, ChunkGroupSize + 3*parentSize + 7, 3 * ChunkGroupSize, ioBufSize + 100} {
				var got, direct countingWriter
				e := &encoder{direct: &direct}
				direct.to = &got.Buffer
				if batch > 0 {
					e.out = make([]byte, batch)
				}
				bw := bufio.NewWriterSize(&got, ioBufSize)
				bw.WriteString("header") // a response header ahead of the body
				if err := e.encodeFile(bw, f, base, newFwdReader(bytes.NewReader(ob[outboardHeader:]), 0), uint64(size), ranges, nil); err != nil {
					t.Fatalf("size %d ranges %v batch %d: %v", size, ranges, batch, err)
				}
				if err := bw.Flush(); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), append([]byte("header"), want.Bytes()...)) {
					t.Fatalf("size %d ranges %v batch %d: the file path wrote %d bytes unlike the reader path's %d", size, ranges, batch, got.Len()-6, want.Len())
				}
				if batch == 0 && want.Len() >= 2*batchSize && direct.writes == 0 {
					t.Fatalf("size %d ranges %v batch %d: no batch went straight to the stream", size, ranges, batch)
				}
				if batch == 0 {
					// Again with a batch buffer back from the pool, written
					// by the stream before: stale bytes must not show.
					e.release()
					got.Reset()
					if err := e.encodeFile(bw, f, base, newFwdReader(bytes.NewReader(ob[outboardHeader:]), 0), uint64(size), ranges, nil); err != nil {
						t.Fatalf("size %d ranges %v, pooled batch: %v", size, ranges, err)
					}
					if err := bw.Flush(); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got.Bytes(), want.Bytes()) {
						t.Fatalf("size %d ranges %v: with a pooled batch the file path wrote %d bytes unlike the reader path's %d", size, ranges, got.Len(), want.Len())
					}
					e.release()
				}
			}
		}
	}
}

// countingWriter appends to to (or to itself) and counts its writes.
type countingWriter struct {
	bytes.Buffer
	to     *bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.to != nil {
		return w.to.Write(p)
	}
	return w.Buffer.Write(p)
}

// TestEncodeFileTruncated: a file that ends before the blob does ends the
// stream with ErrCorrupt, and what was written before is the start of the
// right stream: no byte the file lacks is sent.
func TestEncodeFileTruncated(t *testing.T) {
	size := 3<<20 + 5
	data := content(size, 3)
	ob, _ := bao.EncodeBuf(data, ChunkGroupLog, true)
	var want bytes.Buffer
	if err := new(encoder).encode(&want, newFwdReader(bytes.NewReader(data), 0), newFwdReader(bytes.NewReader(ob[outboardHeader:]), 0), uint64(size), nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, keep := range []int{0, ChunkGroupSize - 1, 1 << 20, size - 1} {
		path := filepath.Join(t.TempDir(), "cut")
		if err := os.WriteFile(path, data[:keep], 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		bw := bufio.NewWriterSize(&got, ioBufSize)
		err = (&encoder{direct: &got}).encodeFile(bw, f, 0, newFwdReader(bytes.NewReader(ob[outboardHeader:]), 0), uint64(size), nil, nil)
		f.Close()
		bw.Flush()
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("file cut at %d: err %v, want ErrCorrupt", keep, err)
		}
		if got.Len() >= want.Len() || !bytes.Equal(got.Bytes(), want.Bytes()[:got.Len()]) {
			t.Fatalf("file cut at %d: wrote %d bytes, not a strict prefix of the %d-byte stream", keep, got.Len(), want.Len())
		}
	}
}
