package tlscert

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
)

// Dial opens a TLS connection to addr for the Peer called name: the
// handshake names the Peer's ServerName (SNI) and the certificate is
// checked by that Peer alone, against its roots and host names. The
// PBX's identity (SetIdentity) is presented if the server asks for a
// client certificate. The connection is not recorded anywhere.
func (p *Peers) Dial(ctx context.Context, name string, addr netip.AddrPort) (*tls.Conn, error) {
	peer, ok := p.Peer(name)
	if !ok {
		return nil, fmt.Errorf("TLS to %s: no TLS server called %q", addr, name)
	}
	conf := p.ClientConfig()
	if a, err := netip.ParseAddr(peer.ServerName); err != nil && peer.ServerName != "" {
		conf.ServerName = peer.ServerName
	} else if err == nil {
		conf.ServerName = a.String() // no SNI for an address (RFC 6066 §3)
	}
	conf.VerifyConnection = func(cs tls.ConnectionState) error { return p.verifyFor(peer, cs) }
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("TLS to %s (%s): %w", addr, peer.Name, err)
	}
	c := tls.Client(raw, conf)
	if err := c.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("TLS handshake with %s (%s): %w", addr, peer.Name, err)
	}
	return c, nil
}

// verifyFor checks the certificate of a connection made for peer.
func (p *Peers) verifyFor(peer Peer, cs tls.ConnectionState) error {
	leaf, inter, err := chain(cs)
	if err != nil {
		return err
	}
	if peer.Insecure {
		p.log.Warn("TLS certificate NOT checked (tls_insecure): anyone on the path can read and change these calls",
			"insecure", peer.Name, "subject", leaf.Subject.String(), "fingerprint", Fingerprint(leaf.Raw))
		return nil
	}
	if err := peer.check(leaf, inter); err != nil {
		return fmt.Errorf("TLS certificate %q: %w", leaf.Subject.String(), err)
	}
	return nil
}

// Check verifies the certificate of an open connection (cs) for the
// Peer called name, as Dial would: a connection opened for one server
// is only used for another after this.
func (p *Peers) Check(name string, cs tls.ConnectionState) error {
	peer, ok := p.Peer(name)
	if !ok {
		return fmt.Errorf("no TLS server called %q", name)
	}
	return p.verifyFor(peer, cs)
}
