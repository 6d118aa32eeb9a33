package blobsync

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
)

// Have asks the server at the other end of rw (see ServeWith) which chunk
// groups of blob h it holds. It returns the blob's size as the server
// announces it (not verified: a ranged stream that includes the last group
// verifies it) and the held ranges (all groups for a complete blob; at most
// 512 ranges, possibly fewer than held, never more). ErrNotFound if the
// server does not hold or does not share h. It reads exactly the answer, so
// rw can carry more requests afterwards.
func Have(ctx context.Context, rw io.ReadWriter, h Hash) (size int64, held RangeSet, err error) {
	stop := watchCtx(ctx, rw)
	defer stop()
	sz, rs, err := readHave(rw, rw, h)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return 0, nil, fmt.Errorf("blobsync: have %s: %w", h, err)
	}
	return int64(sz), rs, nil
}

func readHave(w io.Writer, r io.Reader, h Hash) (uint64, RangeSet, error) {
	if err := writeFrame(w, encodeRequest(Request{Hash: h, Have: true})); err != nil {
		return 0, nil, err
	}
	return readHaveAnswer(r)
}

// readHaveAnswer reads the answer to a have query: the announced size and
// the held ranges, merged and clipped to the blob.
func readHaveAnswer(r io.Reader) (uint64, RangeSet, error) {
	resp, err := readResponse(r)
	if err != nil {
		return 0, nil, err
	}
	rs := make(RangeSet, 0, len(resp.Ranges))
	for _, c := range resp.Ranges {
		rs = append(rs, ChunkRange{c.Start, c.End})
	}
	if !rs.valid() {
		return 0, nil, fmt.Errorf("%w: have answer ranges empty, unsorted or overlapping", ErrProtocol)
	}
	// Merge adjacent ranges and clip to the blob.
	var norm RangeSet
	for _, c := range rs {
		norm = norm.Add(ChunkRange{c.Start, min(c.End, numGroups(resp.Size))})
	}
	return resp.Size, norm, nil
}

// readResponse reads a response header, maps its status to an error and
// checks the announced size against MaxBlobSize.
func readResponse(r io.Reader) (wireResponse, error) { return readResponseOf(r, false) }

// readDeltaResponse is readResponse for a delta request (op 3 or 4),
// whose answer may also be no-base: ErrNoBase.
func readDeltaResponse(r io.Reader) (wireResponse, error) { return readResponseOf(r, true) }

func readResponseOf(r io.Reader, delta bool) (wireResponse, error) {
	var resp wireResponse
	if err := readFrame(r, maxResponseFrame, "response header", &resp); err != nil {
		if err == io.EOF {
			err = fmt.Errorf("read response header: %w", io.ErrUnexpectedEOF)
		}
		return resp, err
	}
	if delta && resp.Status == statusNoBase {
		return resp, ErrNoBase
	}
	if err := statusErr(resp.Status, resp.Msg); err != nil {
		return resp, err
	}
	if resp.Size > uint64(MaxBlobSize) {
		return resp, fmt.Errorf("%w: %w", ErrProtocol, &LimitError{What: "announced blob size", Limit: MaxBlobSize, Got: int64(min(resp.Size, 1<<62))})
	}
	return resp, nil
}

// rangeConn is the client side of one blob stream: requests written as
// they are made (pipelined), responses read in order through one buffer.
type rangeConn struct {
	rw io.ReadWriteCloser
	br *bufio.Reader
}

// rangeReadBuf is the read buffer of a rangeConn. It is small on purpose:
// bufio reads straight into the caller's slice once its buffer is empty
// and the slice is at least as large, so most of each 16 KiB group goes
// from the stream into the sink's write buffer with one copy; only the
// bytes that follow a parent node or header in the same read pass through
// the buffer (a 256 KiB buffer copied every byte twice).
const rangeReadBuf = 2 << 10

func newRangeConn(rw io.ReadWriteCloser) *rangeConn {
	return &rangeConn{rw: rw, br: bufio.NewReaderSize(rw, rangeReadBuf)}
}

// have asks which groups of h the server holds. With then, a get of each
// of those range sets goes out with the query, before its answer is read
// (pipelined): the caller reads the gets' answers next, in order. All go
// in one write, so a stream without buffering (net.Pipe) cannot deadlock
// a later request against the first answer.
func (c *rangeConn) have(h Hash, then ...[]ChunkRange) (uint64, RangeSet, error) {
	if len(then) == 0 {
		return readHave(c.rw, c.br, h)
	}
	var b bytes.Buffer
	if err := writeFrame(&b, encodeRequest(Request{Hash: h, Have: true})); err != nil {
		return 0, nil, err
	}
	for _, rs := range then {
		if err := writeFrame(&b, encodeRequest(Request{Hash: h, Ranges: rs})); err != nil {
			return 0, nil, err
		}
	}
	if _, err := c.rw.Write(b.Bytes()); err != nil {
		return 0, nil, err
	}
	return readHaveAnswer(c.br)
}

func (c *rangeConn) request(h Hash, ranges []ChunkRange) error {
	return writeFrame(c.rw, encodeRequest(Request{Hash: h, Ranges: ranges}))
}

// readRanges reads the answer to request(h, ranges) for a blob whose
// verified size is size, verifying it into out. A size that differs from
// the verified one is a lie (ErrCorrupt).
func (c *rangeConn) readRanges(v *verifier, h Hash, size uint64, ranges []ChunkRange, out sink) error {
	resp, err := readResponse(c.br)
	if err != nil {
		return err
	}
	if resp.Size != size {
		return fmt.Errorf("%w: peer announced size %d, the verified size is %d", ErrCorrupt, resp.Size, size)
	}
	return v.verify(c.br, h, size, ranges, out, nil)
}
