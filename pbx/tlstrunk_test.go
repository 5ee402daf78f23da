package pbx

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/pbxtest"
	"github.com/twinpbx/twinpbx/pbx/trunk"
)

// providerCA makes a CA (written as PEM to a file) and a certificate it
// signed for names, or for 127.0.0.1 without any.
func providerCA(t *testing.T, names ...string) (caFile string, cert tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "provider CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
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
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sip provider"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if len(names) == 0 {
		leaf.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	leaf.DNSNames = names
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

// tlsProvider is a SIP provider over TLS on addr that accepts every
// REGISTER. Start it after the PBX: pbx.New sets the SIP stack's global
// logger, which a running provider reads.
func tlsProvider(t *testing.T, addr string, cert tls.Certificate) (registers *atomic.Int32) {
	t.Helper()
	registers, _ = tlsProviderSNI(t, addr, cert)
	return registers
}

// tlsProviderSNI is tlsProvider that also reports the server name (SNI)
// of every connection's handshake.
func tlsProviderSNI(t *testing.T, addr string, cert tls.Certificate) (registers *atomic.Int32, sni func() []string) {
	t.Helper()
	var mu sync.Mutex
	var names []string
	sni = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(names)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("provider"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	registers = new(atomic.Int32)
	srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
		registers.Add(1)
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
		if c := req.Contact(); c != nil {
			res.AppendHeader(sip.NewHeader("Contact", c.Value()+";expires=600"))
		}
		_ = tx.Respond(res)
	})
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			mu.Lock()
			names = append(names, h.ServerName)
			mu.Unlock()
			return nil, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(ln) }()
	t.Cleanup(func() { ln.Close(); ua.Close() })
	return registers, sni
}

// TestTLSTrunk: a provider over TLS is registered at when its certificate
// chains to the trunk's tls_ca, refused when it does not, and taken
// unchecked only with tls_insecure.
func TestTLSTrunk(t *testing.T) {
	caFile, cert := providerCA(t)
	otherCA, _ := providerCA(t)
	for _, tc := range []struct {
		name     string
		ca       string
		insecure bool
		want     string
	}{
		{"trusted CA", caFile, false, trunk.StateRegistered},
		{"other CA", otherCA, false, trunk.StateFailing},
		{"insecure", "", true, trunk.StateRegistered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			provider := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
			cfg := tlsConfig(freeTCPPort(t))
			cfg.Trunks = []config.TrunkLine{{Name: "provider", Host: provider, Transport: "tls",
				TLSCA: tc.ca, TLSInsecure: tc.insecure, User: "4930123", Password: "secret-pw", Register: true}}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			box := startTLSBox(t, cfg, pbxtest.NewStore(), bytes.Repeat([]byte{3}, 32))
			// The first REGISTER finds nobody; the trunk tries again
			// after its backoff (5 s).
			registers := tlsProvider(t, provider, cert)
			var st trunk.Status
			waitfor.Cond(t, 30*time.Second, "the trunk to settle as "+tc.want, func() bool {
				st = box.p.Status().Trunks[0]
				// Failing for the certificate, not for the first attempt
				// that found no provider.
				return st.State == tc.want && (tc.want != trunk.StateFailing || strings.Contains(st.LastError, "certificate"))
			})
			if tc.want == trunk.StateFailing {
				if n := registers.Load(); n != 0 {
					t.Errorf("the provider got %d REGISTERs over an unchecked connection", n)
				}
			}
			if tc.want == trunk.StateRegistered && !strings.HasPrefix(st.Target, "tls:") {
				t.Errorf("target %q, want tls", st.Target)
			}
		})
	}
}

// TestTLSTrunksEachTheirOwnCheck: two providers whose certificates come
// from different CAs, each trunk with its own tls_ca and domain. Each
// trunk registers with its provider, naming the provider's domain in
// SNI; a third trunk that trusts the first provider's CA but is pointed
// at the second provider fails, although the second trunk's check
// would pass that certificate (the check is the trunk's, not the box's).
func TestTLSTrunksEachTheirOwnCheck(t *testing.T) {
	caA, certA := providerCA(t, "sip.a.test")
	caB, certB := providerCA(t, "sip.b.test")
	addrA := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	addrB := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	cfg := tlsConfig(freeTCPPort(t))
	cfg.Trunks = []config.TrunkLine{
		{Name: "a", Host: addrA, Domain: "sip.a.test", Transport: "tls", TLSCA: caA, User: "491", Password: "secret-pw", Register: true},
		{Name: "b", Host: addrB, Domain: "sip.b.test", Transport: "tls", TLSCA: caB, User: "492", Password: "secret-pw", Register: true},
		{Name: "c", Host: addrB, Domain: "sip.a.test", Transport: "tls", TLSCA: caA, User: "493", Password: "secret-pw", Register: true},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	box := startTLSBox(t, cfg, pbxtest.NewStore(), bytes.Repeat([]byte{4}, 32))
	regA, sniA := tlsProviderSNI(t, addrA, certA)
	regB, sniB := tlsProviderSNI(t, addrB, certB)
	want := map[string]string{"a": trunk.StateRegistered, "b": trunk.StateRegistered, "c": trunk.StateFailing}
	var sts []trunk.Status
	waitfor.Cond(t, 30*time.Second, "the trunks to settle", func() bool {
		sts = box.p.Status().Trunks
		for _, st := range sts {
			if st.State != want[st.Name] || (st.State == trunk.StateFailing && !strings.Contains(st.LastError, "certificate")) {
				return false
			}
		}
		return len(sts) == 3
	})
	if regA.Load() == 0 || regB.Load() == 0 {
		t.Errorf("REGISTERs: %d at a, %d at b", regA.Load(), regB.Load())
	}
	// Every connection names the domain of a trunk sent there: a's
	// to provider a, b's (and c's refused ones) to provider b; none is
	// without SNI.
	for _, p := range []struct {
		name    string
		sni     []string
		want    string
		allowed []string
	}{{"a", sniA(), "sip.a.test", []string{"sip.a.test"}}, {"b", sniB(), "sip.b.test", []string{"sip.b.test", "sip.a.test"}}} {
		if !slices.Contains(p.sni, p.want) {
			t.Errorf("provider %s saw SNI %q, want %q among them", p.name, p.sni, p.want)
		}
		for _, n := range p.sni {
			if !slices.Contains(p.allowed, n) {
				t.Errorf("provider %s saw SNI %q, want only %q", p.name, n, p.allowed)
			}
		}
	}
}
