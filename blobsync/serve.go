package blobsync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Serve answers blob requests read from rw until rw ends (io.EOF at a frame
// boundary: Serve returns nil) or fails. It is transport-agnostic: rw is any
// byte stream (a Noise tunnel session, a QUIC stream). Each request gets a
// response header and, if the status is OK, the blob's whole combined stream
// or the part of it that the request's ranges select (docs/protocol.md,
// "Blobs"), generated on the fly from the data and outboard files with
// bounded memory.
//
// allow decides which hashes this peer may fetch (nil allows every blob the
// store holds). A hash not allowed and a hash not held get the same
// not-found answer, so a peer cannot learn what the store holds. A malformed
// request gets a bad-request answer and ends Serve with an error wrapping
// ErrProtocol. If a local file turns out corrupt mid-stream, Serve stops
// with an error (the peer sees a broken stream and the caller should close
// rw). When ctx ends, Serve returns ctx.Err(): blocked I/O is interrupted if
// rw has SetDeadline, else the caller must close rw.
func (s *Store) Serve(ctx context.Context, rw io.ReadWriter, allow func(Hash) bool) error {
	return s.ServeWith(ctx, rw, ServeOptions{Allow: allow})
}

// ServeOptions configures ServeWith. The zero value allows every blob and
// limits nothing.
type ServeOptions struct {
	// Allow decides which hashes the peer may fetch or ask about; nil
	// allows every blob the store holds.
	Allow func(Hash) bool
	// Limit is the peer's upload rate and request limit, shared by all of
	// its streams (PeerLimiter.Acquire); nil: none.
	Limit *PeerLimit
	// NoDelta answers delta requests as a server that predates them does
	// (bad request, and the stream ends): for tests and to turn the
	// feature off.
	NoDelta bool
	// noListRuns answers list-runs requests (op 4) as a server with
	// only chunk-run deltas (op 3) does: for tests.
	noListRuns bool
}

// ServeWith is Serve with options: besides whole blobs and ranges of
// complete blobs, it answers have queries and serves the recorded ranges of
// partial blobs (docs/protocol.md, "Blobs"). Bytes sent wait for the peer's
// token bucket; each request waits for one of the peer's request slots.
func (s *Store) ServeWith(ctx context.Context, rw io.ReadWriter, opts ServeOptions) error {
	stop := watchCtx(ctx, rw)
	defer stop()
	allow := opts.Allow
	br := bufio.NewReaderSize(rw, 4<<10)
	lw := opts.Limit.writer(ctx, rw)
	bw := bufio.NewWriterSize(lw, ioBufSize)
	enc := &encoder{direct: lw}
	defer enc.release()
	var cc collCache
	for {
		var wr wireRequest
		err := readFrame(br, maxRequestFrame, "request frame", &wr)
		if err == nil {
			var req Request
			if req, err = wr.decode(); err == nil && req.Delta != nil && (opts.NoDelta || opts.noListRuns && req.Delta.Runs) {
				err = fmt.Errorf("%w: unknown request op %d", ErrProtocol, wr.Op)
			}
			if err == nil {
				var leave func()
				if leave, err = opts.Limit.enter(ctx); err == nil {
					err = s.serveOne(ctx, bw, enc, req, allow, &cc)
					if err == nil && br.Buffered() == 0 {
						// Flush only when no pipelined request waits, so
						// back-to-back responses share writes.
						err = bw.Flush()
					}
					leave()
				}
				if err == nil {
					continue
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, ErrProtocol) {
			writeFrame(bw, wireResponse{Status: statusBadRequest, Msg: err.Error()})
			bw.Flush()
		}
		return fmt.Errorf("blobsync: serve: %w", err)
	}
}

func (s *Store) serveOne(ctx context.Context, w *bufio.Writer, enc *encoder, req Request, allow func(Hash) bool, cc *collCache) error {
	if req.Children != nil {
		return s.serveChildren(ctx, w, enc, req, allow, cc)
	}
	if req.Delta != nil {
		return s.serveDelta(w, req.Delta, allow)
	}
	return s.serveBlob(ctx, w, enc, req.Hash, req.Ranges, req.Have, allow, 0)
}

// serveBlob answers a get (ranges; nil: the whole blob) or a have query
// for h: a response header, with index in it for a child section, and the
// body.
func (s *Store) serveBlob(ctx context.Context, w *bufio.Writer, enc *encoder, h Hash, ranges []ChunkRange, have bool, allow func(Hash) bool, index uint64) error {
	notFound := wireResponse{Status: statusNotFound, Msg: "not found", Index: index}
	if allow != nil && !allow(h) {
		return writeFrame(w, notFound)
	}
	e, found, err := s.rawEntry(h)
	if err != nil {
		s.log.Error("blobsync: serve: local entry", "hash", h, "err", err)
		return writeFrame(w, notFound)
	}
	if !found || (e.State != stateComplete && e.State != statePartial) {
		return writeFrame(w, notFound)
	}
	size := uint64(e.Size)
	var held RangeSet // nil: complete
	if e.State == statePartial {
		if held, err = s.loadRanges(h); err != nil {
			s.log.Error("blobsync: serve: local ranges", "hash", h, "err", err)
			return writeFrame(w, notFound)
		}
	}
	if have {
		all := RangeSet{{0, numGroups(size)}}
		if e.State == statePartial {
			all = held
		}
		return writeFrame(w, wireResponse{Status: statusOK, Size: size, Ranges: encodeRanges(all)})
	}
	if e.State == statePartial {
		if ranges == nil {
			ranges = []ChunkRange{{0, numGroups(size)}}
		}
		for _, c := range ranges {
			c.End = min(c.End, numGroups(size))
			if c.Start < c.End && !held.Contains(c) {
				return writeFrame(w, wireResponse{Status: statusMissing, Msg: "ranges not held; ask with have", Index: index})
			}
		}
	} else if wholeBlob(ranges, size) {
		ranges = nil
	}
	var data, outboard *fwdReader
	defer func() {
		data.release()
		outboard.release()
	}()
	var df *os.File // the blob's bytes, from base, when not inline
	var base int64
	if size <= inlineMax {
		data = pooledFwdReader(bytes.NewReader(e.Inline), int(inlineMax))
	} else {
		f, off, e, err := s.openData(h, e)
		if err != nil {
			s.log.Error("blobsync: serve: data file", "hash", h, "err", err)
			return writeFrame(w, notFound)
		}
		defer f.Close()
		df = f
		if e.slice() {
			base = off
		}
		if len(e.Outboard) > 0 {
			if !e.outboardFits() {
				s.log.Error("blobsync: serve: inline outboard", "hash", h, "bytes", len(e.Outboard))
				return writeFrame(w, notFound)
			}
			outboard = pooledFwdReader(bytes.NewReader(e.Outboard), ChunkGroupSize)
		} else {
			of, err := os.Open(s.obaoPath(h))
			if err != nil {
				s.log.Error("blobsync: serve: outboard file", "hash", h, "err", err)
				return writeFrame(w, notFound)
			}
			defer of.Close()
			outboard = pooledFwdReader(of, 64<<10)
			if err := readOutboardHeader(outboard, size); err != nil {
				s.log.Error("blobsync: serve: outboard", "hash", h, "err", err)
				return writeFrame(w, notFound)
			}
		}
	}
	if err := writeFrame(w, wireResponse{Status: statusOK, Size: size, Index: index}); err != nil {
		return err
	}
	if df != nil {
		err = enc.encodeFile(w, df, base, outboard, size, ranges, ctx.Err)
	} else {
		err = enc.encode(w, data, outboard, size, ranges, ctx.Err)
	}
	if errors.Is(err, ErrCorrupt) {
		s.log.Error("blobsync: serve: local blob broken mid-stream", "hash", h, "err", err)
	}
	return err
}
