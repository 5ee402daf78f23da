package pbx

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/sipmark"
)

const fwdHeader = "X-Test-Twin"

func testMarker(t *testing.T, key string) *sipmark.Marker {
	t.Helper()
	m, err := sipmark.New(sipmark.Options{Header: fwdHeader, Key: []byte(key),
		Senders: func(name string) []net.IP {
			if name == "twin-b" {
				return []net.IP{net.ParseIP("127.0.0.1")}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// startForwardedPBX runs a PBX that takes the marks of testMarker's
// "twin-b" (127.0.0.1) and returns it with its address.
func startForwardedPBX(t *testing.T, m *sipmark.Marker) (*PBX, string) {
	t.Helper()
	return runTestPBX(t, "31040-31059", func(cfg *config.Config, o *Options) {
		cfg.SIP.Realm = "branch.example"
		o.Forwarded = m
	})
}

// forwardedRegister is a REGISTER as the twin's forwarder passes it on
// from 127.0.0.1: its own Via on top of the phone's.
func forwardedRegister(t *testing.T, pbxAddr, local, callID string, cseq int, authz string) *sip.Request {
	t.Helper()
	raw := fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-d-%s%d\r\n"+
		"Via: SIP/2.0/UDP 192.0.2.50:5062;branch=z9hG4bK%s%d;received=192.0.2.50;rport=5062\r\n"+
		"Max-Forwards: 69\r\nFrom: <sip:100@branch.example>;tag=ft\r\nTo: <sip:100@branch.example>\r\n"+
		"Call-ID: %s\r\nCSeq: %d REGISTER\r\nContact: <sip:100@192.0.2.50:5062>\r\nExpires: 300\r\n%s"+
		"Content-Length: 0\r\n\r\n", pbxAddr, local, callID, cseq, callID, cseq, callID, cseq, authz)
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetSource(local)
	return req
}

// TestForwardedRegister: a REGISTER the twin's forwarder passed on is
// challenged and accepted as any other, and its binding holds the
// phone's own address from the mark; a mark made with another key or
// naming another box is refused with 403.
func TestForwardedRegister(t *testing.T) {
	m := testMarker(t, "pairing-derived-key-0123456789ab")
	p, addr := startForwardedPBX(t, m)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	send := func(req *sip.Request) *sip.Response {
		t.Helper()
		if _, err := c.Write([]byte(req.String())); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 8192)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no answer to %s: %v", req.StartLine(), err)
		}
		msg, err := sip.ParseMessage(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return msg.(*sip.Response)
	}
	const claim = "udp:192.0.2.50:5062"

	for _, tt := range []struct {
		name   string
		signer *sipmark.Marker
		sender string
		want   int
	}{
		{"another key", testMarker(t, "some-other-key-0123456789abcdef"), "twin-b", 403},
		{"another box", m, "twin-x", 403},
		{"not marked", nil, "", 401},
		{"marked", m, "twin-b", 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := forwardedRegister(t, addr, local, "fw-"+strings.ReplaceAll(tt.name, " ", "-"), 1, "")
			if tt.signer != nil {
				if err := tt.signer.Sign(req, tt.sender, claim); err != nil {
					t.Fatal(err)
				}
			}
			if res := send(req); res.StatusCode != tt.want {
				t.Fatalf("answered %s, want %d", res.StartLine(), tt.want)
			}
		})
	}

	req := forwardedRegister(t, addr, local, "fw-ok", 1, "")
	if err := m.Sign(req, "twin-b", claim); err != nil {
		t.Fatal(err)
	}
	res := send(req)
	if res.StatusCode != 401 {
		t.Fatalf("first REGISTER answered %s, want 401", res.StartLine())
	}
	chal, err := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + addr,
		Username: "100", Password: "secret-100-x", Count: 1, Cnonce: "abc123"})
	if err != nil {
		t.Fatal(err)
	}
	req = forwardedRegister(t, addr, local, "fw-ok", 2, "Authorization: "+cred.String()+"\r\n")
	if err := m.Sign(req, "twin-b", claim); err != nil {
		t.Fatal(err)
	}
	if res := send(req); res.StatusCode != 200 {
		t.Fatalf("REGISTER with credentials answered %s, want 200", res.StartLine())
	}
	var found bool
	for _, b := range p.loc.All() {
		if b.Contact == "sip:100@192.0.2.50:5062" {
			found = true
			if b.Source != claim {
				t.Errorf("binding source = %q, want the phone's own %q", b.Source, claim)
			}
		}
	}
	if !found {
		t.Fatalf("no binding for the phone: %+v", p.loc.All())
	}
}

func TestParseOrigin(t *testing.T) {
	for _, tt := range []struct {
		claim, want string
		ok          bool
	}{
		{"udp:192.0.2.50:5062", "udp:192.0.2.50:5062", true},
		{"tcp:[2001:db8::1]:5060", "tcp:[2001:db8::1]:5060", true},
		{"tls:[::ffff:192.0.2.1]:5061", "tls:192.0.2.1:5061", true},
		{"", "", false},
		{"udp:192.0.2.50", "", false},
		{"udp:192.0.2.50:0", "", false},
		{"sctp:192.0.2.50:5060", "", false},
		{"udp:pbx.example:5060", "", false},
		{"udp:[fe80::1%eth0]:5060", "", false},
	} {
		got, err := parseOrigin(tt.claim)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseOrigin(%q) = %q, %v; want %q, ok %v", tt.claim, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzParseOrigin: no claim panics, and what is accepted is accepted
// again as it was returned.
func FuzzParseOrigin(f *testing.F) {
	for _, s := range []string{"udp:192.0.2.50:5062", "tcp:[2001:db8::1]:5060", "x", "udp:[::ffff:1.2.3.4]:1", "tls::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, claim string) {
		o, err := parseOrigin(claim)
		if err != nil {
			return
		}
		if again, err := parseOrigin(o); err != nil || again != o {
			t.Fatalf("parseOrigin(%q) = %q, then %q, %v", claim, o, again, err)
		}
	})
}
