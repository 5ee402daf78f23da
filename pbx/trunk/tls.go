package trunk

import (
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/tlscert"
)

// tlsPeer is how the certificate of a trunk's servers is checked: issued
// for the SIP domain (RFC 5922) or a server name DNS gave for it, by an
// authority of the system or of tls_ca; or not at all with
// tls_insecure. Every sip trunk has one, since a trunk without a forced
// transport is sent over TLS when its NAPTR records say so.
func tlsPeer(l config.TrunkLine, domain string) (*tlscert.Peer, error) {
	p := &tlscert.Peer{Name: "trunk " + l.Name, Hosts: []string{domain}, Insecure: l.TLSInsecure}
	if l.TLSCA != "" {
		roots, err := tlscert.LoadCA(l.TLSCA)
		if err != nil {
			return nil, err
		}
		p.Roots = roots
	}
	return p, nil
}
