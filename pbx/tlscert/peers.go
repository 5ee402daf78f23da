package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
)

// Peer says how the certificate of one server the PBX connects to is
// checked.
type Peer struct {
	// Name is what the server is, for logs ("trunk provider").
	Name string
	// ServerName is sent in the TLS handshake (SNI, RFC 6066) when the
	// PBX dials the server itself (Dial); empty, or an IP address,
	// sends none.
	ServerName string
	// Hosts are the names the certificate may be issued for: the SIP
	// domain (RFC 5922 §4: the name the PBX was configured with, never
	// one DNS handed out on the way to the address).
	Hosts []string
	// Roots are the authorities that may sign it; nil: the system's.
	Roots *x509.CertPool
	// Insecure accepts any certificate, with a warning per connection.
	Insecure bool
}

// Peers holds the Peer of every server the PBX may connect to over TLS
// (the TLS trunks) and checks the certificate of every connection.
//
// A connection the PBX dials itself for one Peer (Dial) carries that
// Peer's ServerName and is checked by that Peer alone. A connection the
// SIP stack opens on its own (a request in a dialog whose connection
// was closed) is named by the IP address it dials only, which a
// certificate check cannot see (Go's TLS client keeps no server name
// for an address); such a certificate is accepted when it passes the
// check of at least one Peer: it chains to that Peer's roots and names
// one of its hosts. With no Peer at all, nothing is accepted; a Peer
// with Insecure set makes every such certificate acceptable, with a
// warning for each connection.
//
// Peers is safe for concurrent use.
type Peers struct {
	log *slog.Logger
	mu  sync.Mutex
	by  map[string]Peer
	id  *Identity
}

// NewPeers returns an empty table.
func NewPeers(log *slog.Logger) *Peers {
	if log == nil {
		log = slog.Default()
	}
	return &Peers{log: log, by: map[string]Peer{}}
}

// Set records the Peer called peer.Name, replacing one of that name.
func (p *Peers) Set(peer Peer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	peer.Hosts = slices.Clone(peer.Hosts)
	p.by[peer.Name] = peer
}

// SetIdentity sets the certificate presented to servers that ask for a
// client certificate (nil: none).
func (p *Peers) SetIdentity(id *Identity) {
	p.mu.Lock()
	p.id = id
	p.mu.Unlock()
}

func (p *Peers) all() []Peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Peer, 0, len(p.by))
	for _, peer := range p.by {
		out = append(out, peer)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Peer returns the Peer called name.
func (p *Peers) Peer(name string) (Peer, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	peer, ok := p.by[name]
	return peer, ok
}

// ClientConfig is the tls.Config for the PBX's outgoing TLS connections:
// at least TLS 1.2, the server's certificate checked by Verify, and the
// identity of SetIdentity, if any, presented to servers that ask for a
// client certificate.
func (p *Peers) ClientConfig() *tls.Config {
	c := &tls.Config{
		MinVersion: MinVersion,
		// The stack's own check would compare the certificate with the
		// IP address it dials; Verify does the check instead.
		InsecureSkipVerify: true,
		VerifyConnection:   p.Verify,
	}
	p.mu.Lock()
	id := p.id
	p.mu.Unlock()
	if id != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &id.Cert, nil }
	}
	return c
}

// Verify checks the certificate of a connection the SIP stack opened on
// its own (see Peers).
func (p *Peers) Verify(cs tls.ConnectionState) error {
	leaf, inter, err := chain(cs)
	if err != nil {
		return err
	}
	peers := p.all()
	var errs []error
	var insecure []string
	for _, peer := range peers {
		if peer.Insecure {
			insecure = append(insecure, peer.Name)
			continue
		}
		err := peer.check(leaf, inter)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if len(insecure) > 0 {
		p.log.Warn("TLS certificate NOT checked (tls_insecure): anyone on the path can read and change these calls",
			"insecure", strings.Join(insecure, ","), "subject", leaf.Subject.String(), "fingerprint", Fingerprint(leaf.Raw))
		return nil
	}
	if len(errs) == 0 {
		return fmt.Errorf("TLS certificate %q: no TLS server is configured", leaf.Subject.String())
	}
	return fmt.Errorf("TLS certificate %q is no configured server's: %w", leaf.Subject.String(), errors.Join(errs...))
}

// chain is the server's certificate and the intermediates it sent.
func chain(cs tls.ConnectionState) (leaf *x509.Certificate, inter *x509.CertPool, err error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, nil, errors.New("the TLS server sent no certificate")
	}
	inter = x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	return cs.PeerCertificates[0], inter, nil
}

// check verifies leaf against the peer's roots and names.
func (peer Peer) check(leaf *x509.Certificate, inter *x509.CertPool) error {
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: peer.Roots, Intermediates: inter}); err != nil {
		return fmt.Errorf("%s: %w", peer.Name, err)
	}
	for _, h := range peer.Hosts {
		if leaf.VerifyHostname(h) == nil {
			return nil
		}
	}
	return fmt.Errorf("%s: the certificate names none of %s", peer.Name, strings.Join(peer.Hosts, ", "))
}

// LoadCA reads a PEM file of certificate authorities.
func LoadCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("the CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}
