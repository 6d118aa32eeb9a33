// Package transport is dweb's network layer: one QUIC endpoint per node that
// proves node identities in TLS, pools one connection per peer, and carries
// length-prefixed CBOR messages for every protocol above it (DHT, blobs,
// tunnels, relays).
//
// # Wire
//
// Every dweb node runs one QUIC endpoint (RFC 9000, quic-go) on one UDP
// socket, used both to accept and to dial.
//
//   - TLS 1.3 only, single ALPN "dweb/1" ([ALPN]).
//   - Each side presents one self-signed X.509 certificate whose subject
//     public key is the node's ed25519 identity key (see tlsid.go). There is
//     no CA: a peer is its key. The certificate's validity dates are not
//     checked (phones have wrong clocks); the TLS 1.3 CertificateVerify proves
//     possession of the key. The listener requires a client certificate, so
//     both ends learn the other's [key.NodeID] from the handshake. A dialer
//     names the node ID it means to reach and aborts inside the handshake,
//     before any application data, if the certificate carries another key
//     ([ErrWrongPeer]). Session tickets are disabled, so every handshake
//     presents certificates.
//   - One request per bidirectional stream. The opener writes one
//     [Protocol] byte first (1 DHT, 2 blobs, 3 tunnel, 4 relay, 5 admin).
//     The acceptor must receive it within [Options.ProtocolTimeout]; an
//     unknown byte makes it reset both directions of the stream with
//     [CodeUnknownProtocol]. The protocol's first request or handshake must
//     then be through within [Options.FirstFrameTimeout] of the stream's
//     accept (the handler says so with [Opened]), or the stream is cut off
//     and reset with [CodeProtocolTimeout]. Unidirectional streams are not
//     used and not allowed.
//   - After the protocol byte, protocols exchange frames: a 4-byte big-endian
//     unsigned length, then that many bytes ([WriteFrame], [ReadFrame]). The
//     reader checks the length against its limit before it allocates; each
//     protocol documents its own limits.
//   - Messages are CBOR (RFC 8949) in frames ([WriteMsg], [ReadMsg]),
//     encoded with Core Deterministic Encoding (RFC 8949 §4.2.1) so equal
//     values give equal bytes, and decoded with duplicate map keys rejected,
//     indefinite lengths rejected and bounds on nesting
//     ([MaxCBORNestedLevels]), array length ([MaxCBORArrayElements]) and map
//     size ([MaxCBORMapPairs]).
//
// # Connections
//
// An [Endpoint] keeps at most one pooled connection per peer node ID, whoever
// dialed it; [Endpoint.OpenStream] reuses it for every protocol and dials only
// when none is alive, with concurrent callers sharing one dial. Streams are
// accepted on outbound connections too, so a peer can answer back over the
// connection we opened. Keepalives hold idle connections open
// ([Options.KeepAlive]); a dead connection leaves the pool and the next
// OpenStream dials again. When two nodes dial each other at the same moment
// both connections stay up and are served; only the first stays pooled.
// Each connection admits at most [Options.MaxIncomingStreams] concurrent
// streams from the peer (QUIC flow control enforces it), which bounds the
// handler goroutines per connection.
//
// # Limits
//
// The node's resource manager ([Options.Resources], package rcmgr) admits
// every inbound connection by its address at its first packet, before any
// crypto runs, and by node ID after the handshake; every inbound stream,
// and its opening until [Opened], per peer, IP, /24 or /48 and in total.
// A refused connection attempt gets CONNECTION_REFUSED, a refused stream is
// reset with [CodeRefused]; [Refused] tells a caller it met a limit. The
// layers above count their own kinds in the same manager
// ([Endpoint.Resources]). docs/limits.md lists every limit.
package transport
