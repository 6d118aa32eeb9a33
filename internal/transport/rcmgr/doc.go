// Package rcmgr is dweb's resource manager: one place that counts what
// strangers make a node hold, and refuses what is over its limits, as
// libp2p's resource manager (go-libp2p p2p/host/resource-manager) does for
// libp2p hosts. Its design is ours; libp2p is the anchor.
//
// # Scopes and kinds
//
// Every count is kept in four scopes at once: per peer (node ID), per IP
// address, per address prefix (an IPv4 /24 or an IPv6 /48: one network,
// usually one operator; see Prefix) and in total (the system scope). A
// resource is admitted only if every scope has room, and refused with a
// *LimitError naming the narrowest scope that had none.
//
// The transport endpoint counts three kinds ([Limits]):
//
//   - conn: inbound QUIC connections, by address from their first packet
//     (before any crypto runs: quic-go's Transport.ConnContext), by peer
//     once the TLS handshake has proved the node ID;
//   - stream: inbound streams while their handler runs;
//   - handshake: work a stranger has started that has not proved or said
//     anything yet: a QUIC handshake in progress (address scopes only: the
//     peer is not known), and a stream in its opening (the protocol byte
//     and the protocol's first request or handshake, see
//     transport.Opened).
//
// Other layers count their own kinds through the same manager with
// [Manager.Quota] (counts that are taken and given back: the DHT's stored
// records, a relay's reservations) and [Manager.Rate] (token buckets: the
// DHT's request rate), so every refusal of the node is one metric
// ([Manager] is a prometheus.Collector):
//
//	dweb_rcmgr_refused_total{scope,kind}   resources refused, by the scope that had no room and the kind
//	dweb_rcmgr_in_use{kind}                resources held now, node-wide
//
// # Local addresses
//
// Loopback addresses count in no IP or prefix scope, and private and
// link-local ones (RFC 1918, RFC 4193, 169.254/16, fe80::/10) in no prefix
// scope: many nodes on one host, or one LAN's /24, are one operator's
// devices, not a Sybil attack. Limits.LocalAddrs counts them like any
// address (tests on loopback emulate many networks with 127.x.y.z).
//
// docs/limits.md lists every limit with its default and why.
package rcmgr
