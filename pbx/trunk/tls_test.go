package trunk

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// TestTLSPeer: the names a trunk's server must prove and the one sent in
// SNI come from the config (RFC 5922: the SIP domain), never from DNS.
func TestTLSPeer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		line      config.TrunkLine
		host      string
		sni       string
		hosts     []string
		wantRoots bool
	}{
		{name: "host name", line: config.TrunkLine{Name: "p"}, host: "sip.provider.test", sni: "sip.provider.test", hosts: []string{"sip.provider.test"}},
		{name: "host name and domain", line: config.TrunkLine{Name: "p", Domain: "provider.test"}, host: "sip.provider.test",
			sni: "sip.provider.test", hosts: []string{"sip.provider.test", "provider.test"}},
		{name: "same host and domain", line: config.TrunkLine{Name: "p", Domain: "provider.test"}, host: "provider.test",
			sni: "provider.test", hosts: []string{"provider.test"}},
		{name: "address and domain", line: config.TrunkLine{Name: "p", Domain: "provider.test"}, host: "192.0.2.5",
			sni: "provider.test", hosts: []string{"192.0.2.5", "provider.test"}},
		{name: "address alone", line: config.TrunkLine{Name: "p"}, host: "192.0.2.5", sni: "192.0.2.5", hosts: []string{"192.0.2.5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tlsPeer(tc.line, tc.host)
			if err != nil {
				t.Fatal(err)
			}
			if p.ServerName != tc.sni || !slices.Equal(p.Hosts, tc.hosts) || p.Name != "trunk p" || p.Roots != nil {
				t.Errorf("peer %+v, want SNI %q and hosts %q", p, tc.sni, tc.hosts)
			}
		})
	}
	if _, err := tlsPeer(config.TrunkLine{Name: "p", TLSCA: "/nonexistent/ca.pem"}, "x.test"); err == nil {
		t.Error("a missing tls_ca file was taken")
	}
}

// TestHandoff: a connection given to the handoff comes out of Accept,
// and give returns only once the server asked for the next one (it has
// taken the first in); after Close, Accept and give fail.
func TestHandoff(t *testing.T) {
	h := newHandoff(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5061})
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gave := make(chan error, 1)
	go func() { gave <- h.give(ctx, a) }()
	c, err := h.Accept()
	if err != nil || c != a {
		t.Fatalf("Accept = %v, %v; want the given connection", c, err)
	}
	select {
	case err := <-gave:
		t.Fatalf("give returned (%v) before the server took the connection in", err)
	default:
	}
	accepted := make(chan error, 1)
	go func() {
		_, err := h.Accept() // the server's next call: the first is in
		accepted <- err
	}()
	if err := <-gave; err != nil {
		t.Fatalf("give: %v", err)
	}
	h.Close()
	if err := <-accepted; err == nil {
		t.Error("Accept after Close succeeded")
	}
	if err := h.give(ctx, b); err == nil {
		t.Error("give after Close succeeded")
	}
	if h.Addr().String() != "127.0.0.1:5061" {
		t.Errorf("Addr %v", h.Addr())
	}
}
