package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files into dir.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// tlsPhone makes a baresip phone register over TLS at tlsAddr, trusting
// caFile, with SRTP (SDES) mandatory: it makes and takes no call without
// it.
func tlsPhone(ext config.Extension, tlsAddr, caFile string) phoneOpt {
	return func(cfg, account *string) {
		*cfg += "module srtp.so\nsip_cafile " + caFile + "\n"
		*account = fmt.Sprintf("%q <sip:%s@%s;transport=tls>;auth_pass=%s;regint=300;answermode=auto;mediaenc=srtp-mand\n",
			ext.Name, ext.Number, tlsAddr, ext.Secret)
	}
}

// TestBaresipTLSSRTP: two real phones register over TLS (the PBX presents
// the certificate of sip.tls) and call each other with SRTP mandatory;
// each must hear the other's tone, so the SDES keys reached the other
// phone and the relay left the SRTP packets intact.
func TestBaresipTLSSRTP(t *testing.T) {
	needTools(t, "baresip")
	if _, err := os.Stat("/usr/lib/baresip/modules/srtp.so"); err != nil {
		t.Skip("baresip's srtp module is not installed")
	}
	certFile, keyFile := writeCert(t, t.TempDir())
	tlsPort := freePorts(t, 1)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	p := startPBXWith(t, func(c *config.Config) {
		c.SIP.Listen = append(c.SIP.Listen, "tls:"+tlsAddr)
		c.SIP.TLS = &config.SIPTLS{Cert: certFile, Key: keyFile}
	}, alice, bob)
	a := startPhone(t, alice, p.addr(), 1000, tlsPhone(alice, tlsAddr, certFile))
	b := startPhone(t, bob, p.addr(), 600, tlsPhone(bob, tlsAddr, certFile))
	a.waitRegistered(10 * time.Second)
	b.waitRegistered(10 * time.Second)

	var st struct {
		Registrations []struct {
			AOR    string `json:"aor"`
			Source string `json:"source"`
		} `json:"registrations"`
		TLS struct {
			Fingerprint string `json:"fingerprint"`
			SelfSigned  bool   `json:"self_signed"`
		} `json:"tls"`
	}
	if err := p.status(&st); err != nil {
		t.Fatal(err)
	}
	if st.TLS.Fingerprint == "" || st.TLS.SelfSigned {
		t.Errorf("status tls = %+v, want the configured certificate", st.TLS)
	}
	for _, r := range st.Registrations {
		if !strings.HasPrefix(r.Source, "tls:") {
			t.Errorf("%s registered from %q, want over TLS", r.AOR, r.Source)
		}
	}

	talk(t, a, b, fmt.Sprintf("sip:%s@%s", bob.Number, tlsAddr), 1000, 600, 3*time.Second)
}

// TestTLSFingerprintAcrossRestart: without sip.tls the box derives its
// certificate; the fingerprint `twinpbx status` shows stays the same
// when the PBX restarts, so phones that pinned it keep working.
func TestTLSFingerprintAcrossRestart(t *testing.T) {
	tlsPort := freePorts(t, 1)
	p := startPBXWith(t, func(c *config.Config) {
		c.SIP.Listen = append(c.SIP.Listen, fmt.Sprintf("tls:127.0.0.1:%d", tlsPort))
	}, alice, bob)
	fingerprint := func() string {
		var st struct {
			TLS struct {
				Fingerprint string `json:"fingerprint"`
				SelfSigned  bool   `json:"self_signed"`
			} `json:"tls"`
		}
		if err := p.status(&st); err != nil {
			t.Fatal(err)
		}
		if !st.TLS.SelfSigned || len(st.TLS.Fingerprint) != 95 {
			t.Fatalf("status tls = %+v, want a derived certificate", st.TLS)
		}
		return st.TLS.Fingerprint
	}
	before := fingerprint()
	if !strings.Contains(p.log.String(), "sha256="+before) {
		t.Error("the fingerprint is not in the start log")
	}
	p.stop()
	p.start()
	if after := fingerprint(); after != before {
		t.Fatalf("fingerprint after restart %s, want %s", after, before)
	}
}
