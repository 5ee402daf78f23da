package config

import (
	"fmt"
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
