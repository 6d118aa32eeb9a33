package transport

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/quic-go/quic-go"
)

// BindingLabel is the TLS exporter label (RFC 8446 §7.5, with an empty
// context) of a connection's channel binding.
const BindingLabel = "EXPORTER-dweb tunnel binding"

// BindingSize is the length of a channel binding in bytes.
const BindingSize = 32

// ConnBinding returns c's channel binding: BindingSize bytes of TLS 1.3
// exporter output under BindingLabel. Both ends of one connection get the
// same bytes, and nobody else can compute them (they derive from the
// connection's TLS secrets), so a tunnel handshake that mixes them in (the
// tunnel's DialConfig.Binding) succeeds only between the two ends of c.
func ConnBinding(c *quic.Conn) ([]byte, error) {
	st := c.ConnectionState().TLS
	b, err := st.ExportKeyingMaterial(BindingLabel, nil, BindingSize)
	if err != nil {
		return nil, fmt.Errorf("transport: channel binding: %w", err)
	}
	return b, nil
}

type bindingKey struct{}

// StreamBinding returns the channel binding (ConnBinding) of the
// connection that carries the inbound stream whose Handler got ctx, or nil
// if ctx is not a handler's.
func StreamBinding(ctx context.Context) []byte {
	b, _ := ctx.Value(bindingKey{}).([]byte)
	return b
}

// OpenStreamBinding is OpenStream that also returns the channel binding
// (ConnBinding) of the connection that carries the stream.
func (e *Endpoint) OpenStreamBinding(ctx context.Context, id key.NodeID, addr netip.AddrPort, p Protocol) (*quic.Stream, []byte, error) {
	s, c, err := e.openStream(ctx, id, addr, p)
	if err != nil {
		return nil, nil, err
	}
	b, err := ConnBinding(c)
	if err != nil {
		s.CancelRead(CodeNoError)
		s.CancelWrite(CodeNoError)
		return nil, nil, fmt.Errorf("open %s stream to %s: %w", p, id, err)
	}
	return s, b, nil
}
