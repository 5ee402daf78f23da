package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// dtlsPhone makes a baresip phone offer and accept only DTLS-SRTP
// (RFC 5763/5764: UDP/TLS/RTP/SAVP with a=fingerprint and a=setup); the
// keys come from a DTLS handshake with the other phone on the media path.
func dtlsPhone(ext config.Extension, registrar string) phoneOpt {
	return func(cfg, account *string) {
		*cfg += "module dtls_srtp.so\n"
		*account = fmt.Sprintf("%q <sip:%s@%s;transport=udp>;auth_pass=%s;regint=300;answermode=auto;mediaenc=dtls_srtp\n",
			ext.Name, ext.Number, registrar, ext.Secret)
	}
}

// TestBaresipDTLSSRTP: two real phones call each other through the PBX
// with DTLS-SRTP. The relay does not terminate DTLS: the handshake runs
// between the phones through the relay ports, and each must hear the
// other's tone, so the fingerprints and setup roles reached the other
// phone intact and the relay passed the DTLS and SRTP packets untouched.
func TestBaresipDTLSSRTP(t *testing.T) {
	needTools(t, "baresip")
	if _, err := os.Stat("/usr/lib/baresip/modules/dtls_srtp.so"); err != nil {
		t.Skip("baresip's dtls_srtp module is not installed")
	}
	p := startPBX(t, alice, bob)
	a := startPhone(t, alice, p.addr(), 1000, dtlsPhone(alice, p.addr()))
	b := startPhone(t, bob, p.addr(), 600, dtlsPhone(bob, p.addr()))
	a.waitRegistered(10 * time.Second)
	b.waitRegistered(10 * time.Second)
	talk(t, a, b, fmt.Sprintf("sip:%s@%s", bob.Number, p.addr()), 1000, 600, 3*time.Second)
	// Each phone checked the other's certificate against the
	// fingerprint in the SDP it got, and keyed SRTP from the handshake.
	for _, ph := range []*phone{a, b} {
		out := ph.out.String()
		for _, want := range []string{"verified SHA-256 fingerprint OK", "DTLS-SRTP complete (audio/RTP)"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: baresip did not say %q:\n%s", ph.name, want, lastLines(out, 40))
			}
		}
	}
}
