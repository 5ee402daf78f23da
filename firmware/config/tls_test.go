package config

import (
	"slices"
	"strings"
	"testing"
)

func TestValidateTLS(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(c *Config)
		field string // "": valid
		msg   string
	}{
		{"listener without files", func(c *Config) { c.SIP.Listen = append(c.SIP.Listen, "tls:127.0.0.1:5061") }, "", ""},
		{"cert and key", func(c *Config) { c.SIP.TLS = &SIPTLS{Cert: "/etc/pbx/cert.pem", Key: "/etc/pbx/key.pem"} }, "", ""},
		{"empty section", func(c *Config) { c.SIP.TLS = &SIPTLS{} }, "", ""},
		{"key alone", func(c *Config) { c.SIP.TLS = &SIPTLS{Key: "/k.pem"} }, "sip.tls.cert", "missing"},
		{"cert alone", func(c *Config) { c.SIP.TLS = &SIPTLS{Cert: "/c.pem"} }, "sip.tls.key", "missing"},
		{"relative cert", func(c *Config) { c.SIP.TLS = &SIPTLS{Cert: "cert.pem", Key: "/k.pem"} }, "sip.tls.cert", "absolute"},
		{"control in key", func(c *Config) { c.SIP.TLS = &SIPTLS{Cert: "/c.pem", Key: "/k\n.pem"} }, "sip.tls.key", "control"},
		{"tls trunk", func(c *Config) { c.Trunks[0].Transport = "TLS" }, "", ""},
		{"tls trunk with CA", func(c *Config) { c.Trunks[0].Transport, c.Trunks[0].TLSCA = "tls", "/etc/ca.pem" }, "", ""},
		{"tls trunk insecure", func(c *Config) { c.Trunks[0].Transport, c.Trunks[0].TLSInsecure = "tls", true }, "", ""},
		{"CA on udp trunk", func(c *Config) { c.Trunks[0].TLSCA = "/etc/ca.pem" }, "trunks[0].tls_ca", "only for transport: tls"},
		{"insecure on udp trunk", func(c *Config) { c.Trunks[0].TLSInsecure = true }, "trunks[0].tls_insecure", "only for transport: tls"},
		{"both", func(c *Config) {
			c.Trunks[0].Transport, c.Trunks[0].TLSCA, c.Trunks[0].TLSInsecure = "tls", "/ca.pem", true
		}, "trunks[0].tls_insecure", "not both"},
		{"relative CA", func(c *Config) { c.Trunks[0].Transport, c.Trunks[0].TLSCA = "tls", "ca.pem" }, "trunks[0].tls_ca", "absolute"},
		{"isdn over tls", func(c *Config) { c.Trunks[1].Transport = "tls" }, "trunks[1].transport", "not tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := trunkBase()
			tc.edit(c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("Validate = %v, want a problem with %s", err, tc.field)
			}
			for _, p := range e.Problems {
				if p.Field == tc.field && strings.Contains(p.Msg, tc.msg) {
					return
				}
			}
			t.Fatalf("problems %v, want %s: …%s…", e, tc.field, tc.msg)
		})
	}
}

func TestHasTLS(t *testing.T) {
	c := valid()
	if c.HasTLS() {
		t.Error("HasTLS of a udp-only config")
	}
	c.SIP.Listen = append(c.SIP.Listen, "TLS:127.0.0.1:5061")
	if !c.HasTLS() {
		t.Error("HasTLS false with a tls listener")
	}
}

func TestCertNames(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"standalone on every address", Config{Node: Node{Name: "office"},
			SIP: SIP{Listen: []string{"udp:0.0.0.0:5060", "tls:[::]:5061"}, Advertise: "pbx.example.com"}},
			[]string{"pbx.example.com", "office"}},
		{"twin pair: the same names on both boxes", Config{Node: Node{Name: "a"},
			SIP: SIP{Listen: []string{"tls:10.0.0.10:5061"}},
			Cluster: &Cluster{Peer: "b", VIP: "10.0.0.10/24",
				LAN: Path{Local: "10.0.0.11", Peer: "10.0.0.12:7400"}}},
			[]string{"10.0.0.10", "a", "b", "10.0.0.10", "10.0.0.11", "10.0.0.12"}},
	}
	for _, tt := range tests {
		if got := tt.cfg.CertNames(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
