package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
)

// SIPTLS names the certificate the tls listeners of sip.listen present.
// Absent (or both fields empty): the box presents a self-signed ECDSA
// P-256 certificate derived from its own secret (on a twin pair from the
// pairing key, so both boxes present the same one); see docs/CALLS.md.
type SIPTLS struct {
	// Cert is a PEM file with the certificate, then any intermediates.
	Cert string `yaml:"cert,omitempty"`
	// Key is a PEM file with the certificate's private key.
	Key string `yaml:"key,omitempty"`
}

// HasTLS reports whether a sip.listen entry uses TLS.
func (c *Config) HasTLS() bool {
	for _, e := range c.SIP.Listen {
		if l, err := ParseListen(e); err == nil && l.Transport == "tls" {
			return true
		}
	}
	return false
}

// CertNames are the names a derived certificate of the box carries: the
// advertised host, the listeners' addresses, the node's name and, on a
// twin pair, the twin's name, the VIP and both LAN addresses, so that both
// twins derive the same certificate and a phone that pinned it follows a
// failover. Unspecified addresses (0.0.0.0, ::) are left out.
func (c *Config) CertNames() []string {
	var names []string
	add := func(h string) {
		if a, err := netip.ParseAddr(h); (err == nil && a.IsUnspecified()) || h == "" {
			return
		}
		names = append(names, h)
	}
	add(c.SIP.Advertise)
	for _, e := range c.SIP.Listen {
		if l, err := ParseListen(e); err == nil {
			add(l.Host)
		}
	}
	add(c.Node.Name)
	if cl := c.Cluster; cl != nil {
		add(cl.Peer)
		if p, err := netip.ParsePrefix(cl.VIP); err == nil {
			add(p.Addr().String())
		}
		for _, a := range []string{cl.LAN.Local, cl.LAN.Peer} {
			add(hostOnly(a))
		}
	}
	return names
}

// hostOnly is the host of "host:port", the address of "addr/prefix", or s.
func hostOnly(s string) string {
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().String()
	}
	return s
}

// validateTLS checks sip.tls and the tls settings of the trunks. Only the
// form is checked: the files are read (and their problems reported) when
// the PBX starts, since a config may be validated on another machine.
func (c *Config) validateTLS(ps *problems) {
	if t := c.SIP.TLS; t != nil {
		switch {
		case t.Cert == "" && t.Key != "":
			ps.add("sip.tls.cert", "missing: a key without its certificate")
		case t.Cert != "" && t.Key == "":
			ps.add("sip.tls.key", "missing: a certificate without its key")
		}
		for _, f := range []struct{ field, v string }{{"sip.tls.cert", t.Cert}, {"sip.tls.key", t.Key}} {
			if err := checkPath(f.v); err != nil {
				ps.add(f.field, "%v", err)
			}
		}
	}
	for i, t := range c.Trunks {
		f := fmt.Sprintf("trunks[%d]", i)
		tls := strings.EqualFold(t.Transport, "tls")
		if t.TLSCA != "" {
			if !tls {
				ps.add(f+".tls_ca", "only for transport: tls")
			} else if err := checkPath(t.TLSCA); err != nil {
				ps.add(f+".tls_ca", "%v", err)
			}
		}
		if t.TLSInsecure && !tls {
			ps.add(f+".tls_insecure", "only for transport: tls")
		}
		if t.TLSInsecure && t.TLSCA != "" {
			ps.add(f+".tls_insecure", "either tls_ca or tls_insecure, not both")
		}
		if tls && t.Type == LineISDN {
			ps.add(f+".transport", "the ISDN gateway speaks SIP over udp on loopback, not tls")
		}
	}
}

// checkPath accepts an empty path or an absolute one without control
// characters.
func checkPath(p string) error {
	switch {
	case p == "":
		return nil
	case strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("%q holds control characters", p)
	case !filepath.IsAbs(p):
		return fmt.Errorf("%q: want an absolute path", p)
	}
	return nil
}
