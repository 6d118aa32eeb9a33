package blobsync

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"lukechampine.com/blake3/bao"
)

type memSink struct {
	groups  map[uint64][]byte
	parents map[uint64][]byte
}

func (m *memSink) parent(i uint64, p []byte) error {
	m.parents[i] = bytes.Clone(p)
	return nil
}

func (m *memSink) group(start uint64, g []byte) error {
	m.groups[start] = bytes.Clone(g)
	return nil
}

// TestServeRanges: a ranged request gets bao's slice encoding over the
// requested groups; the verifier checks it and reports each group and parent
// at its place; the stream ends exactly where the next response starts.
func TestServeRanges(t *testing.T) {
	srv := newTestStore(t)
	var absent Hash
	absent[0] = 9
	for _, n := range []int{0, 1000, 10*ChunkGroupSize + 5, 64 * ChunkGroupSize} {
		b := content(n, 16)
		h, err := srv.AddBytes(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		combined, _ := bao.EncodeBuf(b, ChunkGroupLog, false)
		outboard, _ := bao.EncodeBuf(b, ChunkGroupLog, true)
		G := numGroups(uint64(n))
		for _, ranges := range [][]ChunkRange{
			{{0, 1}}, {{2, 3}}, {{0, 1}, {5, 7}}, {{9, 100}}, {{G - 1, G}}, {{G, G + 5}}, {{1, 2}, {3, 4}, {60, 61}},
		} {
			t.Run(fmt.Sprintf("%d/%v", n, ranges), func(t *testing.T) {
				conn, _ := servePipe(t, srv, nil)
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				go func() {
					writeFrame(conn, encodeRequest(Request{Hash: h, Ranges: ranges}))
					writeFrame(conn, encodeRequest(Request{Hash: absent}))
				}()
				br := bufio.NewReader(conn)
				var resp wireResponse
				if err := readFrame(br, maxResponseFrame, "response", &resp); err != nil || resp.Status != statusOK || resp.Size != uint64(n) {
					t.Fatalf("response %+v, %v", resp, err)
				}
				var stream bytes.Buffer
				m := &memSink{groups: map[uint64][]byte{}, parents: map[uint64][]byte{}}
				tee := &teeReader{r: br, w: &stream}
				if err := new(verifier).verify(tee, h, uint64(n), ranges, m, nil); err != nil {
					t.Fatalf("verify: %v", err)
				}
				// The next frame is the not-found answer: the ranged stream
				// had exactly the length the verifier expected.
				if err := readFrame(br, maxResponseFrame, "response", &resp); err != nil || resp.Status != statusNotFound {
					t.Fatalf("next response %+v, %v", resp, err)
				}
				for g := uint64(0); g < G; g++ {
					start := g * ChunkGroupSize
					got, ok := m.groups[start]
					want := intersects(ranges, start, min(ChunkGroupSize, uint64(n)-start))
					if ok != want {
						t.Fatalf("group %d delivered=%v, requested=%v", g, ok, want)
					}
					if ok && !bytes.Equal(got, b[start:min(start+ChunkGroupSize, uint64(n))]) {
						t.Fatalf("group %d bytes differ", g)
					}
				}
				for i, p := range m.parents {
					off := outboardHeader + parentSize*i
					if !bytes.Equal(p, outboard[off:off+parentSize]) {
						t.Fatalf("parent %d differs from the outboard", i)
					}
				}
				// Single ranges inside the blob: the same bytes as bao's
				// slice encoding of those groups.
				if len(ranges) == 1 && ranges[0].Start < G {
					off := ranges[0].Start * ChunkGroupSize
					end := min(ranges[0].End*ChunkGroupSize, uint64(n))
					var slice bytes.Buffer
					if err := bao.ExtractSlice(&slice, bytes.NewReader(combined), nil, ChunkGroupLog, off, end-off); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(stream.Bytes(), slice.Bytes()[8:]) {
						t.Fatalf("stream (%d bytes) differs from bao slice (%d bytes)", stream.Len(), slice.Len()-8)
					}
				}
			})
		}
	}
}

type teeReader struct {
	r interface{ Read([]byte) (int, error) }
	w *bytes.Buffer
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.w.Write(p[:n])
	return n, err
}
