package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/flynn/noise"
)

// DefaultHandshakeTimeout bounds one tunnel handshake, either side, when
// DialConfig.HandshakeTimeout or AcceptConfig.HandshakeTimeout is zero: the
// four handshake frames are under 200 bytes in all, so a peer that has not
// finished in 10 s (many round trips on the slowest mobile link) is
// stalling, and the stream and goroutine it holds are given back.
const DefaultHandshakeTimeout = 10 * time.Second

// DialConfig configures the initiator side of a tunnel.
type DialConfig struct {
	// Static is this node's Noise static keypair; required.
	Static StaticKey
	// RemoteStatic is the responder's static public key, from its tunnel
	// descriptor; required. A wrong key fails with ErrHandshake.
	RemoteStatic [32]byte
	// Group names the group whose PSK is used. It travels in the clear hello
	// so the responder can pick the PSK, and is bound into the prologue.
	Group key.RecordKey
	// PSK is PSK(group secret).
	PSK [32]byte
	// Binding is optional extra bytes appended to the Noise prologue, such as
	// a TLS exporter value of the carrying QUIC connection. Both ends must
	// pass the same bytes (nil through a relay), or the handshake fails.
	Binding []byte
	// TLSTransport asks the responder to skip Noise's transport encryption
	// after the handshake: the session's bytes then travel as they are,
	// protected only by the carrying connection (docs/tunnel.md, "TLS
	// transport"). Use it only on a stream of a direct QUIC connection,
	// with Binding set to that connection's TLS exporter (at least 32
	// bytes; transport.StreamBinding), never through a relay. Dial fails
	// with ErrConfig if Binding is shorter. The responder may decline; then
	// the session encrypts as usual (Session.TLSTransport tells).
	TLSTransport bool
	// HandshakeTimeout bounds the handshake from Dial's start to the key
	// confirmation written, whatever ctx allows. Zero:
	// DefaultHandshakeTimeout; negative: only ctx bounds it.
	HandshakeTimeout time.Duration
}

// AcceptConfig configures the responder side of a tunnel.
type AcceptConfig struct {
	// Static is this node's Noise static keypair; required.
	Static StaticKey
	// LookupPSK returns the PSK of a group this node serves, or false to
	// refuse the group; required. It is called once per Accept, with the
	// group named in the initiator's hello.
	LookupPSK func(group key.RecordKey) ([32]byte, bool)
	// Binding: see DialConfig.Binding.
	Binding []byte
	// AllowTLSTransport accepts an initiator's DialConfig.TLSTransport
	// request. It is honoured only with a Binding of at least 32 bytes,
	// which must be the TLS exporter of the direct QUIC connection that
	// carries the stream (never set it for relayed streams).
	AllowTLSTransport bool
	// Logger gets refusals at debug level (never higher: anyone can cause
	// them). Nil discards.
	Logger *slog.Logger
	// HandshakeTimeout bounds the handshake from Accept's start to the
	// initiator's key confirmation, whatever ctx allows: an initiator that
	// sends its hello and stops is cut off then. Zero:
	// DefaultHandshakeTimeout; negative: only ctx bounds it.
	HandshakeTimeout time.Duration
}

// handshakeCtx bounds ctx by the handshake timeout d (zero: the default,
// negative: none).
func handshakeCtx(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d == 0 {
		d = DefaultHandshakeTimeout
	}
	if d < 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// Dial runs the initiator side of the handshake on rw and returns the
// session. Wire: hello frame {Version, Group} and Noise message 1 are written
// together before anything is read; then message 2 is read; then an empty
// transport frame (key confirmation) is written so the responder knows the
// initiator holds the PSK.
//
// ctx and cfg.HandshakeTimeout bound the handshake only: when either ends
// it, rw's deadline is set to the past if rw has SetDeadline(time.Time)
// error, else rw is closed. Errors: ErrHandshake (wrapped, with the stage)
// for any refusal or bad message, ctx.Err() (wrapped) when ctx ends,
// context.DeadlineExceeded (wrapped) when the handshake timeout passes,
// ErrConfig for an unusable config. On any error rw is closed.
func Dial(ctx context.Context, rw io.ReadWriteCloser, cfg DialConfig) (_ *Session, err error) {
	defer func() {
		if err != nil {
			_ = rw.Close()
		}
	}()
	if cfg.Static.IsZero() {
		return nil, fmt.Errorf("%w: dial: no static key", ErrConfig)
	}
	if cfg.RemoteStatic == [32]byte{} {
		return nil, fmt.Errorf("%w: dial: no remote static key", ErrConfig)
	}
	if cfg.TLSTransport && len(cfg.Binding) < MinTLSBinding {
		return nil, fmt.Errorf("%w: dial: TLS transport needs a %d-byte TLS binding, have %d bytes", ErrConfig, MinTLSBinding, len(cfg.Binding))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tunnel: dial: %w", err)
	}
	ctx, cancel := handshakeCtx(ctx, cfg.HandshakeTimeout)
	defer cancel()
	stop := guard(ctx, rw)
	fail := func(stage string, err error) error {
		stop()
		return classify(ctx, "dial", stage, err)
	}

	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:           suite,
		Pattern:               noise.HandshakeIK,
		Initiator:             true,
		Prologue:              prologue(cfg.Group, cfg.Binding),
		PresharedKey:          cfg.PSK[:],
		PresharedKeyPlacement: 2,
		StaticKeypair:         cfg.Static.dhKey(),
		PeerStatic:            cfg.RemoteStatic[:],
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("%w: dial: %w", ErrConfig, err)
	}

	// Message 1 carries a one-byte flags payload only when a flag is set,
	// so a plain dial is byte for byte what it always was.
	var payload1 []byte
	if cfg.TLSTransport {
		payload1 = []byte{flagTLSTransport}
	}
	out := make([]byte, 0, 2+helloLen+2+msg1Len+1)
	out = binary.BigEndian.AppendUint16(out, helloLen)
	out = append(out, Version)
	out = append(out, cfg.Group[:]...)
	out = binary.BigEndian.AppendUint16(out, uint16(msg1Len+len(payload1)))
	out, _, _, err = hs.WriteMessage(out, payload1)
	if err != nil {
		// Only a bad RemoteStatic (a low-order point) gets here.
		stop()
		return nil, fmt.Errorf("%w: dial: write message 1: %w", ErrConfig, err)
	}
	if _, err := rw.Write(out); err != nil {
		return nil, fail("write hello", err)
	}

	// Message 2 answers a flags payload with the flags accepted (one byte).
	var buf [msg2Len + 1]byte
	msg2, err := readHandshakeFrame(rw, buf[:], msg2Len+len(payload1))
	if err != nil {
		return nil, fail("read message 2", err)
	}
	payload, cs1, cs2, err := hs.ReadMessage(nil, msg2)
	if err != nil {
		return nil, fail("message 2", err)
	}
	if len(payload) != len(payload1) || cs1 == nil {
		return nil, fail("message 2", errors.New("unexpected payload"))
	}
	plain := false
	if len(payload) == 1 {
		if payload[0]&^payload1[0] != 0 {
			return nil, fail("message 2", fmt.Errorf("accepted flags %#x that were not offered", payload[0]))
		}
		plain = payload[0]&flagTLSTransport != 0
	}

	s := newSession(rw, cs1, cs2, cfg.Group, cfg.RemoteStatic, hs.ChannelBinding())
	// Key confirmation: the first initiator->responder transport frame is
	// empty. Only an initiator with the right PSK can produce it. It is a
	// Noise frame in TLS transport mode too.
	if err := s.writeFrame(nil); err != nil {
		return nil, fail("write confirmation", err)
	}
	s.plain = plain
	if err := stop(); err != nil {
		return nil, fmt.Errorf("tunnel: dial: %w", err)
	}
	return s, nil
}

// Accept runs the responder side of the handshake on rw and returns the
// session once the initiator has proven that it holds the group's PSK.
//
// The responder reads the hello and message 1 and, if message 1 decrypts
// under its static key, answers with message 2. An unknown group
// (LookupPSK false) is answered exactly like a known one but under a random
// PSK, so the initiator cannot tell "unknown group" from "wrong group
// secret". Accept then waits for the initiator's key confirmation frame;
// without it no Session exists, so the application never sees a byte from a
// non-member. A message 1 that does not decrypt (wrong responder key,
// garbage) is answered with nothing.
//
// ctx, cfg.HandshakeTimeout, errors and closing of rw: as for Dial. The
// timeout is what keeps a stranger that opens streams and stalls from
// holding them: it is the responder's deadline on the first frames.
func Accept(ctx context.Context, rw io.ReadWriteCloser, cfg AcceptConfig) (_ *Session, err error) {
	defer func() {
		if err != nil {
			_ = rw.Close()
		}
	}()
	if cfg.Static.IsZero() {
		return nil, fmt.Errorf("%w: accept: no static key", ErrConfig)
	}
	if cfg.LookupPSK == nil {
		return nil, fmt.Errorf("%w: accept: no LookupPSK", ErrConfig)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tunnel: accept: %w", err)
	}
	ctx, cancel := handshakeCtx(ctx, cfg.HandshakeTimeout)
	defer cancel()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop := guard(ctx, rw)
	fail := func(stage string, err error) error {
		stop()
		err = classify(ctx, "accept", stage, err)
		log.Debug("tunnel refused", "err", err)
		return err
	}

	var buf [msg1Len + 1]byte
	hello, err := readHandshakeFrame(rw, buf[:], helloLen)
	if err != nil {
		return nil, fail("read hello", err)
	}
	if hello[0] != Version {
		return nil, fail("hello", fmt.Errorf("unsupported version %d", hello[0]))
	}
	var group key.RecordKey
	copy(group[:], hello[1:])
	psk, known := cfg.LookupPSK(group)
	if !known {
		if _, err := rand.Read(psk[:]); err != nil {
			return nil, fail("random psk", err)
		}
	}

	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:           suite,
		Pattern:               noise.HandshakeIK,
		Initiator:             false,
		Prologue:              prologue(group, cfg.Binding),
		PresharedKey:          psk[:],
		PresharedKeyPlacement: 2,
		StaticKeypair:         cfg.Static.dhKey(),
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("%w: accept: %w", ErrConfig, err)
	}

	msg1, err := readHandshakeFrame(rw, buf[:], msg1Len, msg1Len+1)
	if err != nil {
		return nil, fail("read message 1", err)
	}
	payload, _, _, err := hs.ReadMessage(nil, msg1)
	if err != nil {
		return nil, fail("message 1", err)
	}
	// A flags payload gets the accepted flags back; unknown flags are
	// declined, so a later flag needs no new version.
	var payload2 []byte
	if len(payload) == 1 {
		accepted := payload[0] & flagTLSTransport
		if !cfg.AllowTLSTransport || len(cfg.Binding) < MinTLSBinding {
			accepted &^= flagTLSTransport
		}
		payload2 = []byte{accepted}
	}
	var remote [32]byte
	copy(remote[:], hs.PeerStatic())

	out := make([]byte, 0, 2+msg2Len+1)
	out = binary.BigEndian.AppendUint16(out, uint16(msg2Len+len(payload2)))
	out, cs1, cs2, err := hs.WriteMessage(out, payload2)
	if err != nil {
		return nil, fail("message 2", err)
	}
	if _, err := rw.Write(out); err != nil {
		return nil, fail("write message 2", err)
	}

	s := newSession(rw, cs2, cs1, group, remote, hs.ChannelBinding())
	pt, err := s.readFrame(nil)
	if err != nil {
		return nil, fail("read confirmation", err)
	}
	if len(pt) != 0 {
		return nil, fail("confirmation", errors.New("not empty"))
	}
	if !known {
		// Unreachable short of guessing a random 256-bit key.
		return nil, fail("confirmation", errors.New("unknown group"))
	}
	s.plain = len(payload2) == 1 && payload2[0]&flagTLSTransport != 0
	if err := stop(); err != nil {
		return nil, fmt.Errorf("tunnel: accept: %w", err)
	}
	return s, nil
}

// readHandshakeFrame reads one frame whose body must be exactly one of the
// sizes in want (every version-1 handshake message has a fixed size, or
// one more with a flags payload) into buf.
func readHandshakeFrame(r io.Reader, buf []byte, want ...int) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if !slices.Contains(want, n) {
		return nil, fmt.Errorf("frame is %d bytes, want %v", n, want)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf[:n], nil
}

// classify turns a handshake failure into ctx's error if ctx has ended (the
// failure was most likely the deadline guard firing), else ErrHandshake.
func classify(ctx context.Context, side, stage string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("tunnel: %s: %s: %w", side, stage, cerr)
	}
	return fmt.Errorf("%w: %s: %s: %w", ErrHandshake, side, stage, err)
}

type deadliner interface {
	SetDeadline(time.Time) error
}

// guard makes rw's blocking calls return when ctx ends: through a past
// deadline if rw supports one, else by closing rw. The returned stop
// disarms it and reports ctx's error if the guard already fired (then rw is
// unusable). stop may be called more than once.
func guard(ctx context.Context, rw io.ReadWriteCloser) (stop func() error) {
	var fire func()
	if d, ok := rw.(deadliner); ok {
		fire = func() { _ = d.SetDeadline(time.Unix(1, 0)) }
	} else {
		fire = func() { _ = rw.Close() }
	}
	disarm := context.AfterFunc(ctx, fire)
	var stopped, fired bool
	return func() error {
		if !stopped {
			stopped = true
			fired = !disarm()
		}
		if fired {
			if err := ctx.Err(); err != nil {
				return err
			}
			return context.Canceled
		}
		return nil
	}
}
