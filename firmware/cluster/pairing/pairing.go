// Package pairing turns the pairing key the two boxes of a twin pair share
// into the secrets their links use: the key that seals heartbeats and the
// TLS identity of the replication link. Both boxes derive the same values
// from the same key, so nothing but the key has to be exchanged, and a box
// configured with another key is refused with a clear error.
//
// The package also makes and checks pairing codes: short random keys a
// person can read off one box's console and type into the other's (see
// NewPairingKey and Normalize).
package pairing

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
	"unicode/utf8"
)

// HKDF labels ("info") of the derived secrets. Changing one changes every
// key derived with it and so breaks pairing with older firmware.
const (
	heartbeatLabel   = "twinpbx heartbeat v1"
	replicationLabel = "twinpbx replication v1"
)

// ReplicationProtocol is the ALPN name of the replication link. Both sides
// offer exactly this one, so a twin speaking another version of the link
// fails the handshake instead of exchanging data it would misread.
const ReplicationProtocol = "twinpbx-replication/1"

// MinKeyLen is the shortest pairing key accepted, in bytes, matching the
// config schema's rule.
const MinKeyLen = 16

// Errors a failed replication handshake is mapped to by Handshake. Test
// with errors.Is.
var (
	ErrWrongKey        = errors.New("twin uses a different pairing key")
	ErrProtocolVersion = errors.New("twin speaks another replication protocol version")
)

// Keys are the secrets derived from one pairing key. They are immutable
// and safe for concurrent use.
type Keys struct {
	// Heartbeat is the ChaCha20-Poly1305 key that seals heartbeats.
	Heartbeat [32]byte

	public ed25519.PublicKey
	cert   tls.Certificate
}

// Derive computes the Keys of a pairing key. A key that reads as a pairing
// code (see Normalize) is first put in its canonical form, so boxes given
// the same code in different case or grouping still pair; any other key is
// used byte for byte.
func Derive(pairingKey string) (*Keys, error) {
	if n, err := Normalize(pairingKey); err == nil {
		pairingKey = n
	}
	if len(pairingKey) < MinKeyLen {
		return nil, fmt.Errorf("deriving pairing keys: the pairing key has %d bytes, at least %d are needed", len(pairingKey), MinKeyLen)
	}
	if !utf8.ValidString(pairingKey) {
		return nil, errors.New("deriving pairing keys: the pairing key is not valid UTF-8")
	}
	secret := []byte(pairingKey)
	var k Keys
	hb, err := hkdf.Key(sha256.New, secret, nil, heartbeatLabel, len(k.Heartbeat))
	if err != nil {
		return nil, fmt.Errorf("deriving the heartbeat key: %w", err)
	}
	copy(k.Heartbeat[:], hb)
	seed, err := hkdf.Key(sha256.New, secret, nil, replicationLabel, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("deriving the replication key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	k.public = priv.Public().(ed25519.PublicKey)
	der, err := selfSigned(priv)
	if err != nil {
		return nil, fmt.Errorf("making the replication certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("reading back the replication certificate: %w", err)
	}
	k.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}
	return &k, nil
}

// selfSigned makes the replication certificate. Every field is fixed and
// Ed25519 signatures are deterministic, so both boxes make the same bytes.
// Nobody checks its validity period or name: peers compare public keys
// only (see TLSConfig).
func selfSigned(priv ed25519.PrivateKey) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "twinpbx replication"},
		NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"twinpbx-replication"},
	}
	// The reader is unused for Ed25519; pass one that fails loudly should
	// that ever change, rather than silently making the bytes random.
	return x509.CreateCertificate(failingReader{}, tmpl, tmpl, priv.Public(), priv)
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) {
	return 0, errors.New("certificate creation asked for randomness; it must be deterministic")
}

// Certificate returns the DER bytes of the replication certificate.
func (k *Keys) Certificate() []byte { return k.cert.Certificate[0] }

// Fingerprint is a short hex digest of the replication public key, for
// status pages and logs: two boxes with the same key show the same value.
// It reveals nothing usable about the key.
func (k *Keys) Fingerprint() string {
	sum := sha256.Sum256(k.public)
	return hex.EncodeToString(sum[:6])
}

// TLSConfig returns a configuration for one end of the replication link:
// server for the side that accepts the connection. It allows TLS 1.3 only
// and requires both ends to present a certificate.
//
// Both boxes hold the same derived certificate, so each accepts the other
// if and only if the peer's certificate carries exactly the derived public
// key; the handshake proves the peer holds the matching private key, which
// only a box with the same pairing key can have. That check is done in
// VerifyConnection. InsecureSkipVerify only turns off chain building
// against system roots and host name matching, which mean nothing here:
// there is no CA, and the twin's address is in our own config. Skipping
// them is safe because the public key comparison is stricter than any CA
// check could be.
func (k *Keys) TLSConfig(server bool) *tls.Config {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		MaxVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{k.cert},
		NextProtos:         []string{ReplicationProtocol},
		InsecureSkipVerify: true,
		VerifyConnection:   k.verify,
	}
	if server {
		cfg.ClientAuth = tls.RequireAnyClientCert
	} else {
		cfg.ServerName = "twinpbx-replication"
	}
	return cfg
}

// verify accepts a peer whose only certificate carries our public key and
// that agreed on our replication protocol.
func (k *Keys) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) != 1 {
		return fmt.Errorf("%w: it presented %d certificates, not its pairing certificate", ErrWrongKey, len(cs.PeerCertificates))
	}
	pub, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(k.public) {
		return ErrWrongKey
	}
	if cs.NegotiatedProtocol != ReplicationProtocol {
		return fmt.Errorf("%w: it offered %q", ErrProtocolVersion, cs.NegotiatedProtocol)
	}
	return nil
}

// Handshake runs the TLS handshake of a replication connection made with
// TLSConfig and explains a failure with Explain.
//
// In TLS 1.3 the client finishes its handshake before the server has
// checked the client's certificate, so a client can also learn that it was
// refused from its first read: pass read errors through Explain too.
func Handshake(ctx context.Context, c *tls.Conn) error {
	if err := c.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("replication handshake: %w", Explain(err))
	}
	return nil
}

// Explain says what a TLS error of the replication link means for the
// pair: the result wraps ErrWrongKey when either side refused the other's
// certificate (the side that refuses first sends an alert, and the other
// only sees that alert), and ErrProtocolVersion when the two ends speak
// different versions of the replication protocol. Other errors (the
// network, a cancelled context) are returned unchanged.
func Explain(err error) error {
	if err == nil || errors.Is(err, ErrWrongKey) || errors.Is(err, ErrProtocolVersion) {
		return err
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		// The alert type is unexported; its text is the stable
		// description from RFC 8446.
		switch op.Err.Error() {
		case "tls: bad certificate", "tls: certificate required", "tls: unsupported certificate":
			return fmt.Errorf("%w (it refused our certificate: %w)", ErrWrongKey, err)
		case "tls: no application protocol":
			return fmt.Errorf("%w (%w)", ErrProtocolVersion, err)
		}
	}
	// A server that shares no protocol with the client says so in its
	// own error only; the text is the one crypto/tls has always used.
	if strings.Contains(err.Error(), "unsupported application protocols") {
		return fmt.Errorf("%w (%w)", ErrProtocolVersion, err)
	}
	if strings.Contains(err.Error(), "client didn't provide a certificate") {
		return fmt.Errorf("%w (it presented no certificate: %w)", ErrWrongKey, err)
	}
	return err
}
