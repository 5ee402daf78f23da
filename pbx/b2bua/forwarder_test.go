package b2bua

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/location"
)

func TestContactSource(t *testing.T) {
	tests := []struct {
		contact, want string // want "": not usable
	}{
		{"sip:100@10.0.0.5:5062", "tcp:10.0.0.5:5062"},
		{"sip:100@10.0.0.5:5062;transport=tcp", "tcp:10.0.0.5:5062"},
		{"sip:100@10.0.0.5;transport=TLS", "tls:10.0.0.5:5061"},
		{"sips:100@10.0.0.5", "tls:10.0.0.5:5061"},
		{"sip:100@10.0.0.5", "tcp:10.0.0.5:5060"},
		{"sip:100@10.0.0.5:5062;transport=udp", "udp:10.0.0.5:5062"},
		{"sip:100@[2001:db8::7]:5062", "tcp:[2001:db8::7]:5062"},
		{"sip:100@phone.example:5062", ""},
		{"sip:100@0.0.0.0:5062", ""},
		{"sip:100@10.0.0.5:5062;transport=sctp", ""},
		{"not a uri", ""},
	}
	for _, tt := range tests {
		got, ok := contactSource(tt.contact)
		if tt.want == "" {
			if ok {
				t.Errorf("contactSource(%q) = %q, want none", tt.contact, got)
			}
			continue
		}
		if !ok || got != tt.want {
			t.Errorf("contactSource(%q) = %q %v, want %q", tt.contact, got, ok, tt.want)
		}
	}
}

func FuzzContactSource(f *testing.F) {
	f.Add("sip:100@10.0.0.5:5062;transport=tcp")
	f.Add("sips:100@[2001:db8::7]")
	f.Add("sip:100@10.0.0.5:99999")
	f.Fuzz(func(t *testing.T, contact string) {
		src, ok := contactSource(contact)
		if !ok {
			return
		}
		if _, _, err := location.ParseSource(src); err != nil {
			t.Fatalf("contactSource(%q) = %q, which is no binding source: %v", contact, src, err)
		}
	})
}

// TestForwarderSilent: a TCP phone registered through the twin's
// forwarder (the binding's source) is rung at its Contact when the
// forwarder stays silent, as when the twin's box died; a forwarder that
// passes the call on is the only way the phone is rung.
func TestForwarderSilent(t *testing.T) {
	t.Run("silent forwarder: the Contact", func(t *testing.T) {
		dead, err := net.ListenPacket("udp", "127.0.0.1:0") // takes INVITEs, answers nothing
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = dead.Close() })
		fwd := "udp:" + dead.LocalAddr().String()
		e := newEnv(t, func(o *Options) { o.Forwarder = func(src string) bool { return src == fwd } })
		alice, bob := newPhone(t, e, "100", "answer"), newTCPPhone(t, e, "200", "answer")
		e.loc.put("200", location.Binding{Contact: bob.contact.String(), Source: fwd})
		if res := alice.dial("200", nil).result(); res.StatusCode != 200 {
			t.Fatalf("call through a silent forwarder: %d", res.StatusCode)
		}
		if inv := bob.wait(sip.INVITE, 1); inv.Via().Transport != "TCP" {
			t.Errorf("INVITE over %s, want TCP", inv.Via().Transport)
		}
		bob.wait(sip.ACK, 1)
		if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
			t.Errorf("BYE: %d", res.StatusCode)
		}
		bob.wait(sip.BYE, 1)
	})

	t.Run("forwarder answers: no second INVITE", func(t *testing.T) {
		var fwd atomic.Value // the forwarder's source, known once bob runs
		fwd.Store("")
		e := newEnv(t, func(o *Options) { o.Forwarder = func(src string) bool { return src == fwd.Load().(string) } })
		// bob on UDP stands for the forwarder that passes the call on.
		alice, bob := newPhone(t, e, "100", "answer"), newPhone(t, e, "200", "answer")
		fwd.Store("udp:" + bob.addr)
		e.loc.put("200", location.Binding{Contact: "sip:200@" + closedPort(t) + ";transport=tcp", Source: "udp:" + bob.addr})
		if res := alice.dial("200", nil).result(); res.StatusCode != 200 {
			t.Fatalf("call through a forwarder: %d", res.StatusCode)
		}
		// Ringing is over once the call is answered: no fallback can
		// start after it.
		if n := bob.count(sip.INVITE); n != 1 {
			t.Errorf("the phone got %d INVITEs, want 1", n)
		}
		if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
			t.Errorf("BYE: %d", res.StatusCode)
		}
	})
}
