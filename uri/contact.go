package uri

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
)

// ContactScheme is the scheme of contact codes, written without the colon.
const ContactScheme = "dweb-contact"

// ContactVersion is the contact code format this package writes and reads.
const ContactVersion = 1

// contactContext is signed, with the two public keys, by a contact's
// ed25519 key: it binds the X25519 key to it.
const contactContext = "dweb contact v1\x00"

// contactBytes is the payload of a contact code: ed25519 public key (32),
// X25519 public key (32), ed25519 signature (64).
const contactBytes = 32 + 32 + ed25519.SignatureSize

// MaxContactLen is the longest input ParseContact accepts, in bytes,
// before trimming: a contact code is 186 characters.
const MaxContactLen = 256

// ErrContact is wrapped by every error ParseContact returns.
var ErrContact = errors.New("not a valid contact code")

// Contact is the public half of a device's member key (docs/trust.md): the
// ed25519 key that will sign its membership and repo values, and the
// X25519 key that group keys are sealed to, bound by a signature of the
// first over both. A person shows it (`dweb contact`, text or QR code) to
// an admin who invites them; it holds nothing secret.
//
// Its text form is
//
//	dweb-contact:1:<base64url, no padding, of ed25519 (32) || X25519 (32) || signature (64)>
//
// where the signature is ed25519 over "dweb contact v1\x00" || ed25519 ||
// X25519 (RFC 8032).
type Contact struct {
	Sign ed25519.PublicKey // 32 bytes
	Box  [32]byte          // X25519 public key (RFC 7748)
	Sig  []byte            // 64 bytes
}

// NewContact signs box with priv and returns the contact.
func NewContact(priv ed25519.PrivateKey, box [32]byte) Contact {
	pub := priv.Public().(ed25519.PublicKey)
	return Contact{Sign: pub, Box: box, Sig: ed25519.Sign(priv, contactSigned(pub, box))}
}

func contactSigned(pub ed25519.PublicKey, box [32]byte) []byte {
	msg := make([]byte, 0, len(contactContext)+64)
	msg = append(msg, contactContext...)
	msg = append(msg, pub...)
	return append(msg, box[:]...)
}

// Verify checks the key sizes and the signature binding Box to Sign.
func (c Contact) Verify() error {
	if len(c.Sign) != ed25519.PublicKeySize || len(c.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: key of %d bytes, signature of %d", ErrContact, len(c.Sign), len(c.Sig))
	}
	if !ed25519.Verify(c.Sign, contactSigned(c.Sign, c.Box), c.Sig) {
		return fmt.Errorf("%w: the signature does not bind the X25519 key to the signing key", ErrContact)
	}
	return nil
}

// String is the contact code.
func (c Contact) String() string {
	b := make([]byte, 0, contactBytes)
	b = append(b, c.Sign...)
	b = append(b, c.Box[:]...)
	b = append(b, c.Sig...)
	return fmt.Sprintf("%s:%d:%s", ContactScheme, ContactVersion, b64.EncodeToString(b))
}

// ParseContact reads a contact code, as String writes it (surrounding
// spaces and line breaks ignored, the scheme compared case-insensitively),
// and verifies its signature. Errors wrap ErrContact and say what is wrong:
// the length, the scheme (an invite is named as such), the version, the
// encoding, the signature.
func ParseContact(s string) (Contact, error) {
	if len(s) > MaxContactLen {
		return Contact{}, fmt.Errorf("%w: longer than %d bytes (%d)", ErrContact, MaxContactLen, len(s))
	}
	s = strings.Trim(s, " \t\r\n")
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(scheme, ContactScheme) {
		if strings.EqualFold(scheme, Scheme) {
			return Contact{}, fmt.Errorf("%w: this is a group invite (%s:), not a contact code (%s:)", ErrContact, Scheme, ContactScheme)
		}
		return Contact{}, fmt.Errorf("%w: want %s:%d:...", ErrContact, ContactScheme, ContactVersion)
	}
	version, payload, ok := strings.Cut(rest, ":")
	if !ok {
		return Contact{}, fmt.Errorf("%w: no version: want %s:%d:...", ErrContact, ContactScheme, ContactVersion)
	}
	if version != fmt.Sprint(ContactVersion) {
		return Contact{}, fmt.Errorf("%w: version %q (this build reads version %d)", ErrContact, clip(version), ContactVersion)
	}
	b, err := b64.DecodeString(payload)
	if err != nil || len(b) != contactBytes {
		return Contact{}, fmt.Errorf("%w: want %d bytes in base64url without padding", ErrContact, contactBytes)
	}
	c := Contact{Sign: ed25519.PublicKey(b[:32]), Sig: b[64:]}
	copy(c.Box[:], b[32:64])
	if err := c.Verify(); err != nil {
		return Contact{}, err
	}
	return c, nil
}
