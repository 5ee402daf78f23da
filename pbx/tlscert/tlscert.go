// Package tlscert provides the TLS identity of the PBX's SIP listeners and
// the TLS settings of its connections: the certificate an administrator
// configured (PEM files), or a self-signed ECDSA P-256 certificate derived
// from a secret of the box, so that it stays the same across restarts and,
// on a twin pair whose boxes share the secret, across a failover; phones
// that pinned its fingerprint notice nothing. It also checks the
// certificates of TLS trunks (providers) against the system's roots, a
// configured CA file, or nothing when the administrator opted in.
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

// MinVersion is the lowest TLS version spoken, in both directions.
const MinVersion = tls.VersionTLS12

// Identity is the certificate the PBX presents.
type Identity struct {
	Cert tls.Certificate
	// Fingerprint is the SHA-256 of the leaf certificate, as phones show
	// and pin it: "AB:CD:…" (32 bytes in hex with colons).
	Fingerprint string
	// SelfSigned: derived by the box, not configured.
	SelfSigned bool
	// Names are the DNS names and addresses of the leaf (its SAN).
	Names []string
	// NotAfter is the end of the leaf's validity.
	NotAfter time.Time
}

// Fingerprint returns the SHA-256 fingerprint of a DER certificate in the
// form phones show: upper-case hex pairs joined by colons.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return strings.ReplaceAll(fmt.Sprintf("% X", sum), " ", ":")
}

// Load reads a certificate chain and its private key from PEM files.
func Load(certFile, keyFile string) (*Identity, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return newIdentity(c, false)
}

func newIdentity(c tls.Certificate, self bool) (*Identity, error) {
	if len(c.Certificate) == 0 {
		return nil, errors.New("the TLS certificate file holds no certificate")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing the TLS certificate: %w", err)
	}
	c.Leaf = leaf
	id := &Identity{Cert: c, Fingerprint: Fingerprint(leaf.Raw), SelfSigned: self, NotAfter: leaf.NotAfter}
	id.Names = append(id.Names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		id.Names = append(id.Names, ip.String())
	}
	return id, nil
}

// Derived certificates are valid from notBefore to the end of time
// (RFC 5280 §4.1.2.5: 99991231235959Z means no expiry): a pinned
// certificate that expired would cut the phones off with nobody to renew
// it.
var (
	notBefore = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter  = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// MinSeed is the shortest secret Derive accepts.
const MinSeed = 16

// Derive makes the box's self-signed certificate from seed, a secret of at
// least MinSeed bytes (the box's digest nonce key: random and kept in the
// data folder on a standalone box, derived from the pairing key on a twin
// pair). The same seed and names give the same certificate, byte for
// byte: the ECDSA P-256 key comes from the seed through HKDF, and the
// signature is RFC 6979's deterministic one. names are DNS names or IP
// addresses for the SAN; their order, duplicates, case and brackets
// around an address do not matter (canonicalNames).
func Derive(seed []byte, names []string) (*Identity, error) {
	if len(seed) < MinSeed {
		return nil, fmt.Errorf("deriving the TLS key: the secret has %d bytes, want at least %d", len(seed), MinSeed)
	}
	key, err := deriveKey(seed)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "twinpbx", Organization: []string{"twinpbx"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	names = canonicalNames(names)
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if len(tmpl.DNSNames) > 0 {
		tmpl.Subject.CommonName = tmpl.DNSNames[0]
	}
	// The serial: positive, at most 20 octets, from what the certificate
	// says, so that a certificate for other names has another serial.
	pub, err := key.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encoding the TLS public key: %w", err)
	}
	h := sha256.New()
	h.Write(pub)
	for _, n := range names {
		h.Write([]byte(n + "\x00"))
	}
	sum := h.Sum(nil)
	sum[0] &= 0x7f
	tmpl.SerialNumber = new(big.Int).SetBytes(sum[:16])
	// A nil random source makes crypto/ecdsa sign deterministically.
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating the self-signed TLS certificate: %w", err)
	}
	return newIdentity(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, true)
}

// canonicalNames returns names as Derive writes them, sorted and without
// duplicates: IP addresses in their usual form (no brackets, IPv6 in
// lower case), DNS names in lower case, empty ones dropped. Both boxes of
// a pair thus derive one certificate however each config spells a name.
func canonicalNames(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.Trim(n, "[]")
		if ip := net.ParseIP(n); ip != nil {
			n = ip.String()
		} else {
			n = strings.ToLower(n)
		}
		if n != "" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// deriveKey turns seed into a P-256 private key. A derived scalar outside
// the curve's order (chance about 2^-32) moves to the next counter.
func deriveKey(seed []byte) (*ecdsa.PrivateKey, error) {
	for i := range 16 {
		d, err := hkdf.Key(sha256.New, seed, nil, fmt.Sprintf("twinpbx sip tls key v1 %d", i), 32)
		if err != nil {
			return nil, fmt.Errorf("deriving the TLS key: %w", err)
		}
		if k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("deriving the TLS key: no valid scalar")
}

// ServerConfig is the tls.Config of a SIP listener presenting id. Phones
// are not asked for certificates: they authenticate with digest.
func ServerConfig(id *Identity) *tls.Config {
	return &tls.Config{
		MinVersion:   MinVersion,
		Certificates: []tls.Certificate{id.Cert},
	}
}
