package uri

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/dwebkit/dweb/internal/key"
)

// checkBootstrap validates one bootstrap hint "nodeID@host:port" and returns
// a reason phrase when it is invalid ("" when valid). cause is set when the
// fault wraps another package's sentinel (key.ErrBadKey).
//
//   - nodeID: a key.NodeID in its text form, not all zeros;
//   - host: an IPv4 literal in dotted decimal ("192.0.2.7"), an IPv6 literal
//     in brackets without a zone ("[2001:db8::1]"), or a DNS name of
//     letters, digits and hyphens (labels 1..63 bytes, name <= 253 bytes,
//     no trailing dot, last label not all digits);
//   - port: decimal 1..65535 without sign or leading zeros.
func checkBootstrap(s string) (reason string, cause error) {
	if len(s) > MaxBootstrapLen {
		return fmt.Sprintf("entry longer than %d bytes", MaxBootstrapLen), nil
	}
	idText, hostport, ok := strings.Cut(s, "@")
	if !ok {
		return "want nodeID@host:port", nil
	}
	id, err := key.ParseNodeID(idText)
	if err != nil {
		return "node ID is not a 32-byte key in base64url", err
	}
	if id.IsZero() {
		return "node ID is all zeros", nil
	}
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 || strings.HasSuffix(hostport, "]") {
		return "want nodeID@host:port", nil
	}
	host, port := hostport[:i], hostport[i+1:]
	if r := checkPort(port); r != "" {
		return r, nil
	}
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return "unterminated IPv6 literal", nil
		}
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "host in brackets is not an IPv6 address without zone", nil
		}
		return "", nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !a.Is4() {
			return "IPv6 host must be in brackets", nil
		}
		return "", nil
	}
	return checkDNSName(host), nil
}

func checkPort(p string) string {
	if p == "" {
		return "missing port"
	}
	if len(p) > 5 || p[0] == '0' {
		return "port not in 1..65535"
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return "port is not a decimal number"
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > 65535 {
		return "port not in 1..65535"
	}
	return ""
}

func checkDNSName(h string) string {
	if h == "" {
		return "missing host"
	}
	if len(h) > 253 {
		return "host name longer than 253 bytes"
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "host is not an IP literal or DNS name (empty or over-long label)"
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "host is not an IP literal or DNS name (label starts or ends with '-')"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "host is not an IP literal or DNS name (bad character)"
			}
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return "host is not an IP literal or DNS name (looks like a malformed IPv4 address)"
	}
	return ""
}
