package tlscert

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var seed = []byte("0123456789abcdef0123456789abcdef")

func TestDerive(t *testing.T) {
	a, err := Derive(seed, []string{"192.168.1.10", "pbx-a", "pbx-b", "192.168.1.11"})
	if err != nil {
		t.Fatal(err)
	}
	// The other box of a pair lists the same names in its own order.
	b, err := Derive(bytes.Clone(seed), []string{"pbx-b", "192.168.1.11", "pbx-a", "192.168.1.10", "pbx-a"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Cert.Certificate[0], b.Cert.Certificate[0]) || a.Fingerprint != b.Fingerprint {
		t.Fatal("the same seed and names gave two certificates")
	}
	if !a.SelfSigned || len(a.Fingerprint) != 32*3-1 {
		t.Errorf("identity %+v", a)
	}
	leaf := a.Cert.Leaf
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || leaf.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	for _, h := range []string{"pbx-a", "pbx-b", "192.168.1.10", "192.168.1.11"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("SAN: %v", err)
		}
	}
	if leaf.NotAfter.Year() != 9999 || time.Now().Before(leaf.NotBefore) {
		t.Errorf("validity %v..%v", leaf.NotBefore, leaf.NotAfter)
	}

	for name, other := range map[string]func() (*Identity, error){
		"other seed":  func() (*Identity, error) { return Derive([]byte("another secret of sixteen+"), []string{"pbx-a"}) },
		"other names": func() (*Identity, error) { return Derive(seed, []string{"pbx-a"}) },
	} {
		c, err := other()
		if err != nil {
			t.Fatal(err)
		}
		if c.Fingerprint == a.Fingerprint {
			t.Errorf("%s: same certificate", name)
		}
	}
	if _, err := Derive(seed[:MinSeed-1], nil); err == nil {
		t.Error("Derive took a short seed")
	}
}

// TestDeriveSpelling: twins whose configs spell the same names
// differently (case, brackets, IPv6 notation) derive one certificate,
// which lists each name once.
func TestDeriveSpelling(t *testing.T) {
	a, err := Derive(seed, []string{"pbx-a", "PBX-B", "[2001:DB8::1]", "192.168.1.10", "[]"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Derive(seed, []string{"Pbx-A", "pbx-b", "2001:db8:0::1", "192.168.1.10", "pbx-a"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Cert.Certificate[0], b.Cert.Certificate[0]) {
		t.Errorf("the same names spelled differently gave two certificates: %v and %v", a.Names, b.Names)
	}
	if want := []string{"pbx-a", "pbx-b", "192.168.1.10", "2001:db8::1"}; !slices.Equal(a.Names, want) {
		t.Errorf("names %v, want %v", a.Names, want)
	}
}

// testCA makes a CA and a server certificate it signed for names.
func testCA(t *testing.T, names ...string) (caPEM []byte, server tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: names, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	_, srv := testCA(t, "pbx.example.test")
	key, err := x509.MarshalPKCS8PrivateKey(srv.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile := writeFile(t, "cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate[0]}))
	keyFile := writeFile(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}))
	id, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if id.SelfSigned || !slices.Equal(id.Names, []string{"pbx.example.test"}) || id.Fingerprint != Fingerprint(srv.Certificate[0]) {
		t.Errorf("identity %+v", id)
	}
	for name, files := range map[string][2]string{
		"missing cert": {filepath.Join(t.TempDir(), "none.pem"), keyFile},
		"key as cert":  {keyFile, keyFile},
		"garbage key":  {certFile, writeFile(t, "bad.pem", []byte("not PEM"))},
	} {
		if _, err := Load(files[0], files[1]); err == nil || !strings.Contains(err.Error(), "loading the TLS certificate") {
			t.Errorf("%s: Load = %v, want a clear error", name, err)
		}
	}
}

// handshake runs a TLS handshake of a client using cfg, dialling the
// name dialled, against a loopback server presenting srv, and returns the
// client's error.
func handshake(t *testing.T, cfg *tls.Config, dialled string, srv tls.Certificate) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srv}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.(*tls.Conn).Handshake()
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := cfg.Clone()
	c.ServerName = dialled
	return tls.Client(raw, c).Handshake()
}

// TestPeersVerify: a connection the SIP stack dials on its own is
// accepted when one Peer's check passes: its roots and its configured
// names (not names DNS gave on the way, RFC 5922).
func TestPeersVerify(t *testing.T) {
	caPEM, srv := testCA(t, "sip.provider.test", "edge1.provider.test")
	roots, err := LoadCA(writeFile(t, "ca.pem", caPEM))
	if err != nil {
		t.Fatal(err)
	}
	_, stranger := testCA(t, "sip.provider.test") // signed by another CA
	for _, tc := range []struct {
		name  string
		peers []Peer
		srv   tls.Certificate
		ok    bool
	}{
		{"right CA and domain", []Peer{{Name: "p", Hosts: []string{"sip.provider.test"}, Roots: roots}}, srv, true},
		{"only an SRV target's name", []Peer{{Name: "p", Hosts: []string{"provider.test"}, Roots: roots}}, srv, false},
		{"wrong domain", []Peer{{Name: "p", Hosts: []string{"sip.elsewhere.test"}, Roots: roots}}, srv, false},
		{"other CA", []Peer{{Name: "p", Hosts: []string{"sip.provider.test"}, Roots: roots}}, stranger, false},
		{"system roots", []Peer{{Name: "p", Hosts: []string{"sip.provider.test"}}}, srv, false},
		{"one of two", []Peer{{Name: "a", Hosts: []string{"a.test"}}, {Name: "p", Hosts: []string{"sip.provider.test"}, Roots: roots}}, srv, true},
		{"insecure", []Peer{{Name: "p", Hosts: []string{"sip.elsewhere.test"}, Insecure: true}}, stranger, true},
		{"no peer", nil, srv, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPeers(nil)
			for _, peer := range tc.peers {
				p.Set(peer)
			}
			err := handshake(t, p.ClientConfig(), "192.0.2.7", tc.srv)
			if (err == nil) != tc.ok {
				t.Fatalf("handshake: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := LoadCA(writeFile(t, "x.pem", []byte("nothing"))); err == nil {
		t.Error("LoadCA took a file without certificates")
	}
}

// provider is a TLS server on loopback presenting cert; sni receives the
// server name of each ClientHello ("" without SNI).
func provider(t *testing.T, cert tls.Certificate) (addr netip.AddrPort, sni chan string) {
	t.Helper()
	sni = make(chan string, 8)
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: MinVersion,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sni <- h.ServerName
			return nil, nil
		}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), sni
}

// TestDial: two providers whose certificates come from different CAs.
// The PBX reaches each with its own trunk's check and names the trunk's
// host in SNI; each trunk's check refuses the other's server.
func TestDial(t *testing.T) {
	caA, certA := testCA(t, "sip.a.test")
	caB, certB := testCA(t, "sip.b.test")
	rootsA, err := LoadCA(writeFile(t, "a.pem", caA))
	if err != nil {
		t.Fatal(err)
	}
	rootsB, err := LoadCA(writeFile(t, "b.pem", caB))
	if err != nil {
		t.Fatal(err)
	}
	addrA, sniA := provider(t, certA)
	addrB, sniB := provider(t, certB)
	p := NewPeers(nil)
	p.Set(Peer{Name: "trunk a", ServerName: "sip.a.test", Hosts: []string{"sip.a.test"}, Roots: rootsA})
	p.Set(Peer{Name: "trunk b", ServerName: "sip.b.test", Hosts: []string{"sip.b.test"}, Roots: rootsB})
	p.Set(Peer{Name: "trunk b by address", ServerName: "127.0.0.1", Hosts: []string{"sip.b.test"}, Roots: rootsB})
	p.Set(Peer{Name: "trunk b insecure", ServerName: "sip.b.test", Insecure: true})
	for _, tc := range []struct {
		name    string
		peer    string
		addr    netip.AddrPort
		sni     chan string
		wantSNI string
		ok      bool
	}{
		{"trunk a at its server", "trunk a", addrA, sniA, "sip.a.test", true},
		{"trunk b at its server", "trunk b", addrB, sniB, "sip.b.test", true},
		{"trunk a at b's server", "trunk a", addrB, sniB, "sip.a.test", false},
		{"trunk b at a's server", "trunk b", addrA, sniA, "sip.b.test", false},
		{"an address as host: no SNI", "trunk b by address", addrB, sniB, "", true},
		{"insecure", "trunk b insecure", addrA, sniA, "sip.b.test", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := p.Dial(ctx, tc.peer, tc.addr)
			if c != nil {
				c.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("Dial: %v, want ok=%v", err, tc.ok)
			}
			select {
			case got := <-tc.sni:
				if got != tc.wantSNI {
					t.Errorf("SNI %q, want %q", got, tc.wantSNI)
				}
			case <-ctx.Done():
				t.Fatal("the server saw no ClientHello")
			}
		})
	}
	if _, err := p.Dial(context.Background(), "nobody", addrA); err == nil {
		t.Error("Dial for an unknown peer worked")
	}
}

func TestMinVersion(t *testing.T) {
	id, err := Derive(seed, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerConfig(id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.(*tls.Conn).Handshake()
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10})
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 client was served")
	}
}

func TestFingerprint(t *testing.T) {
	got := Fingerprint([]byte("abc"))
	want := "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
	if got != want {
		t.Errorf("Fingerprint = %s", got)
	}
}

// TestDialPresentsIdentity: a server that asks for a client certificate
// gets the box's (SetIdentity) from Dial and from the SIP stack's
// config.
func TestDialPresentsIdentity(t *testing.T) {
	caPEM, cert := testCA(t, "sip.a.test")
	roots, err := LoadCA(writeFile(t, "ca.pem", caPEM))
	if err != nil {
		t.Fatal(err)
	}
	id, err := Derive(seed, []string{"pbx-a"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: MinVersion,
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				got <- Fingerprint(cs.PeerCertificates[0].Raw)
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.(*tls.Conn).Handshake()
	}()
	p := NewPeers(nil)
	p.SetIdentity(id)
	p.Set(Peer{Name: "a", ServerName: "sip.a.test", Hosts: []string{"sip.a.test"}, Roots: roots})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := p.Dial(ctx, "a", netip.MustParseAddrPort(ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case fp := <-got:
		if fp != id.Fingerprint {
			t.Errorf("the server got certificate %s, want the box's %s", fp, id.Fingerprint)
		}
	case <-ctx.Done():
		t.Fatal("the server saw no client certificate")
	}
	if conf := p.ClientConfig(); conf.GetClientCertificate == nil {
		t.Error("the SIP stack's config presents no certificate")
	}
}
