// Package uri builds and parses dweb's invite URIs: the "save+dweb:" links a
// group member shares (as text or QR code) so that a new member or a backup
// server can join the group.
//
// An invite looks like
//
//	save+dweb:?v=1&dht=<record key>&enc=<secret>&pk=<owner public key>&sk=<owner seed>&bs=<nodeID@host:port>
//
// with every key in the URL-safe base64 text form of internal/key (43
// characters, no padding). The parameter names dht, enc, pk and sk are those
// of the Save app's Rust backend (OpenArchive save-dweb-backend, Group::get_url);
// v and bs are dweb's. The optional name parameter is the group's name as the
// Save Android app appends it to make its "join code" (see Invite.JoinCode).
// docs/uri.md is the full specification, with the differences from Save's
// own links.
package uri

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/dwebkit/dweb/internal/key"
)

// Scheme is the URI scheme of invites, written without the colon.
const Scheme = "save+dweb"

// Version is the invite format version this package writes and the highest
// it reads.
const Version = 1

// Limits enforced by ParseInvite.
const (
	// MaxURILen is the longest input accepted, in bytes, before any
	// trimming. Any invite ParseInvite accepts has a String, and a
	// JoinCode with any name it accepts, no longer than this.
	MaxURILen = 4352
	// MaxBootstrap is the most bs entries one invite may carry.
	MaxBootstrap = 16
	// MaxBootstrapLen is the longest bs entry, in bytes after
	// percent-decoding.
	MaxBootstrapLen = 200
	// MaxNameLen is the longest name parameter, in bytes of UTF-8 after
	// percent-decoding: group.MaxNameLen, so any group name fits.
	MaxNameLen = 255
)

// Parameter names.
const (
	paramVersion   = "v"
	paramGroup     = "dht"
	paramSecret    = "enc"
	paramPublic    = "pk"
	paramSeed      = "sk"
	paramBootstrap = "bs"
	paramName      = "name"
)

var b64 = base64.RawURLEncoding

// Invite is what a new member needs to join a group.
//
// Its String is the invite URI and contains the group secret and the owner's
// private key: share it only with people meant to join, and never log it
// (Invite implements slog.LogValuer and fmt.GoStringer with redacted forms).
type Invite struct {
	Version   int           // v: format version; 0 means Version when writing
	Group     key.RecordKey // dht: the group's record key
	Secret    key.Secret    // enc: the group secret
	Owner     key.Keypair   // pk + sk: the group owner's keypair; sk is the 32-byte ed25519 seed
	Bootstrap []string      // bs (repeatable, <= MaxBootstrap): hints "nodeID@host:port"
	Name      string        // name (optional): the group's name from a join code; String leaves it out, JoinCode writes it
}

// String returns the invite URI in canonical form:
//
//	save+dweb:?v=1&dht=...&enc=...&pk=...&sk=...&bs=...&bs=...
//
// Parameters come in that order; bs entries in slice order. Name is never
// written (JoinCode appends it). pk and sk are
// left out when Owner holds no 64-byte ed25519 private key. String never
// fails and never validates: use Validate (or ParseInvite) for that.
// Characters outside [A-Za-z0-9-._~:@[]] are percent-encoded; valid values
// contain none.
func (i Invite) String() string {
	v := i.Version
	if v == 0 {
		v = Version
	}
	var b strings.Builder
	b.Grow(256 + len(i.Bootstrap)*64)
	b.WriteString(Scheme)
	b.WriteString(":?v=")
	b.WriteString(strconv.Itoa(v))
	add := func(name, value string) {
		b.WriteByte('&')
		b.WriteString(name)
		b.WriteByte('=')
		writeEscaped(&b, value)
	}
	add(paramGroup, i.Group.String())
	add(paramSecret, i.Secret.Text())
	if len(i.Owner.Private) == ed25519.PrivateKeySize {
		add(paramPublic, key.NodeIDFromPublicKey(i.Owner.Public()).String())
		add(paramSeed, b64.EncodeToString(i.Owner.Seed()))
	}
	for _, bs := range i.Bootstrap {
		add(paramBootstrap, bs)
	}
	return b.String()
}

// Validate reports whether ParseInvite accepts i.String(), returning the same
// *ParamError it would. Use it before sharing an invite built by hand.
func (i Invite) Validate() error {
	_, err := ParseInvite(i.String())
	return err
}

// LogValue keeps secrets out of logs: it shows the version, the group key,
// the bootstrap hints and the name only.
func (i Invite) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int("v", i.Version),
		slog.String("group", i.Group.String()),
		slog.Any("bootstrap", i.Bootstrap),
		slog.String("name", i.Name),
	)
}

// GoString hides the secret and the owner's private key from %#v.
func (i Invite) GoString() string {
	return fmt.Sprintf("uri.Invite{Version:%d, Group:%s, Secret:%s, Owner:%s, Bootstrap:%q, Name:%q}",
		i.Version, i.Group, i.Secret, i.Owner, i.Bootstrap, i.Name)
}

// ParseInvite parses and validates an invite URI. The rules (docs/uri.md):
//
//   - at most MaxURILen bytes; surrounding spaces, tabs and line breaks are
//     trimmed; any other byte outside printable ASCII is refused;
//   - the scheme is "save+dweb" in any letter case, followed by "?" or by
//     "//?" (empty authority); no path, no fragment;
//   - parameters are name=value pairs joined by "&", percent-decoded;
//   - v is required and read first: a positive decimal integer without
//     leading zeros; above Version it fails with "unsupported version", so a
//     newer invite is refused for its version and not for its new parameters;
//   - dht, enc, pk, sk are required, each exactly once, each a 32-byte key
//     in URL-safe base64 without padding, not all zeros; sk is the ed25519
//     seed and the public key derived from it must equal pk;
//   - bs is optional and repeatable (<= MaxBootstrap distinct entries, each
//     <= MaxBootstrapLen bytes): "nodeID@host:port", see Invite.Bootstrap;
//   - name is optional, at most once: "+" and percent-escapes decode as in
//     application/x-www-form-urlencoded, and the result must be valid UTF-8
//     of at most MaxNameLen bytes without control characters; it may be
//     empty. It goes to Invite.Name;
//   - any other parameter is an error, so a typo never silently drops data.
//
// Every error is a *ParamError naming the parameter; a wrong or missing scheme
// also matches ErrScheme and a malformed key key.ErrBadKey under errors.Is.
func ParseInvite(s string) (Invite, error) {
	inv, perr := parseInvite(s)
	if perr != nil {
		return Invite{}, perr
	}
	return inv, nil
}

func parseInvite(s string) (Invite, *ParamError) {
	if len(s) > MaxURILen {
		return Invite{}, paramErr("", fmt.Sprintf("longer than %d bytes (%d)", MaxURILen, len(s)))
	}
	s = strings.Trim(s, " \t\r\n")
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return Invite{}, paramErr("", fmt.Sprintf("byte 0x%02x at offset %d: only printable ASCII is allowed", c, i))
		}
	}
	query, perr := stripScheme(s)
	if perr != nil {
		return Invite{}, perr
	}
	params, order, perr := splitQuery(query)
	if perr != nil {
		return Invite{}, perr
	}

	var inv Invite
	if inv.Version, perr = parseVersion(params[paramVersion]); perr != nil {
		return Invite{}, perr
	}
	for _, name := range order {
		if !singleValued(name) && name != paramBootstrap {
			return Invite{}, paramErr(clip(name), "unknown parameter")
		}
	}

	group, perr := parseKey(paramGroup, params[paramGroup], key.ParseRecordKey)
	if perr != nil {
		return Invite{}, perr
	}
	secret, perr := parseKey(paramSecret, params[paramSecret], key.ParseSecret)
	if perr != nil {
		return Invite{}, perr
	}
	pk, perr := parseKey(paramPublic, params[paramPublic], key.ParseNodeID)
	if perr != nil {
		return Invite{}, perr
	}
	seed, perr := parseKey(paramSeed, params[paramSeed], key.ParseSecret)
	if perr != nil {
		return Invite{}, perr
	}
	owner, err := key.KeypairFromSeed(seed[:])
	if err != nil { // unreachable: seed is 32 bytes
		return Invite{}, paramErrf(paramSeed, err, "not an ed25519 seed")
	}
	if owner.ID() != pk {
		return Invite{}, paramErr(paramSeed, "does not match pk (the public key derived from sk differs)")
	}
	inv.Group, inv.Secret, inv.Owner = group, secret, owner

	bs := params[paramBootstrap]
	if len(bs) > MaxBootstrap {
		return Invite{}, paramErr(paramBootstrap, fmt.Sprintf("%d entries, at most %d allowed", len(bs), MaxBootstrap))
	}
	for n, entry := range bs {
		if reason, cause := checkBootstrap(entry); reason != "" {
			return Invite{}, paramErrf(paramBootstrap, cause, "entry %d %q: %s", n+1, clip(entry), reason)
		}
		for m := 0; m < n; m++ {
			if bs[m] == entry {
				return Invite{}, paramErr(paramBootstrap, fmt.Sprintf("entry %d duplicates entry %d", n+1, m+1))
			}
		}
	}
	inv.Bootstrap = bs

	if names := params[paramName]; len(names) > 0 {
		if reason := checkName(names[0]); reason != "" {
			return Invite{}, paramErr(paramName, reason)
		}
		inv.Name = names[0]
	}
	return inv, nil
}

// stripScheme checks "save+dweb:" and the "?" or "//?" after it and returns
// the query (without "?").
func stripScheme(s string) (string, *ParamError) {
	colon := strings.IndexByte(s, ':')
	if colon < 0 {
		return "", paramErrf("", ErrScheme, "missing scheme: want %q", Scheme+":?...")
	}
	if !strings.EqualFold(s[:colon], Scheme) {
		return "", paramErrf("", ErrScheme, "scheme %q: want %q", clip(s[:colon]), Scheme)
	}
	rest := s[colon+1:]
	if strings.HasPrefix(rest, "//") {
		rest = rest[2:]
	}
	if !strings.HasPrefix(rest, "?") {
		if strings.HasPrefix(rest, ":") {
			return "", paramErr("", `"save+dweb::" is the Veilid-based Save app's link form, not a dweb invite; want "save+dweb:?v=..."`)
		}
		return "", paramErr("", `want "save+dweb:?" followed by parameters (no authority or path)`)
	}
	rest = rest[1:]
	if strings.IndexByte(rest, '#') >= 0 {
		return "", paramErr("", "fragment (#...) not allowed")
	}
	return rest, nil
}

func singleValued(name string) bool {
	switch name {
	case paramVersion, paramGroup, paramSecret, paramPublic, paramSeed, paramName:
		return true
	}
	return false
}

// splitQuery percent-decodes name=value pairs. It refuses empty pairs,
// pairs without "=", and a second occurrence of a single-valued parameter.
// order lists distinct names in first-seen order.
func splitQuery(q string) (params map[string][]string, order []string, perr *ParamError) {
	params = make(map[string][]string)
	if q == "" {
		return params, nil, nil
	}
	for part := range strings.SplitSeq(q, "&") {
		if part == "" {
			return nil, nil, paramErr("", `empty parameter ("&&", or "&" at either end)`)
		}
		rawName, rawValue, hasEq := strings.Cut(part, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return nil, nil, paramErr("", fmt.Sprintf("bad percent-encoding in parameter name %q", clip(rawName)))
		}
		if name == "" {
			return nil, nil, paramErr("", "parameter with an empty name")
		}
		if !hasEq {
			return nil, nil, paramErr(clip(name), "no value (want name=value)")
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, nil, paramErr(clip(name), "bad percent-encoding")
		}
		prev, seen := params[name]
		if seen && singleValued(name) {
			return nil, nil, paramErr(name, "duplicated")
		}
		if !seen {
			order = append(order, name)
		}
		params[name] = append(prev, value)
	}
	return params, order, nil
}

func parseVersion(vals []string) (int, *ParamError) {
	if len(vals) == 0 {
		return 0, paramErr(paramVersion, "missing")
	}
	v := vals[0]
	if v == "" || v[0] == '0' || strings.Trim(v, "0123456789") != "" {
		return 0, paramErr(paramVersion, fmt.Sprintf("%q is not a positive decimal integer", clip(v)))
	}
	n, err := strconv.Atoi(v)
	if (err != nil && errors.Is(err, strconv.ErrRange)) || n > Version {
		return 0, paramErr(paramVersion, fmt.Sprintf("unsupported version %s (this build reads up to %d)", clip(v), Version))
	}
	if err != nil { // unreachable: digits only
		return 0, paramErr(paramVersion, "not a decimal integer")
	}
	return n, nil
}

// parseKey parses the single value of a required 32-byte key parameter.
func parseKey[K ~[key.Size]byte](name string, vals []string, parse func(string) (K, error)) (K, *ParamError) {
	var zero K
	if len(vals) == 0 {
		return zero, paramErr(name, "missing")
	}
	k, err := parse(vals[0])
	if err != nil {
		return zero, paramErrf(name, err, "not a 32-byte key in base64url (want %d characters of A-Z a-z 0-9 - _, got %d)", b64.EncodedLen(key.Size), len(vals[0]))
	}
	if k == zero {
		return zero, paramErr(name, "all zeros (unset key)")
	}
	return k, nil
}

// writeEscaped writes s, percent-encoding every byte outside
// [A-Za-z0-9-._~:@[]] so that the value cannot break the query apart.
func writeEscaped(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~:@[]", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
}

// clip shortens text quoted in error messages to keep them on one short line.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
