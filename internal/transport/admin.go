package transport

// ProtoAdmin is the protocol byte of a backup server's remote
// administration streams (docs/backup.md, "Remote administration"): a Noise
// handshake keyed by the server's admin secret, then one request and one
// answer. Nodes that are not backup servers have no handler for it, and the
// endpoint resets such streams with CodeUnknownProtocol.
const ProtoAdmin Protocol = 5
