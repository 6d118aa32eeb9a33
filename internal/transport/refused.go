package transport

import (
	"errors"

	"github.com/quic-go/quic-go"
)

// Refused reports whether err (or an error it wraps) is a refusal by the
// remote node's resource manager: a stream it reset with CodeRefused, a
// connection it closed for its connection limit, or a connection attempt
// it refused (CONNECTION_REFUSED) before the handshake. The node is alive
// but at one of its limits: callers should back off, not count it dead.
func Refused(err error) bool {
	if se, ok := errors.AsType[*quic.StreamError](err); ok && se.Remote {
		return se.ErrorCode == CodeRefused
	}
	if ae, ok := errors.AsType[*quic.ApplicationError](err); ok && ae.Remote {
		return ae.ErrorCode == connCodeRefused
	}
	if te, ok := errors.AsType[*quic.TransportError](err); ok && te.Remote {
		return te.ErrorCode == quic.ConnectionRefused
	}
	return false
}
