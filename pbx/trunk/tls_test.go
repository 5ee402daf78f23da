package trunk

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/tlscert"
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

// testCA writes a CA as PEM and returns it with a server certificate it
// signed for name.
func testCA(t *testing.T, name string) (caFile string, cert tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{name}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsServer accepts TLS connections presenting cert and records the SNI
// of each; closeAll closes the connections it holds.
type tlsServer struct {
	addr  string
	mu    sync.Mutex
	sni   []string
	conns []net.Conn
}

func startTLSServer(t *testing.T, cert tls.Certificate) *tlsServer {
	t.Helper()
	s := &tlsServer{}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			s.mu.Lock()
			s.sni = append(s.sni, h.ServerName)
			s.mu.Unlock()
			return nil, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	t.Cleanup(func() { ln.Close(); s.closeAll() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go func() { _ = c.(*tls.Conn).Handshake() }()
		}
	}()
	return s
}

func (s *tlsServer) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sni)
}

func (s *tlsServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// TestConnect: a running manager opens a trunk's TLS connection itself
// (SNI, the trunk's own check) and hands it to the SIP stack; the next
// request reuses it, another trunk whose check it fails may not, and a
// connection the provider closed is opened again.
func TestConnect(t *testing.T) {
	caA, certA := testCA(t, "sip.a.test")
	caB, _ := testCA(t, "sip.b.test")
	srv := startTLSServer(t, certA)
	p := startPBXSide(t)
	o := p.options(t)
	o.TLS = tlscert.NewPeers(o.Logger)
	m, err := New(o, []config.TrunkLine{
		{Name: "a", Host: srv.addr, Domain: "sip.a.test", Transport: "tls", TLSCA: caA},
		{Name: "b", Host: srv.addr, Domain: "sip.b.test", Transport: "tls", TLSCA: caB},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Connect(ctx, "a", "TLS", srv.addr); err != nil || len(srv.names()) != 0 {
		t.Fatalf("Connect before Run: %v, %d connections; want nothing done", err, len(srv.names()))
	}
	runManager(t, m)

	pool := p.client.TransportLayer().Pool("tls")
	pooled := func() bool {
		c := pool.Get(srv.addr)
		if c != nil {
			_, _ = c.TryClose()
		}
		return c != nil
	}
	if err := m.Connect(ctx, "a", "TLS", srv.addr); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if got := srv.names(); !slices.Equal(got, []string{"sip.a.test"}) || !pooled() {
		t.Fatalf("SNI %q, pooled %v; want one connection naming sip.a.test, in the stack's pool", got, pooled())
	}
	if err := m.Connect(ctx, "a", "TLS", srv.addr); err != nil || len(srv.names()) != 1 {
		t.Errorf("second Connect: %v, %d connections; want the first reused", err, len(srv.names()))
	}
	if err := m.Connect(ctx, "b", "TLS", srv.addr); err == nil {
		t.Error("trunk b used a connection its CA does not vouch for")
	}
	for _, tc := range []struct{ name, transport, dest string }{{"a", "UDP", srv.addr}, {"nobody", "TLS", srv.addr}} {
		if err := m.Connect(ctx, tc.name, tc.transport, tc.dest); err != nil {
			t.Errorf("Connect(%s, %s): %v, want nothing done", tc.name, tc.transport, err)
		}
	}
	if err := m.Connect(ctx, "a", "TLS", "not an address"); err == nil {
		t.Error("Connect took a malformed destination")
	}
	srv.closeAll()
	eventually(t, "the closed connection to leave the pool", func() bool { return !pooled() })
	if err := m.Connect(ctx, "a", "TLS", srv.addr); err != nil || len(srv.names()) != 2 || !pooled() {
		t.Errorf("Connect after the provider closed: %v, %d connections, pooled %v", err, len(srv.names()), pooled())
	}
}

// TestConnectLeavesNothingRunning: the hand-over of TLS connections to
// the SIP stack ends with the manager, and a handed-over connection the
// provider closes ends with it: the goroutines are back to what they
// were before the manager ran.
func TestConnectLeavesNothingRunning(t *testing.T) {
	ca, cert := testCA(t, "sip.a.test")
	srv := startTLSServer(t, cert)
	p := startPBXSide(t)
	o := p.options(t)
	o.TLS = tlscert.NewPeers(o.Logger)
	m, err := New(o, []config.TrunkLine{{Name: "a", Host: srv.addr, Domain: "sip.a.test", Transport: "tls", TLSCA: ca}})
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()

	stop := runManager(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		if err := m.Connect(ctx, "a", "TLS", srv.addr); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		srv.closeAll()
		eventually(t, "the closed connection to leave the pool", func() bool {
			c := p.client.TransportLayer().Pool("tls").Get(srv.addr)
			if c != nil {
				_, _ = c.TryClose()
			}
			return c == nil
		})
	}
	stop()
	m.mu.Lock()
	conn := m.conn
	m.mu.Unlock()
	if conn != nil {
		t.Error("the hand-over is still set up after Run returned")
	}
	eventually(t, "the goroutines of the hand-over and its connections to end", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// TestConnectChecksOnce: a connection is checked for a trunk once, not
// at every request sent over it: a tls_insecure trunk warns at each new
// connection only, as the docs promise.
func TestConnectChecksOnce(t *testing.T) {
	_, cert := testCA(t, "sip.a.test")
	srv := startTLSServer(t, cert)
	p := startPBXSide(t)
	o := p.options(t)
	var warns atomic.Int32
	o.TLS = tlscert.NewPeers(slog.New(countingHandler{n: &warns}))
	m, err := New(o, []config.TrunkLine{{Name: "a", Host: srv.addr, Domain: "sip.a.test", Transport: "tls", TLSInsecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		if err := m.Connect(ctx, "a", "TLS", srv.addr); err != nil {
			t.Fatalf("Connect: %v", err)
		}
	}
	if n, conns := warns.Load(), len(srv.names()); n != 1 || conns != 1 {
		t.Errorf("%d warnings over %d connections, want one over one", n, conns)
	}
}

// countingHandler counts the warnings logged.
type countingHandler struct{ n *atomic.Int32 }

func (h countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h countingHandler) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// runManager runs m until the test ends or stop is called, and returns
// once it runs (the TLS hand-over is set up then); stop returns once Run
// has.
func runManager(t *testing.T, m *Manager) (stop func()) {
	t.Helper()
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(runCtx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	eventually(t, "the manager running", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.runCtx != nil
	})
	return stop
}
