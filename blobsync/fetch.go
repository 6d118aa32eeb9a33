package blobsync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

// Fetch downloads the whole blob h from the server at the other end of rw
// (see Serve) and stores it; it returns the blob's size. If the store
// already holds h, it returns at once without using rw.
//
// Every 16 KiB chunk group is verified against h through the BLAKE3 tree
// before a byte of it is written; the parent nodes that arrive become the
// blob's outboard. The blob goes to ".part" files that become the blob only
// once complete and fsynced. On any failure — ErrCorrupt at the first group
// or parent that does not match, ErrNotFound if the peer does not hold or
// does not share h, ErrProtocol, a broken stream, ctx ending — the part
// files are removed, nothing of h is stored and Has(h) stays false; rw is
// then in an unknown state and should be closed.
//
// progress, if not nil, gets the verified bytes and the total at least every
// MiB and once with done == total. The size the server announces is checked
// against MaxBlobSize before anything is allocated.
func (s *Store) Fetch(ctx context.Context, rw io.ReadWriter, h Hash, progress func(done, total int64)) (int64, error) {
	if n, err := s.Size(h); err == nil {
		if progress != nil {
			progress(n, n)
		}
		return n, nil
	}
	unlock, err := s.lock(ctx, h)
	if err != nil {
		return 0, err
	}
	defer unlock()
	if n, err := s.Size(h); err == nil {
		return n, nil
	}
	n, err := s.fetch(ctx, rw, h, progress)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return 0, fmt.Errorf("blobsync: fetch %s: %w", h, err)
	}
	return n, nil
}

func (s *Store) fetch(ctx context.Context, rw io.ReadWriter, h Hash, progress func(done, total int64)) (int64, error) {
	stop := watchCtx(ctx, rw)
	defer stop()
	if err := writeFrame(rw, encodeRequest(Request{Hash: h})); err != nil {
		return 0, err
	}
	br := bufio.NewReaderSize(rw, ioBufSize)
	var resp wireResponse
	if err := readFrame(br, maxResponseFrame, "response header", &resp); err != nil {
		if err == io.EOF {
			err = fmt.Errorf("read response header: %w", io.ErrUnexpectedEOF)
		}
		return 0, err
	}
	if err := statusErr(resp.Status, resp.Msg); err != nil {
		return 0, err
	}
	if resp.Size > uint64(MaxBlobSize) {
		return 0, fmt.Errorf("%w: %w", ErrProtocol, &LimitError{What: "announced blob size", Limit: MaxBlobSize, Got: int64(min(resp.Size, 1<<62))})
	}
	size := resp.Size
	prog := func(done uint64) error {
		if progress != nil {
			progress(int64(done), int64(size))
		}
		return ctx.Err()
	}
	if err := s.storeWhole(br, new(verifier), h, size, prog); err != nil {
		return 0, err
	}
	return int64(size), nil
}

// storeWhole verifies the whole-blob body of h, size bytes as its header
// announced, from r and stores the blob: inline if small, else through
// part files that become the blob only once complete and fsynced. On
// failure nothing of h is stored. The caller holds s.lock(h).
func (s *Store) storeWhole(r io.Reader, v *verifier, h Hash, size uint64, prog func(done uint64) error) error {
	if size <= inlineMax {
		buf := bytes.NewBuffer(make([]byte, 0, size))
		if err := v.verify(r, h, size, nil, seqSink{data: buf}, prog); err != nil {
			return err
		}
		return s.putEntry(h, entry{Size: int64(size), State: stateComplete, Inline: buf.Bytes()})
	}
	w, err := s.newPartFiles(h, size)
	if err != nil {
		return err
	}
	var hdr [outboardHeader]byte
	binary.LittleEndian.PutUint64(hdr[:], size)
	w.obao.Write(hdr[:])
	if err := v.verify(r, h, size, nil, seqSink{data: w.data, outboard: w.obao}, prog); err != nil {
		w.abort()
		return err
	}
	return w.commit(int64(size))
}
