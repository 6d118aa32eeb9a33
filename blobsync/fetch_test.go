package blobsync

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"lukechampine.com/blake3/bao"
)

// TestStreamIsBao pins the wire format: the server's whole-blob stream is
// bao's combined encoding with 16 KiB groups, minus its 8-byte length, and
// the verifier accepts exactly that.
func TestStreamIsBao(t *testing.T) {
	for _, n := range append(testSizes, 5*ChunkGroupSize, 7*ChunkGroupSize+1) {
		b := content(n, 6)
		combined, root := bao.EncodeBuf(b, ChunkGroupLog, false)
		ob, _ := bao.EncodeBuf(b, ChunkGroupLog, true)
		var out bytes.Buffer
		var obr *fwdReader
		if n > ChunkGroupSize {
			obr = newFwdReader(bytes.NewReader(ob[outboardHeader:]), 4096)
		}
		if err := new(encoder).encode(&out, newFwdReader(bytes.NewReader(b), 4096), obr, uint64(n), nil, nil); err != nil {
			t.Fatalf("size %d: encode: %v", n, err)
		}
		if !bytes.Equal(out.Bytes(), combined[8:]) || uint64(out.Len()) != encodedSize(uint64(n)) {
			t.Fatalf("size %d: stream differs from bao combined encoding", n)
		}
		var data, parents bytes.Buffer
		if err := new(verifier).verify(bytes.NewReader(combined[8:]), root, uint64(n), nil, seqSink{&data, &parents}, nil); err != nil {
			t.Fatalf("size %d: verify: %v", n, err)
		}
		if !bytes.Equal(data.Bytes(), b) {
			t.Fatalf("size %d: verified data differs", n)
		}
		if n > ChunkGroupSize && !bytes.Equal(parents.Bytes(), ob[outboardHeader:]) {
			t.Fatalf("size %d: verifier's parents differ from the outboard", n)
		}
	}
}

func TestFetch(t *testing.T) {
	srv, cli := newTestStore(t), newTestStore(t)
	ctx := context.Background()
	conn, served := servePipe(t, srv, nil)
	for _, n := range testSizes {
		b := content(n, 7)
		h, err := srv.AddBytes(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		var last, calls int64
		got, err := cli.Fetch(ctx, conn, h, func(done, total int64) {
			if total != int64(n) || done < last || done > total {
				t.Errorf("size %d: progress(%d, %d) after %d", n, done, total, last)
			}
			last = done
			calls++
		})
		if err != nil || got != int64(n) {
			t.Fatalf("size %d: Fetch = %d, %v", n, got, err)
		}
		if last != int64(n) || calls == 0 {
			t.Fatalf("size %d: progress ended at %d after %d calls", n, last, calls)
		}
		data, err := cli.ReadAll(h, 2<<20)
		if err != nil || !bytes.Equal(data, b) {
			t.Fatalf("size %d: fetched bytes differ (%v)", n, err)
		}
		if n > ChunkGroupSize {
			want, err := outboardOf(srv, h)
			if err != nil {
				t.Fatalf("size %d: the server's outboard: %v", n, err)
			}
			ob, err := outboardOf(cli, h)
			if err != nil || !bytes.Equal(ob, want) {
				t.Fatalf("size %d: fetched outboard differs (%v)", n, err)
			}
		}
		// Held already: no network use.
		if got, err := cli.Fetch(ctx, nil, h, nil); err != nil || got != int64(n) {
			t.Fatalf("size %d: second Fetch = %d, %v", n, got, err)
		}
	}
	conn.Close()
	if err := <-served; err != nil {
		t.Fatalf("Serve after the client closed: %v", err)
	}
}

// corruptReader flips one byte at offset at of what it reads, and ends the
// stream with io.EOF after cut bytes if cut > 0: a lying or broken server
// seen from the client.
type corruptConn struct {
	net.Conn
	at, cut, n int64
}

func (c *corruptConn) Read(p []byte) (int, error) {
	if c.cut > 0 && c.n >= c.cut {
		return 0, io.EOF
	}
	if c.cut > 0 && int64(len(p)) > c.cut-c.n {
		p = p[:c.cut-c.n]
	}
	k, err := c.Conn.Read(p)
	if c.at >= c.n && c.at < c.n+int64(k) {
		p[c.at-c.n] ^= 0x40
	}
	c.n += int64(k)
	return k, err
}

func responseHeaderLen(size uint64) int64 {
	b, err := wireEnc.Marshal(wireResponse{Status: statusOK, Size: size})
	if err != nil {
		panic(err)
	}
	return 4 + int64(len(b))
}

func TestFetchRejectsBadStreams(t *testing.T) {
	const n = 1<<20 + 3
	b := content(n, 8)
	hdr := responseHeaderLen(n)
	enc := encodedSize(n)
	cases := []struct {
		name    string
		size    int
		at, cut int64
		want    error
	}{
		{"root parent", n, hdr + 5, 0, ErrCorrupt},
		{"inner parent", n, hdr + 64 + 40, 0, ErrCorrupt},
		{"first group", n, hdr + 64*7 + 100, 0, ErrCorrupt}, // 64 groups + 1: 7 parents down the left spine
		{"last group", n, hdr + int64(enc) - 1, 0, ErrCorrupt},
		{"middle group", n, hdr + int64(enc)/2, 0, ErrCorrupt},
		{"single group", 1000, responseHeaderLen(1000) + 3, 0, ErrCorrupt},
		{"truncated", n, -1, hdr + int64(enc) - 10, io.ErrUnexpectedEOF},
		{"truncated small", 1000, -1, responseHeaderLen(1000) + 999, io.ErrUnexpectedEOF},
		{"truncated header", n, -1, 3, io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := newTestStore(t), newTestStore(t)
			h, err := srv.AddBytes(context.Background(), b[:tc.size])
			if err != nil {
				t.Fatal(err)
			}
			conn, _ := servePipe(t, srv, nil)
			cc := &corruptConn{Conn: conn, at: tc.at, cut: tc.cut}
			_, err = cli.Fetch(context.Background(), cc, h, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Fetch = %v, want %v", err, tc.want)
			}
			if has(t, cli, h) {
				t.Fatal("Has after a failed Fetch")
			}
			if names := dirFiles(t, cli); len(names) != 0 {
				t.Fatalf("files left after a failed Fetch: %v", names)
			}
			// The store still works for the same hash from an honest peer.
			conn2, _ := servePipe(t, srv, nil)
			if _, err := cli.Fetch(context.Background(), conn2, h, nil); err != nil {
				t.Fatalf("honest Fetch after the failure: %v", err)
			}
		})
	}
}

func TestServeNotFoundDoesNotLeak(t *testing.T) {
	srv, cli := newTestStore(t), newTestStore(t)
	ctx := context.Background()
	held, err := srv.AddBytes(ctx, content(100, 9))
	if err != nil {
		t.Fatal(err)
	}
	var absent Hash
	absent[31] = 7
	allow := func(h Hash) bool { return h != held }
	conn, _ := servePipe(t, srv, allow)
	for _, h := range []Hash{held, absent} {
		if _, err := cli.Fetch(ctx, conn, h, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Fetch %s: %v, want ErrNotFound", h, err)
		}
	}
	// Byte-identical answers for "not allowed" and "not held".
	raw := func(h Hash) []byte {
		if err := writeFrame(conn, encodeRequest(Request{Hash: h})); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var hdr [4]byte
		io.ReadFull(conn, hdr[:])
		body := make([]byte, int(hdr[3]))
		io.ReadFull(conn, body)
		return append(hdr[:], body...)
	}
	if a, b := raw(held), raw(absent); !bytes.Equal(a, b) {
		t.Fatalf("not-allowed answer %x differs from not-held %x", a, b)
	}
	if has(t, cli, held) {
		t.Fatal("client holds a blob it was refused")
	}
}

func TestServeRejectsBadRequests(t *testing.T) {
	srv := newTestStore(t)
	h := addBlob(t, srv, content(50000, 10))
	for name, frame := range map[string][]byte{
		"huge length": {0xff, 0xff, 0xff, 0xff},
		"zero length": {0, 0, 0, 0},
		"not cbor":    {0, 0, 0, 2, 0xff, 0xff},
		"short hash":  append([]byte{0, 0, 0, 6}, 0xa1, 0x01, 0x42, 1, 2, 0),
	} {
		t.Run(name, func(t *testing.T) {
			conn, served := servePipe(t, srv, nil)
			go conn.Write(frame)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			var resp wireResponse
			if err := readFrame(conn, maxResponseFrame, "response", &resp); err != nil || resp.Status != statusBadRequest {
				t.Fatalf("response %+v, %v; want bad request", resp, err)
			}
			if err := <-served; !errors.Is(err, ErrProtocol) {
				t.Fatalf("Serve = %v, want ErrProtocol", err)
			}
		})
	}
	t.Run("oversized announcement", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		go func() {
			var req wireRequest
			readFrame(a, maxRequestFrame, "request", &req)
			writeFrame(a, wireResponse{Status: statusOK, Size: 1 << 50})
		}()
		cli := newTestStore(t)
		var le *LimitError
		if _, err := cli.Fetch(context.Background(), b, h, nil); !errors.As(err, &le) || !errors.Is(err, ErrProtocol) {
			t.Fatalf("Fetch = %v, want a *LimitError", err)
		}
	})
}

func TestFetchContextCancel(t *testing.T) {
	srv, cli := newTestStore(t), newTestStore(t)
	h := addBlob(t, srv, content(1<<20, 11))
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { // a server that answers and then stalls
		var req wireRequest
		readFrame(a, maxRequestFrame, "request", &req)
		writeFrame(a, wireResponse{Status: statusOK, Size: 1 << 20})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := cli.Fetch(ctx, b, h, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch = %v, want deadline exceeded", err)
	}
	if names := dirFiles(t, cli); len(names) != 0 {
		t.Fatalf("files left: %v", names)
	}
}

// FuzzServeRequest feeds arbitrary bytes to Serve as a peer's requests: it
// must never panic and must answer or fail with an error.
func FuzzServeRequest(f *testing.F) {
	var h Hash
	req, err := wireEnc.Marshal(encodeRequest(Request{Hash: h, Ranges: []ChunkRange{{0, 1}}}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append([]byte{0, 0, 0, byte(len(req))}, req...))
	f.Add([]byte{0, 0, 0, 1, 0xa0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	srv := newTestStore(f)
	srv.AddBytes(context.Background(), make([]byte, 40000))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(b), &out}
		srv.Serve(context.Background(), rw, nil)
	})
}

func TestFetchConcurrentSameBlob(t *testing.T) {
	srv, cli := newTestStore(t), newTestStore(t)
	b := content(300000, 13)
	h := addBlob(t, srv, b)
	errs := make(chan error, 4)
	for range 4 {
		conn, _ := servePipe(t, srv, nil)
		go func() {
			_, err := cli.Fetch(context.Background(), conn, h, nil)
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got, err := cli.ReadAll(h, 1<<20)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("ReadAll: %v", err)
	}
	// One data file, no leftover part files (the outboard is inline).
	if names := dirFiles(t, cli); len(names) != 1 || names[0] != h.String()+".data" {
		t.Fatalf("blob dir: %v, want only the data file", names)
	}
	checkOutboard(t, cli, h, b, "concurrent Fetch")
}

func TestServeContextCancel(t *testing.T) {
	srv := newTestStore(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, a, nil) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not stop")
	}
}

// TestReadFrameGrowsWithBytes: a request frame that announces
// maxRequestFrame and sends ten bytes costs the server a few KiB, not
// the announced length.
func TestReadFrameGrowsWithBytes(t *testing.T) {
	frame := binary.BigEndian.AppendUint32(nil, maxRequestFrame)
	frame = append(frame, "ten bytes!"...)
	read := func() {
		var req wireRequest
		if err := readFrame(bytes.NewReader(frame), maxRequestFrame, "request", &req); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	}
	const runs = 50
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	read()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		read()
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > maxRequestFrame/2 {
		t.Fatalf("%d bytes allocated per frame that announced %d and sent 10", per, maxRequestFrame)
	}
}
