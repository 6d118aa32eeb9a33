package core

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/tunnel"
	"github.com/quic-go/quic-go"
	"github.com/zeebo/blake3"
)

// Remote administration of a backup server (docs/backup.md, "Remote
// administration"). A backup node keeps a 32-byte admin secret in its
// protected store and prints an admin URI on its first start; whoever holds
// the URI can ask the server, over the network, to join a group by invite,
// list its groups and leave a group. The request travels on a QUIC stream of
// protocol transport.ProtoAdmin to the node the URI names (the TLS handshake
// proves the node ID), inside a Noise tunnel handshake (internal/tunnel)
// whose pre-shared key derives from the admin secret and whose responder
// static key the URI pins, bound to the QUIC connection's TLS exporter. A
// client without the secret cannot finish the handshake; the server answers
// nothing else.

// AdminScheme is the scheme of admin URIs.
const AdminScheme = "dweb+admin"

// AdminVersion is the admin URI and wire version this code writes and the
// highest it reads.
const AdminVersion = 1

// BLAKE3 derive-key contexts of the admin secret's two uses: the key ID
// sent in the clear hello (so the secret itself never travels), and the
// Noise pre-shared key.
const (
	adminIDContext  = "dweb 2026 admin id"
	adminPSKContext = "dweb 2026 admin psk"
)

// Bounds of the admin protocol.
const (
	maxAdminAddrs    = 4
	maxAdminRequest  = 16 << 10 // bytes of one request frame
	maxAdminResponse = 1 << 20  // bytes of one answer frame
	// adminTimeout bounds one admin request, end to end, on both sides:
	// the client's whole exchange, and the server's work on a request and
	// the write of its answer. The server's handshake and the read of the
	// request are bounded sooner, by the endpoint's first-frame deadline
	// (transport.Options.FirstFrameTimeout, 10 s).
	adminTimeout = 30 * time.Second
	protAdminKey = "node/admin"
)

// Errors of remote administration; test with errors.Is.
var (
	// ErrAdminURI: the text is not a valid admin URI (wrapped with the
	// reason).
	ErrAdminURI = errors.New("bad admin URI")
	// ErrAdminDenied: the server refused the handshake: the URI's secret
	// or Noise key is not the server's (an old or forged URI).
	ErrAdminDenied = errors.New("admin access denied")
	// ErrNotAdmin: the node does not accept administration (not a backup
	// server, or an older version).
	ErrNotAdmin = errors.New("node does not accept remote administration")
)

// AdminURI is what a client needs to administer a backup server: the
// server's node ID and Noise static public key, its addresses, and the
// admin secret. Text form (String, ParseAdminURI):
//
//	dweb+admin:?v=1&node=NODEID&noise=KEY&key=SECRET&addr=HOST:PORT[&addr=...]
//
// node, noise and key are 32 bytes in URL-safe base64 without padding (the
// internal/key text form); addr is an IP host:port (IPv6 in brackets), 1 to
// 4 of them. Every other name, a repeated single-valued name, or a missing
// one is an error.
type AdminURI struct {
	Node  key.NodeID
	Noise [32]byte
	Key   key.Secret
	Addrs []netip.AddrPort
}

// String returns the canonical text form.
func (u AdminURI) String() string {
	var b strings.Builder
	b.WriteString(AdminScheme + ":?v=" + strconv.Itoa(AdminVersion))
	b.WriteString("&node=" + u.Node.String())
	b.WriteString("&noise=" + b64.EncodeToString(u.Noise[:]))
	b.WriteString("&key=" + u.Key.Text())
	for _, a := range u.Addrs {
		b.WriteString("&addr=" + url.QueryEscape(a.String()))
	}
	return b.String()
}

// LogValue keeps the secret out of logs.
func (u AdminURI) LogValue() slog.Value {
	return slog.GroupValue(slog.String("node", u.Node.String()), slog.Any("addrs", u.Addrs))
}

// ParseAdminURI parses an admin URI (see AdminURI). Surrounding white
// space is trimmed; the scheme's letter case is ignored. Errors wrap
// ErrAdminURI and name the parameter.
func ParseAdminURI(s string) (AdminURI, error) {
	var u AdminURI
	s = strings.TrimSpace(s)
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(scheme, AdminScheme) {
		return u, fmt.Errorf("%w: want %s:?...", ErrAdminURI, AdminScheme)
	}
	rest = strings.TrimPrefix(rest, "//")
	q, ok := strings.CutPrefix(rest, "?")
	if !ok || q == "" {
		return u, fmt.Errorf("%w: no parameters after %s:", ErrAdminURI, AdminScheme)
	}
	if strings.ContainsAny(q, "#; \t\r\n") {
		return u, fmt.Errorf("%w: unexpected character in the parameters", ErrAdminURI)
	}
	seen := map[string]bool{}
	for _, pair := range strings.Split(q, "&") {
		name, raw, ok := strings.Cut(pair, "=")
		if !ok {
			return u, fmt.Errorf("%w: parameter %q has no value", ErrAdminURI, clipText(pair))
		}
		v, err := url.QueryUnescape(raw)
		if err != nil {
			return u, fmt.Errorf("%w: %s: %v", ErrAdminURI, name, err)
		}
		if name != "addr" && seen[name] {
			return u, fmt.Errorf("%w: %s given twice", ErrAdminURI, name)
		}
		seen[name] = true
		switch name {
		case "v":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > AdminVersion || strconv.Itoa(n) != v {
				return u, fmt.Errorf("%w: v=%q: want 1..%d", ErrAdminURI, clipText(v), AdminVersion)
			}
		case "node":
			if u.Node, err = key.ParseNodeID(v); err != nil {
				return u, fmt.Errorf("%w: node: %v", ErrAdminURI, err)
			}
		case "noise":
			b, err := b64.DecodeString(v)
			if err != nil || len(b) != 32 {
				return u, fmt.Errorf("%w: noise: want 32 bytes of base64url", ErrAdminURI)
			}
			copy(u.Noise[:], b)
		case "key":
			if u.Key, err = key.ParseSecret(v); err != nil {
				return u, fmt.Errorf("%w: key: %v", ErrAdminURI, err)
			}
		case "addr":
			a, err := netip.ParseAddrPort(v)
			if err != nil || a.Port() == 0 {
				return u, fmt.Errorf("%w: addr %q: want an IP host:port", ErrAdminURI, clipText(v))
			}
			if len(u.Addrs) == maxAdminAddrs {
				return u, fmt.Errorf("%w: more than %d addr", ErrAdminURI, maxAdminAddrs)
			}
			u.Addrs = append(u.Addrs, a)
		default:
			return u, fmt.Errorf("%w: unknown parameter %q", ErrAdminURI, clipText(name))
		}
	}
	for _, name := range []string{"v", "node", "noise", "key", "addr"} {
		if !seen[name] {
			return u, fmt.Errorf("%w: %s is missing", ErrAdminURI, name)
		}
	}
	if u.Node.IsZero() || u.Noise == [32]byte{} || u.Key.IsZero() {
		return u, fmt.Errorf("%w: node, noise and key must not be all zeros", ErrAdminURI)
	}
	return u, nil
}

var b64 = base64.RawURLEncoding

func clipText(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func adminID(secret key.Secret) key.RecordKey {
	var out key.RecordKey
	blake3.DeriveKey(adminIDContext, secret[:], out[:])
	return out
}

func adminPSK(secret key.Secret) [32]byte {
	var out [32]byte
	blake3.DeriveKey(adminPSKContext, secret[:], out[:])
	return out
}

// loadAdminSecret reads the admin secret from the protected store,
// creating it if there is none; created says it was made now.
func (b *Backend) loadAdminSecret() (s key.Secret, created bool, err error) {
	raw, err := b.prot.Get(protAdminKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s = key.NewSecret()
		if err := b.prot.Put(protAdminKey, s[:]); err != nil {
			return s, false, fmt.Errorf("save admin secret: %w", err)
		}
		return s, true, nil
	case err != nil:
		return s, false, fmt.Errorf("load admin secret: %w", err)
	case len(raw) != len(s):
		return s, false, fmt.Errorf("load admin secret: %d bytes, want %d", len(raw), len(s))
	}
	copy(s[:], raw)
	return s, false, nil
}

// AdminURI returns this backup node's admin URI (its node ID, Noise key,
// addresses and admin secret) and whether the secret was created by this
// start (the daemon prints the URI then). Errors: ErrNotAdmin when the node
// is not in backup mode or not started.
func (b *Backend) AdminURI() (uri string, firstStart bool, err error) {
	b.bk.mu.Lock()
	on, secret, created := b.bk.on, b.bk.admin, b.bk.adminCreated
	b.bk.mu.Unlock()
	if !on || secret.IsZero() {
		return "", false, fmt.Errorf("%w: start it with backup mode on", ErrNotAdmin)
	}
	u := AdminURI{Node: b.NodeID(), Noise: b.static.Public, Key: secret}
	// Addresses other machines can reach first; loopback ones only for a
	// server that has nothing else (a test, or a client on the same host).
	var loop []netip.AddrPort
	for _, s := range b.advertiseAddrs() {
		a, err := netip.ParseAddrPort(s)
		switch {
		case err != nil:
		case a.Addr().IsLoopback():
			loop = append(loop, a)
		case len(u.Addrs) < maxAdminAddrs:
			u.Addrs = append(u.Addrs, a)
		}
	}
	if len(u.Addrs) == 0 {
		u.Addrs = loop[:min(len(loop), maxAdminAddrs)]
	}
	if len(u.Addrs) == 0 {
		return "", false, fmt.Errorf("%w: no address to advertise", ErrNotAdmin)
	}
	return u.String(), created, nil
}

// adminRequest is one request of the admin protocol (CBOR, one frame).
type adminRequest struct {
	Op     string          `cbor:"1,keyasint"`           // "join", "list", "remove" or "fetch"
	Invite string          `cbor:"2,keyasint,omitempty"` // join: the save+dweb: invite
	Group  string          `cbor:"3,keyasint,omitempty"` // remove, fetch: group key or unique name
	Hashes []blobsync.Hash `cbor:"4,keyasint,omitempty"` // fetch: 1..256 blobs of the group (drain.go)
}

// adminResponse is the answer: the groups concerned (join, remove: the one
// group; list: all), or an error with an HTTP-like code (400 bad input,
// 404 unknown group, 409 ambiguous name, 500 anything else).
type adminResponse struct {
	Groups []AdminGroup `cbor:"1,keyasint"`
	Error  string       `cbor:"2,keyasint,omitempty"`
	Code   int          `cbor:"3,keyasint,omitempty"`
}

// AdminGroup is a group of a backup server as its admin sees it: the
// group and the backup's state of it after its last pass.
type AdminGroup struct {
	ID        key.RecordKey `cbor:"1,keyasint" json:"key"`
	Name      string        `cbor:"2,keyasint" json:"name"`
	CreatedAt time.Time     `cbor:"3,keyasint" json:"created_at"`
	Files     int           `cbor:"4,keyasint" json:"files"`
	Held      int           `cbor:"5,keyasint" json:"held"`
	Missing   int           `cbor:"6,keyasint" json:"missing"`
	BytesHeld int64         `cbor:"7,keyasint" json:"bytes_held"`
	LastPass  time.Time     `cbor:"8,keyasint,omitzero" json:"last_pass,omitzero"`
}

// AdminError is an error the server answered (Code as adminResponse).
type AdminError struct {
	Code int
	Msg  string
}

func (e *AdminError) Error() string { return fmt.Sprintf("backup server: %s", e.Msg) }

// serveAdmin answers one admin stream: the Noise handshake (refused unless
// the client names our admin key ID and holds the secret), then one request.
func (b *Backend) serveAdmin(ctx context.Context, peer transport.Peer, s *quic.Stream) {
	b.bk.mu.Lock()
	secret := b.bk.admin
	b.bk.mu.Unlock()
	if secret.IsZero() {
		s.CancelRead(transport.CodeNoError)
		s.Close()
		return
	}
	id, psk := adminID(secret), adminPSK(secret)
	sess, err := tunnel.Accept(ctx, s, tunnel.AcceptConfig{
		Static: b.static, Binding: transport.StreamBinding(ctx), Logger: b.log,
		LookupPSK: func(g key.RecordKey) ([32]byte, bool) { return psk, g == id },
	})
	if err != nil {
		b.log.Info("admin: handshake refused", "peer", peer.ID, "addr", peer.Addr, "err", err)
		return
	}
	defer sess.Close()
	// The request is read under the stream's opening deadline, still set.
	req, err := readAdminRequest(sess)
	if err != nil {
		b.log.Debug("admin: read request", "peer", peer.ID, "err", err)
		return
	}
	transport.Opened(ctx)
	dctx, dcancel := context.WithTimeout(ctx, adminTimeout)
	defer dcancel()
	resp := b.adminDo(dctx, req)
	b.log.Info("admin request", "peer", peer.ID, "op", req.Op, "group", req.Group, "code", resp.Code, "err", resp.Error)
	s.SetWriteDeadline(time.Now().Add(adminTimeout))
	if err := transport.WriteMsg(sess, resp); err != nil {
		b.log.Debug("admin: write answer", "peer", peer.ID, "err", err)
	}
	if req.Op == "fetch" && resp.Code == 0 {
		sess.Close()
		b.adminFetch(req) // after the answer: the client confirms with have-queries
	}
}

func (b *Backend) adminDo(ctx context.Context, req adminRequest) adminResponse {
	fail := func(err error) adminResponse {
		code := 500
		var bad *BadInputError
		switch {
		case errors.As(err, &bad):
			code = 400
		case errors.Is(err, ErrUnknownGroup):
			code = 404
		case errors.Is(err, ErrAmbiguous):
			code = 409
		}
		return adminResponse{Error: err.Error(), Code: code}
	}
	if err := req.check(); err != nil {
		return fail(err)
	}
	switch req.Op {
	case "join":
		gi, err := b.JoinGroup(ctx, req.Invite)
		if err != nil {
			return fail(err)
		}
		b.kickBackup()
		return adminResponse{Groups: []AdminGroup{b.adminGroup(gi)}}
	case "list":
		out := []AdminGroup{}
		for _, gi := range b.Groups() {
			out = append(out, b.adminGroup(gi))
		}
		return adminResponse{Groups: out}
	case "remove":
		gi, err := b.ResolveGroup(req.Group)
		if err != nil {
			return fail(err)
		}
		if err := b.LeaveGroup(ctx, gi.ID); err != nil {
			return fail(err)
		}
		return adminResponse{Groups: []AdminGroup{b.adminGroup(gi)}}
	case "fetch":
		// The downloads start after the answer (serveAdmin, adminFetch).
		gi, err := b.ResolveGroup(req.Group)
		if err != nil {
			return fail(err)
		}
		return adminResponse{Groups: []AdminGroup{b.adminGroup(gi)}}
	}
	return fail(fmt.Errorf("admin operation %q passed the check", clipText(req.Op)))
}

// readAdminRequest reads the one request of an admin stream (after the
// handshake): a frame of at most maxAdminRequest bytes, refused before it
// is read if it declares more. Errors: as transport.ReadMsg. What the
// request asks for is checked by adminRequest.check.
func readAdminRequest(r io.Reader) (adminRequest, error) {
	var req adminRequest
	err := transport.ReadMsg(r, maxAdminRequest, &req)
	return req, err
}

// check reports whether the server can act on req: a known operation, and
// for "fetch" 1 to maxFetchHashes hashes. Errors are *BadInputError (the
// answer's code 400).
func (req adminRequest) check() error {
	switch req.Op {
	case "join", "list", "remove":
	case "fetch":
		if len(req.Hashes) == 0 || len(req.Hashes) > maxFetchHashes {
			return badInput(fmt.Errorf("fetch: %d hashes, want 1 to %d", len(req.Hashes), maxFetchHashes))
		}
	default:
		return badInput(fmt.Errorf("unknown admin operation %q", clipText(req.Op)))
	}
	return nil
}

// readAdminResponse reads the server's answer to an admin request: a frame
// of at most maxAdminResponse bytes, refused before it is read if it
// declares more, holding the groups or the server's error, returned as an
// *AdminError. Other errors: as transport.ReadMsg.
func readAdminResponse(r io.Reader) ([]AdminGroup, error) {
	var resp adminResponse
	if err := transport.ReadMsg(r, maxAdminResponse, &resp); err != nil {
		return nil, err
	}
	if resp.Error != "" || resp.Code != 0 {
		return nil, &AdminError{Code: resp.Code, Msg: resp.Error}
	}
	return resp.Groups, nil
}

func (b *Backend) adminGroup(gi GroupInfo) AdminGroup {
	ag := AdminGroup{ID: gi.ID, Name: gi.Name, CreatedAt: gi.CreatedAt}
	b.bk.mu.Lock()
	defer b.bk.mu.Unlock()
	if bg, ok := b.bk.groups[gi.ID]; ok {
		st := bg.status
		ag.Files, ag.Held, ag.Missing, ag.BytesHeld, ag.LastPass = st.Files, st.Held, st.Missing, st.BytesHeld, st.LastPass
	}
	return ag
}

// AdminClient administers one backup server through its admin URI. It
// runs its own QUIC endpoint with a throwaway identity (no store, no DHT),
// so it works without a local node. Safe for concurrent use; Close it.
type AdminClient struct {
	u      AdminURI
	ep     *transport.Endpoint
	static tunnel.StaticKey // the client's Noise key (throwaway)
	log    *slog.Logger
}

// DialAdmin parses adminURI and opens a client endpoint for it (UDP on
// 127.0.0.1 when every address of the URI is loopback, else on all
// interfaces). Nothing is sent before the first request. log may be nil.
// Errors: ErrAdminURI (wrapped); listen errors.
func DialAdmin(adminURI string, log *slog.Logger) (*AdminClient, error) {
	u, err := ParseAdminURI(adminURI)
	if err != nil {
		return nil, badInput(err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	listen := "127.0.0.1:0"
	for _, a := range u.Addrs {
		if !a.Addr().IsLoopback() {
			listen = ":0"
			break
		}
	}
	static, err := tunnel.NewStaticKey()
	if err != nil {
		return nil, fmt.Errorf("admin client: %w", err)
	}
	ep, err := transport.Listen(transport.Options{Identity: key.NewKeypair(), ListenAddr: listen, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("admin client: %w", err)
	}
	return &AdminClient{u: u, ep: ep, static: static, log: log}, nil
}

// Close closes the client's endpoint.
func (c *AdminClient) Close() error { return c.ep.Close() }

// Join asks the server to join the group of a save+dweb: invite URI, and
// returns it. Joining a group it is in returns that group.
func (c *AdminClient) Join(ctx context.Context, invite string) (AdminGroup, error) {
	gs, err := c.do(ctx, adminRequest{Op: "join", Invite: invite})
	if err != nil {
		return AdminGroup{}, err
	}
	return one(gs)
}

// List returns the server's groups, by name, with its backup state of each.
func (c *AdminClient) List(ctx context.Context) ([]AdminGroup, error) {
	return c.do(ctx, adminRequest{Op: "list"})
}

// Remove asks the server to leave a group (its key, or a name unique on
// the server) and returns it. The server keeps the blobs until garbage
// collection.
func (c *AdminClient) Remove(ctx context.Context, group string) (AdminGroup, error) {
	gs, err := c.do(ctx, adminRequest{Op: "remove", Group: group})
	if err != nil {
		return AdminGroup{}, err
	}
	return one(gs)
}

func one(gs []AdminGroup) (AdminGroup, error) {
	if len(gs) != 1 {
		return AdminGroup{}, fmt.Errorf("backup server answered %d groups, want 1", len(gs))
	}
	return gs[0], nil
}

// do sends one request to the server, trying its addresses in order, and
// reads the answer. Errors: ErrAdminDenied (handshake refused), ErrNotAdmin
// (no admin protocol there), *AdminError (the server's answer), network
// and context errors.
func (c *AdminClient) do(ctx context.Context, req adminRequest) ([]AdminGroup, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	var errs []error
	for _, addr := range c.u.Addrs {
		gs, err := c.doAt(ctx, addr, req)
		if err == nil {
			return gs, nil
		}
		var ae *AdminError
		if errors.As(err, &ae) || errors.Is(err, ErrAdminDenied) || errors.Is(err, ErrNotAdmin) || ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, fmt.Errorf("reach backup server %s: %w", c.u.Node, errors.Join(errs...))
}

func (c *AdminClient) doAt(ctx context.Context, addr netip.AddrPort, req adminRequest) ([]AdminGroup, error) {
	s, binding, err := c.ep.OpenStreamBinding(ctx, c.u.Node, addr, transport.ProtoAdmin)
	if err != nil {
		return nil, err
	}
	// ctx bounds the whole exchange, not only the handshake: a server that
	// stalls after it must not hold the client.
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { s.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	sess, err := tunnel.Dial(ctx, s, tunnel.DialConfig{
		Static: c.static, RemoteStatic: c.u.Noise, Group: adminID(c.u.Key), PSK: adminPSK(c.u.Key), Binding: binding,
	})
	if err != nil {
		var se *quic.StreamError
		if errors.As(err, &se) && se.Remote && se.ErrorCode == transport.CodeUnknownProtocol {
			return nil, fmt.Errorf("%w: %s", ErrNotAdmin, c.u.Node)
		}
		if errors.Is(err, tunnel.ErrHandshake) {
			return nil, fmt.Errorf("%w by %s: %v", ErrAdminDenied, c.u.Node, err)
		}
		return nil, err
	}
	defer sess.Close()
	if err := transport.WriteMsg(sess, req); err != nil {
		return nil, fmt.Errorf("send admin request: %w", err)
	}
	gs, err := readAdminResponse(sess)
	var ae *AdminError
	if err != nil && !errors.As(err, &ae) {
		return nil, fmt.Errorf("read admin answer: %w", err)
	}
	return gs, err
}
