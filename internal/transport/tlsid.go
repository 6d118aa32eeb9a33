package transport

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/quic-go/quic-go"
)

// ErrWrongPeer is returned (wrapped) by OpenStream when the node at the
// dialed address proves a different node ID than the one asked for.
var ErrWrongPeer = errors.New("transport: peer has a different node ID")

// ErrBadCertificate is returned (wrapped) when a peer's certificate is not a
// single self-signed ed25519 certificate.
var ErrBadCertificate = errors.New("transport: bad peer certificate")

// certValidity is how long the self-signed certificate claims to be valid.
// Peers do not check the dates (see verifyPeerCert); a long span only keeps
// generic TLS tooling from complaining. A new certificate is made at every
// Listen, so nothing persists it.
const certValidity = 20 * 365 * 24 * time.Hour

// selfSignedCert makes a self-signed X.509 certificate for the ed25519
// identity kp. The subject common name is the node ID's text form, for
// humans reading packet captures; verification ignores it.
func selfSignedCert(kp key.Keypair) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: kp.ID().String()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, kp.Public(), kp.Private)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse own certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: kp.Private, Leaf: leaf}, nil
}

// verifyPeerCert checks that rawCerts is exactly one certificate, that its
// key is ed25519 and that it is signed by that same key, and returns the
// node ID the key names. Dates, names and extensions are not checked: the
// key is the identity, and TLS 1.3 CertificateVerify has already proved the
// peer holds it when crypto/tls calls VerifyPeerCertificate.
func verifyPeerCert(rawCerts [][]byte) (key.NodeID, error) {
	if len(rawCerts) != 1 {
		return key.NodeID{}, fmt.Errorf("%w: %d certificates, want 1", ErrBadCertificate, len(rawCerts))
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return key.NodeID{}, fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	return nodeIDFromCert(cert)
}

func nodeIDFromCert(cert *x509.Certificate) (key.NodeID, error) {
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || cert.PublicKeyAlgorithm != x509.Ed25519 {
		return key.NodeID{}, fmt.Errorf("%w: key is %v, want Ed25519", ErrBadCertificate, cert.PublicKeyAlgorithm)
	}
	if cert.SignatureAlgorithm != x509.PureEd25519 {
		return key.NodeID{}, fmt.Errorf("%w: signature algorithm %v, want Ed25519", ErrBadCertificate, cert.SignatureAlgorithm)
	}
	if !ed25519.Verify(pub, cert.RawTBSCertificate, cert.Signature) {
		return key.NodeID{}, fmt.Errorf("%w: not self-signed by its own key", ErrBadCertificate)
	}
	return key.NodeIDFromPublicKey(pub), nil
}

// connPeerID returns the node ID proved in c's handshake.
func connPeerID(c *quic.Conn) (key.NodeID, error) {
	certs := c.ConnectionState().TLS.PeerCertificates
	if len(certs) != 1 {
		return key.NodeID{}, fmt.Errorf("%w: %d certificates after handshake", ErrBadCertificate, len(certs))
	}
	return nodeIDFromCert(certs[0])
}

// serverTLS is the listener's TLS configuration: it requires a client
// certificate and accepts any self-signed ed25519 one.
func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequireAnyClientCert,
		NextProtos:             []string{ALPN},
		SessionTicketsDisabled: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			_, err := verifyPeerCert(rawCerts)
			return err
		},
	}
}

// clientTLS is the dialer's TLS configuration for reaching node want.
// InsecureSkipVerify only turns off CA chain and host name checks, which
// mean nothing here; VerifyPeerCertificate still runs inside the handshake
// and fails it unless the server proves want's key. It sets wrong when the
// failure is a mismatched node ID, so the dial error can wrap ErrWrongPeer
// whatever quic-go makes of the TLS alert.
func clientTLS(cert tls.Certificate, want key.NodeID, wrong *atomic.Bool) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		NextProtos:         []string{ALPN},
		InsecureSkipVerify: true,
		ServerName:         "dweb",
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			got, err := verifyPeerCert(rawCerts)
			if err != nil {
				return err
			}
			if got != want {
				wrong.Store(true)
				return fmt.Errorf("%w: want %s, got %s", ErrWrongPeer, want, got)
			}
			return nil
		},
	}
}
