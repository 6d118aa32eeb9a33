// Package uri builds and parses dweb's invite URIs: the "save+dweb:" links a
// group member shares (as text or QR code) so that a new member or a backup
// server can join the group.
//
// An invite of format version 1 carries the group's secrets:
//
//	save+dweb:?v=1&dht=<record key>&enc=<secret>&pk=<owner public key>&sk=<owner seed>&bs=<nodeID@host:port>
//
// An invite of format version 2 names a membership-checked group
// (docs/trust.md) and carries no secret: the joiner's member key (a sealed
// invite) or the seed of an invite key listed in the group's membership
// list (a bearer invite), and the list version and hash the invite was made
// at:
//
//	save+dweb:?v=2&dht=<record key>&for=<member public key>&lv=<list version>&lh=<list hash>&bs=<nodeID@host:port>
//	save+dweb:?v=2&dht=<record key>&ik=<invite key seed>&lv=<list version>&lh=<list hash>&bs=<nodeID@host:port>
//
// Every key and hash is in the URL-safe base64 text form of internal/key (43
// characters, no padding). The parameter names dht, enc, pk and sk are those
// of the Save app's Rust backend (OpenArchive save-dweb-backend, Group::get_url);
// the others are dweb's. The optional name parameter is the group's name as the
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

// Version is the highest invite format version this package reads. It
// writes versions 1 and 2: see Invite.String for which.
const Version = 2

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

	// Version 2.
	paramFor         = "for"
	paramInviteKey   = "ik"
	paramListVersion = "lv"
	paramListHash    = "lh"
)

var b64 = base64.RawURLEncoding

// Invite is what a new member needs to join a group.
//
// A version 1 invite holds Secret and Owner; its String contains the group
// secret and the owner's private key. A version 2 invite holds no secret of
// the group: it is sealed (For: only the holder of that member key can use
// it) or bearer (InviteKey: whoever holds the URI can use it, as many times
// as the membership list allows), never both, and names the membership
// list version it was made at (ListVersion, ListHash). A bearer invite's
// String contains the invite key's seed. Share an invite only with people
// meant to join, and never log it (Invite implements slog.LogValuer and
// fmt.GoStringer with redacted forms).
type Invite struct {
	Version   int           // v: format version, 1 or 2; String says what 0 writes
	Group     key.RecordKey // dht: the group's record key
	Secret    key.Secret    // enc (v1): the group secret
	Owner     key.Keypair   // pk + sk (v1): the group owner's keypair; sk is the 32-byte ed25519 seed
	Bootstrap []string      // bs (repeatable, <= MaxBootstrap): hints "nodeID@host:port"
	Name      string        // name (optional): the group's name from a join code; String leaves it out, JoinCode writes it

	// For (for, v2 sealed) is the joiner's member signing key, the Sign of
	// its uri.Contact: 32 bytes, the only key that can use the invite. It is
	// not secret.
	For ed25519.PublicKey
	// InviteKey (ik, v2 bearer) is the invite key: a one-time or N-use key
	// whose public key the membership list lists with its uses and expiry.
	// The joiner proves it holds the URI by signing with it. ik is its
	// 32-byte ed25519 seed, a secret.
	InviteKey key.Keypair
	// ListVersion (lv, v2) is the version of the group's membership list
	// the invite was made at.
	ListVersion uint64
	// ListHash (lh, v2) is BLAKE3-256 of the encoding of membership list
	// version ListVersion: the joiner's trust anchor, so that a list
	// planted on a DHT holder is not taken for the group's.
	ListHash [32]byte
}

// Sealed reports whether String writes a version 2 sealed invite (For set).
// A parsed version 2 invite is either Sealed or Bearer.
func (i Invite) Sealed() bool {
	_, format := i.written()
	return format == 2 && len(i.For) != 0
}

// Bearer reports whether String writes a version 2 bearer invite
// (InviteKey set).
func (i Invite) Bearer() bool {
	_, format := i.written()
	return format == 2 && len(i.InviteKey.Private) != 0
}

// written returns the version String writes as v= and the format (1 or 2)
// whose parameters it writes: see String.
func (i Invite) written() (v, format int) {
	v2 := len(i.For) != 0 || len(i.InviteKey.Private) != 0
	v1 := !i.Secret.IsZero() || len(i.Owner.Private) != 0
	switch {
	case i.Version == 1, i.Version == 2 && v1 && !v2:
		return 1, 1
	case i.Version == 2:
		return 2, 2
	}
	format = 1
	if v2 {
		format = 2
	}
	if i.Version == 0 {
		return format, format
	}
	return i.Version, format
}

// String returns the invite URI in canonical form, of format 1 or 2:
//
//	save+dweb:?v=1&dht=...&enc=...&pk=...&sk=...&bs=...&bs=...
//	save+dweb:?v=2&dht=...&for=...&ik=...&lv=...&lh=...&bs=...&bs=...
//
// Parameters come in that order; bs entries in slice order. Name is never
// written (JoinCode appends it).
//
// The format follows Version, and the fields when Version does not say:
//
//   - Version 1 writes format 1;
//   - Version 2 writes format 2, but for an invite that holds Secret or
//     Owner and neither For nor InviteKey, which writes format 1: that is
//     how callers written when Version was 1 build their invites
//     (Version: uri.Version with Secret and Owner), and a format 2 invite
//     never carries those fields;
//   - Version 0 writes format 2 when For or InviteKey is set, 1 otherwise;
//   - any other Version is written as given, with the parameters of the
//     format Version 0 would pick (Validate then fails on v).
//
// Format 1 writes no For, InviteKey, ListVersion or ListHash, and leaves pk
// and sk out when Owner holds no 64-byte ed25519 private key. Format 2
// writes no Secret or Owner; for is left out when For is empty, ik when
// InviteKey holds no 64-byte private key; lv and lh are always written.
// String never fails and never validates: use Validate (or ParseInvite) for
// that. Characters outside [A-Za-z0-9-._~:@[]] are percent-encoded; valid
// values contain none.
func (i Invite) String() string {
	v, format := i.written()
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
	if format == 1 {
		add(paramSecret, i.Secret.Text())
		if len(i.Owner.Private) == ed25519.PrivateKeySize {
			add(paramPublic, key.NodeIDFromPublicKey(i.Owner.Public()).String())
			add(paramSeed, b64.EncodeToString(i.Owner.Seed()))
		}
	} else {
		if len(i.For) != 0 {
			add(paramFor, b64.EncodeToString(i.For))
		}
		if len(i.InviteKey.Private) == ed25519.PrivateKeySize {
			add(paramInviteKey, b64.EncodeToString(i.InviteKey.Seed()))
		}
		add(paramListVersion, strconv.FormatUint(i.ListVersion, 10))
		add(paramListHash, b64.EncodeToString(i.ListHash[:]))
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

// LogValue keeps secrets out of logs: it shows the version String writes,
// the group key, the bootstrap hints and the name; for a format 2 invite
// also the member key it is sealed for, the invite key's public key (never
// its seed), the list version and the list hash.
func (i Invite) LogValue() slog.Value {
	v, format := i.written()
	attrs := []slog.Attr{
		slog.Int("v", v),
		slog.String("group", i.Group.String()),
		slog.Any("bootstrap", i.Bootstrap),
		slog.String("name", i.Name),
	}
	if format == 2 {
		if len(i.For) != 0 {
			attrs = append(attrs, slog.String("for", b64.EncodeToString(i.For)))
		}
		if len(i.InviteKey.Private) == ed25519.PrivateKeySize {
			attrs = append(attrs, slog.String("invite_key", i.InviteKey.ID().String()))
		}
		attrs = append(attrs,
			slog.Uint64("list_version", i.ListVersion),
			slog.String("list_hash", b64.EncodeToString(i.ListHash[:])))
	}
	return slog.GroupValue(attrs...)
}

// GoString hides the secret, the owner's private key and the invite key's
// seed from %#v (key.Secret and key.Keypair redact themselves).
func (i Invite) GoString() string {
	return fmt.Sprintf("uri.Invite{Version:%d, Group:%s, Secret:%s, Owner:%s, Bootstrap:%q, Name:%q, For:%s, InviteKey:%s, ListVersion:%d, ListHash:%s}",
		i.Version, i.Group, i.Secret, keypairText(i.Owner), i.Bootstrap, i.Name,
		b64.EncodeToString(i.For), keypairText(i.InviteKey), i.ListVersion, b64.EncodeToString(i.ListHash[:]))
}

// keypairText is k.String() (the public key only), or "Keypair()" for a
// keypair without a 64-byte private key, whose String would panic.
func keypairText(k key.Keypair) string {
	if len(k.Private) != ed25519.PrivateKeySize {
		return "Keypair()"
	}
	return k.String()
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
//   - every key and hash below is exactly once, 32 bytes in URL-safe base64
//     without padding, not all zeros;
//   - version 1: dht, enc, pk, sk are required; sk is the ed25519 seed and
//     the public key derived from it must equal pk; for, ik, lv and lh are
//     unknown parameters;
//   - version 2: dht is required; exactly one of for (a sealed invite: the
//     joiner's ed25519 member key, not checked to be a curve point) and ik
//     (a bearer invite: the invite key's ed25519 seed); lv is required, a
//     decimal uint64 without sign or leading zeros ("0" is valid); lh is
//     required; enc, pk and sk are refused: version 2 invites carry no
//     secret;
//   - bs is optional and repeatable (<= MaxBootstrap distinct entries, each
//     <= MaxBootstrapLen bytes): "nodeID@host:port", see Invite.Bootstrap;
//   - name is optional, at most once: "+" and percent-escapes decode as in
//     application/x-www-form-urlencoded, and the result must be valid UTF-8
//     of at most MaxNameLen bytes without control characters; it may be
//     empty. It goes to Invite.Name;
//   - any other parameter is an error, so a typo never silently drops data.
//
// The result's Version is the v read (1 or 2).
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
	if perr := checkNames(inv.Version, order); perr != nil {
		return Invite{}, perr
	}

	if inv.Group, perr = parseKey(paramGroup, params[paramGroup], key.ParseRecordKey); perr != nil {
		return Invite{}, perr
	}
	if inv.Version == 1 {
		perr = parseV1(params, &inv)
	} else {
		perr = parseV2(params, &inv)
	}
	if perr != nil {
		return Invite{}, perr
	}

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

// checkNames refuses a parameter that version v does not have.
func checkNames(v int, order []string) *ParamError {
	for _, name := range order {
		switch name {
		case paramVersion, paramGroup, paramBootstrap, paramName:
		case paramSecret, paramPublic, paramSeed:
			if v != 1 {
				return paramErr(name, "not allowed: version 2 invites carry no secret (no group secret, no owner key)")
			}
		case paramFor, paramInviteKey, paramListVersion, paramListHash:
			if v == 1 {
				return paramErr(name, "unknown parameter in a version 1 invite (a version 2 parameter)")
			}
		default:
			return paramErr(clip(name), "unknown parameter")
		}
	}
	return nil
}

// parseV1 reads enc, pk and sk into inv.Secret and inv.Owner.
func parseV1(params map[string][]string, inv *Invite) *ParamError {
	secret, perr := parseKey(paramSecret, params[paramSecret], key.ParseSecret)
	if perr != nil {
		return perr
	}
	pk, perr := parseKey(paramPublic, params[paramPublic], key.ParseNodeID)
	if perr != nil {
		return perr
	}
	seed, perr := parseKey(paramSeed, params[paramSeed], key.ParseSecret)
	if perr != nil {
		return perr
	}
	owner, err := key.KeypairFromSeed(seed[:])
	if err != nil { // unreachable: seed is 32 bytes
		return paramErrf(paramSeed, err, "not an ed25519 seed")
	}
	if owner.ID() != pk {
		return paramErr(paramSeed, "does not match pk (the public key derived from sk differs)")
	}
	inv.Secret, inv.Owner = secret, owner
	return nil
}

// parseV2 reads for or ik, lv and lh into inv.
func parseV2(params map[string][]string, inv *Invite) *ParamError {
	forVals, ikVals := params[paramFor], params[paramInviteKey]
	switch {
	case len(forVals) == 0 && len(ikVals) == 0:
		return paramErr(paramFor, "missing: a version 2 invite needs for (sealed to a member key) or ik (bearer invite key)")
	case len(forVals) > 0 && len(ikVals) > 0:
		return paramErr(paramInviteKey, "with for: a version 2 invite is sealed (for) or bearer (ik), not both")
	case len(forVals) > 0:
		id, perr := parseKey(paramFor, forVals, key.ParseNodeID)
		if perr != nil {
			return perr
		}
		inv.For = id.PublicKey()
	default:
		seed, perr := parseKey(paramInviteKey, ikVals, key.ParseSecret)
		if perr != nil {
			return perr
		}
		kp, err := key.KeypairFromSeed(seed[:])
		if err != nil { // unreachable: seed is 32 bytes
			return paramErrf(paramInviteKey, err, "not an ed25519 seed")
		}
		inv.InviteKey = kp
	}
	var perr *ParamError
	if inv.ListVersion, perr = parseUint64(paramListVersion, params[paramListVersion]); perr != nil {
		return perr
	}
	inv.ListHash, perr = parseKey(paramListHash, params[paramListHash], parseHash)
	return perr
}

// parseHash reads a 32-byte hash in the text form of keys.
func parseHash(s string) ([key.Size]byte, error) { return key.ParseSecret(s) }

// parseUint64 parses the single value of a required decimal uint64
// parameter: digits only, no leading zeros, "0" allowed.
func parseUint64(name string, vals []string) (uint64, *ParamError) {
	if len(vals) == 0 {
		return 0, paramErr(name, "missing")
	}
	v := vals[0]
	if v == "" || len(v) > 1 && v[0] == '0' || strings.Trim(v, "0123456789") != "" {
		return 0, paramErr(name, fmt.Sprintf("%q is not a decimal integer without sign or leading zeros", clip(v)))
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, paramErr(name, fmt.Sprintf("%s is above 2^64-1", clip(v)))
	}
	return n, nil
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
	case paramVersion, paramGroup, paramSecret, paramPublic, paramSeed, paramName,
		paramFor, paramInviteKey, paramListVersion, paramListHash:
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
