package location

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestParseSource(t *testing.T) {
	tests := []struct {
		in      string
		tp, hp  string
		wantErr bool
	}{
		{in: "udp:203.0.113.7:40211", tp: "UDP", hp: "203.0.113.7:40211"},
		{in: "TCP:[2001:db8::1]:5060", tp: "TCP", hp: "[2001:db8::1]:5060"},
		{in: "tls:1.2.3.4:5061", tp: "TLS", hp: "1.2.3.4:5061"},
		{in: "sctp:1.2.3.4:5061", wantErr: true},
		{in: "udp:1.2.3.4", wantErr: true},
		{in: "udp:1.2.3.4:0", wantErr: true},
		{in: "udp:1.2.3.4:65536", wantErr: true},
		{in: "udp::5060", wantErr: true},
		{in: "1.2.3.4:5060", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		tp, hp, err := ParseSource(tt.in)
		if (err != nil) != tt.wantErr || tp != tt.tp || hp != tt.hp {
			t.Errorf("ParseSource(%q) = %q, %q, %v", tt.in, tp, hp, err)
		}
	}
}

func FuzzParseSource(f *testing.F) {
	for _, s := range []string{"udp:1.2.3.4:5060", "TLS:[2001:db8::1]:5061", "tcp:[::1]:5", "udp:", ":::",
		"udp:h:99999", "tcp:host", "sctp:1.2.3.4:5", "udp::5060", "udp:1.2.3.4:0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tp, hp, err := ParseSource(src)
		if err != nil {
			return
		}
		if tp != "UDP" && tp != "TCP" && tp != "TLS" {
			t.Fatalf("%q: transport %q", src, tp)
		}
		if !strings.HasSuffix(src, hp) {
			t.Fatalf("%q: address %q is not its tail", src, hp)
		}
		if _, _, err := sip.ParseAddr(hp); err != nil {
			t.Errorf("%q gave an unusable address %q: %v", src, hp, err)
		}
	})
}
