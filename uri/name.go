package uri

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// NameSeparator is what the Save Android app puts between an invite and the
// group's name in a join code. The app cuts a join code at its first
// occurrence to get the invite back.
const NameSeparator = "&" + paramName + "="

// JoinCode returns the Save Android app's "join code" for this invite and a
// group name: the invite (String, so without any Name it holds) followed by
// "&name=" and the name encoded as java.net.URLEncoder.encode(name, "UTF-8")
// does. It is exactly what the app's SnowbirdJoinCode.build(i.String(), name)
// returns, what the app shows as a QR code, and what ParseInvite reads back
// with Invite.Name == name (when name is valid UTF-8 of at most MaxNameLen
// bytes without control characters; JoinCode itself never fails and never
// validates).
func (i Invite) JoinCode(name string) string {
	var b strings.Builder
	base := i.String()
	b.Grow(len(base) + len(NameSeparator) + 3*len(name))
	b.WriteString(base)
	b.WriteString(NameSeparator)
	writeFormEncoded(&b, name)
	return b.String()
}

// writeFormEncoded writes s as java.net.URLEncoder.encode(s, "UTF-8") does
// (application/x-www-form-urlencoded): A-Z a-z 0-9 . - * _ stay, a space
// becomes "+", and every other byte becomes "%XX" in upper-case hex.
func writeFormEncoded(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '*' || c == '_':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
}

// checkName validates a decoded name parameter and returns a reason phrase
// when it is invalid ("" when valid). The empty name is valid: the app
// writes "&name=" for a group without a name.
func checkName(s string) string {
	if len(s) > MaxNameLen {
		return fmt.Sprintf("%d bytes, at most %d allowed", len(s), MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("control character %U at byte %d", r, i)
		}
	}
	return ""
}
