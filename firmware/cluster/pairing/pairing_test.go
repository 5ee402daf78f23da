package pairing

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

const testKey = "correct horse battery staple"

func TestDeriveIsDeterministic(t *testing.T) {
	a, err := Derive(testKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Derive(testKey)
	if err != nil {
		t.Fatal(err)
	}
	if a.Heartbeat != b.Heartbeat {
		t.Error("heartbeat keys differ for the same pairing key")
	}
	if !bytes.Equal(a.Certificate(), b.Certificate()) {
		t.Error("certificates differ for the same pairing key")
	}
	if a.Fingerprint() != b.Fingerprint() {
		t.Error("fingerprints differ for the same pairing key")
	}
	if a.Heartbeat == ([32]byte{}) {
		t.Error("heartbeat key is all zero")
	}

	c, err := Derive(testKey + "!")
	if err != nil {
		t.Fatal(err)
	}
	if a.Heartbeat == c.Heartbeat || bytes.Equal(a.Certificate(), c.Certificate()) || a.Fingerprint() == c.Fingerprint() {
		t.Error("another pairing key derived the same secrets")
	}
	// The heartbeat key and the replication seed come from different labels.
	if bytes.Equal(a.Heartbeat[:], a.cert.PrivateKey.(ed25519.PrivateKey).Seed()) {
		t.Error("heartbeat key equals the replication seed")
	}
}

func TestDeriveCodeForms(t *testing.T) {
	code, err := NewPairingKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Derive(code)
	if err != nil {
		t.Fatal(err)
	}
	typed := strings.ToLower(strings.ReplaceAll(code, "-", " "))
	b, err := Derive(typed)
	if err != nil {
		t.Fatal(err)
	}
	if a.Heartbeat != b.Heartbeat {
		t.Errorf("%q and %q derive different keys", code, typed)
	}
}

func TestDeriveRefusesShortKeys(t *testing.T) {
	for _, k := range []string{"", "short", strings.Repeat("x", MinKeyLen-1), "\xff\xfe" + strings.Repeat("x", MinKeyLen)} {
		if _, err := Derive(k); err == nil {
			t.Errorf("Derive(%q) succeeded", k)
		}
	}
}

// handshake runs both ends of a replication connection over loopback TCP
// and returns each side's error. A client whose handshake succeeds also
// reads once, since a TLS 1.3 client learns of a refusal by the server
// only then.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		s := tls.Server(conn, server)
		defer s.Close()
		err = Handshake(ctx, s)
		if err == nil {
			_, err = s.Write([]byte{1})
		}
		done <- err
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(conn, client)
	t.Cleanup(func() { c.Close() })
	clientErr = Handshake(ctx, c)
	if clientErr == nil {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil {
			clientErr = Explain(err)
		}
	}
	serverErr = <-done
	return serverErr, clientErr
}

func TestTLSSameKey(t *testing.T) {
	a, _ := Derive(testKey)
	b, _ := Derive(testKey)
	serverErr, clientErr := handshake(t, a.TLSConfig(true), b.TLSConfig(false))
	if serverErr != nil || clientErr != nil {
		t.Fatalf("handshake with the same key failed: server %v, client %v", serverErr, clientErr)
	}
}

func TestTLSRefusals(t *testing.T) {
	a, _ := Derive(testKey)
	other, _ := Derive("another pairing key entirely")

	// A box with its own certificate but a key pair not derived from ours.
	_, priv, _ := ed25519.GenerateKey(nil)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	stranger := other.TLSConfig(false)
	stranger.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}

	noCert := a.TLSConfig(false)
	noCert.Certificates = nil

	oldProto := a.TLSConfig(false)
	oldProto.NextProtos = []string{"twinpbx-replication/0"}

	tls12 := a.TLSConfig(false)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	tests := []struct {
		name           string
		server, client *tls.Config
		want           error // on both sides; nil: only that both fail
	}{
		{"client has another key", a.TLSConfig(true), other.TLSConfig(false), ErrWrongKey},
		{"server has another key", other.TLSConfig(true), a.TLSConfig(false), ErrWrongKey},
		{"client has a foreign certificate", a.TLSConfig(true), stranger, ErrWrongKey},
		{"client has no certificate", a.TLSConfig(true), noCert, ErrWrongKey},
		{"client speaks another protocol", a.TLSConfig(true), oldProto, ErrProtocolVersion},
		{"client offers TLS 1.2 only", a.TLSConfig(true), tls12, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverErr, clientErr := handshake(t, tt.server, tt.client)
			if serverErr == nil || clientErr == nil {
				t.Fatalf("handshake succeeded: server %v, client %v", serverErr, clientErr)
			}
			if tt.want == nil {
				return
			}
			if !errors.Is(serverErr, tt.want) {
				t.Errorf("server error %q, want %q", serverErr, tt.want)
			}
			if !errors.Is(clientErr, tt.want) {
				t.Errorf("client error %q, want %q", clientErr, tt.want)
			}
			if tt.want == ErrWrongKey && !strings.Contains(serverErr.Error()+clientErr.Error(), "twin uses a different pairing key") {
				t.Errorf("errors do not say the twin has another key: %q, %q", serverErr, clientErr)
			}
		})
	}
}
