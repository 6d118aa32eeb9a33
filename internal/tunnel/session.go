package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/quic-go/quic-go"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/flynn/noise"
)

// Session is an established tunnel: an io.ReadWriteCloser whose Write
// encrypts into Noise transport frames and whose Read decrypts them.
//
// Each direction has its own cipher state (ChaCha20-Poly1305, 64-bit
// counter nonce). One goroutine may Read while another Writes; concurrent
// Reads (or concurrent Writes) are serialised. Close closes the underlying
// stream and unblocks both.
//
// In TLS transport mode (DialConfig.TLSTransport, accepted by the
// responder) Read and Write pass bytes through to the stream unchanged
// after the handshake: the carrying QUIC connection's TLS, to which the
// handshake was bound, protects them.
type Session struct {
	rw      io.ReadWriteCloser
	group   key.RecordKey
	remote  [32]byte
	binding []byte
	plain   bool // TLS transport mode: no Noise frames after the handshake

	rmu     sync.Mutex
	recv    *noise.CipherState
	rhdr    [2]byte
	rbuf    []byte // MaxFrame bytes; frames are decrypted in place
	pending []byte // decrypted bytes not yet returned; aliases rbuf
	rerr    error  // sticky

	wmu  sync.Mutex
	send *noise.CipherState
	wbuf []byte // 2 + MaxFrame bytes
	werr error  // sticky

	closeOnce sync.Once
	closeErr  error
}

func newSession(rw io.ReadWriteCloser, send, recv *noise.CipherState, group key.RecordKey, remote [32]byte, binding []byte) *Session {
	return &Session{
		rw:      rw,
		group:   group,
		remote:  remote,
		binding: append([]byte(nil), binding...),
		recv:    recv,
		rbuf:    make([]byte, MaxFrame),
		send:    send,
		wbuf:    make([]byte, 2+MaxFrame),
	}
}

// Group is the group whose PSK both ends proved to hold.
func (s *Session) Group() key.RecordKey { return s.group }

// RemoteStatic is the peer's Noise static public key: for the initiator the
// key it dialled, for the responder the key the initiator proved it holds.
// Map it to a member through the group's tunnel descriptors.
func (s *Session) RemoteStatic() [32]byte { return s.remote }

// TLSTransport reports whether the session runs in TLS transport mode: its
// bytes are not Noise-encrypted but carried as they are by the direct QUIC
// connection whose TLS exporter the handshake was bound to.
func (s *Session) TLSTransport() bool { return s.plain }

// ChannelBinding is the Noise handshake hash (32 bytes), the same on both
// ends and unique to this session; use it to bind higher-level
// authentication to the tunnel.
func (s *Session) ChannelBinding() []byte { return append([]byte(nil), s.binding...) }

// Read returns decrypted application bytes. It reads whole frames from the
// stream and keeps the undelivered rest of a frame for the next call. It
// returns io.EOF when the peer closed the stream at a frame boundary, and an
// error wrapping ErrFrame when a frame is cut short, has a bad length or
// fails authentication; after an error every Read returns it again.
func (s *Session) Read(p []byte) (int, error) {
	if s.plain {
		return s.rw.Read(p)
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	for len(s.pending) == 0 {
		if s.rerr != nil {
			return 0, s.rerr
		}
		pt, err := s.readFrame(p)
		if err != nil {
			s.rerr = err
			return 0, err
		}
		if len(pt) > 0 && &pt[0] == &p[0] {
			return len(pt), nil // decrypted straight into p
		}
		s.pending = pt
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// readFrame reads and decrypts one transport frame. The plaintext goes to
// dst when the whole of it fits there, else it aliases s.rbuf. Callers
// hold rmu (or own the session exclusively).
func (s *Session) readFrame(dst []byte) ([]byte, error) {
	if _, err := io.ReadFull(s.rw, s.rhdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated length", ErrFrame)
		}
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(s.rhdr[:]))
	if n < TagSize {
		return nil, fmt.Errorf("%w: %d-byte frame is shorter than its tag", ErrFrame, n)
	}
	if _, err := io.ReadFull(s.rw, s.rbuf[:n]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated %d-byte frame", ErrFrame, n)
		}
		return nil, err
	}
	out := s.rbuf[:0]
	if len(dst) >= n-TagSize {
		out = dst[:0]
	}
	pt, err := s.recv.Decrypt(out, nil, s.rbuf[:n])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFrame, err)
	}
	return pt, nil
}

// Write encrypts p into one or more transport frames of at most
// MaxPlaintext bytes each and writes them. It returns the number of bytes of
// p carried by frames that were written whole. After an error every Write
// returns it again (the peer's nonce would be out of step). Sending
// 2^64-1 frames in one direction exhausts the nonce (noise.ErrMaxNonce);
// a new handshake is then needed.
func (s *Session) Write(p []byte) (int, error) {
	if s.plain {
		return s.rw.Write(p)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.werr != nil {
		return 0, s.werr
	}
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxPlaintext)]
		if err := s.writeFrame(chunk); err != nil {
			s.werr = err
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// writeFrame encrypts pt (at most MaxPlaintext bytes) into one frame and
// writes it. Callers hold wmu (or own the session exclusively).
func (s *Session) writeFrame(pt []byte) error {
	out, err := s.send.Encrypt(s.wbuf[:2], nil, pt)
	if err != nil {
		return fmt.Errorf("tunnel: encrypt: %w", err)
	}
	binary.BigEndian.PutUint16(out, uint16(len(out)-2))
	if _, err := s.rw.Write(out); err != nil {
		return fmt.Errorf("tunnel: write: %w", err)
	}
	return nil
}

// Close closes the underlying stream; later calls return the first result.
// A blocked Read or Write returns with the stream's error.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		// On a QUIC stream Close ends only the send side; stop reading too,
		// so the peer stops sending at once instead of finishing what was
		// asked (a cancelled download would otherwise drain its requests).
		if r, ok := s.rw.(interface{ CancelRead(quic.StreamErrorCode) }); ok {
			r.CancelRead(0)
		}
		s.closeErr = s.rw.Close()
	})
	return s.closeErr
}
