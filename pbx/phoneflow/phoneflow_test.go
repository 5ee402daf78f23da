package phoneflow

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// reconnectRequest builds a request to uri over transport, sent to dest, with an
// optional first Route.
func reconnectRequest(t testing.TB, transport, uri, dest, route string) *sip.Request {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		t.Fatalf("parsing %q: %v", uri, err)
	}
	req := sip.NewRequest(sip.INVITE, u)
	if route != "" {
		var r sip.Uri
		if err := sip.ParseUri(route, &r); err != nil {
			t.Fatalf("parsing %q: %v", route, err)
		}
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	req.SetTransport(transport)
	req.SetDestination(dest)
	return req
}

func TestTarget(t *testing.T) {
	tests := []struct {
		name, transport, uri, dest, route string
		wantTransport, wantDest           string // empty: not changed
	}{
		{"UDP is left alone", "UDP", "sip:200@10.0.0.5:5070", "10.0.0.5:40000", "", "", ""},
		{"TCP to the Contact's port", "TCP", "sip:200@10.0.0.5:5070", "10.0.0.5:40000", "", "TCP", "10.0.0.5:5070"},
		{"the Contact says tcp", "TCP", "sip:200@10.0.0.5:5070;transport=tcp", "10.0.0.5:40000", "", "TCP", "10.0.0.5:5070"},
		{"no port: 5060", "TCP", "sip:200@10.0.0.5", "10.0.0.5:40000", "", "TCP", "10.0.0.5:5060"},
		{"TLS, no port: 5061", "TLS", "sip:200@10.0.0.5;transport=tls", "10.0.0.5:40000", "", "TLS", "10.0.0.5:5061"},
		{"sips: TLS", "TCP", "sips:200@10.0.0.5", "10.0.0.5:40000", "", "TLS", "10.0.0.5:5061"},
		{"the Contact says udp", "TCP", "sip:200@10.0.0.5:5070;transport=udp", "10.0.0.5:40000", "", "UDP", "10.0.0.5:5070"},
		{"transport in upper case", "tcp", "sip:200@10.0.0.5:5070;transport=TLS", "10.0.0.5:40000", "", "TLS", "10.0.0.5:5070"},
		{"IPv6", "TCP", "sip:200@[2001:db8::5]:5070", "[2001:db8::5]:40000", "", "TCP", "[2001:db8::5]:5070"},
		{"IPv4 in IPv6", "TCP", "sip:200@[::ffff:10.0.0.5]:5070", "10.0.0.5:40000", "", "TCP", "10.0.0.5:5070"},
		{"the first Route", "TCP", "sip:200@10.0.0.5:5070", "10.0.0.9:40000", "sip:10.0.0.9:5080;lr", "TCP", "10.0.0.9:5080"},
		{"already there", "TCP", "sip:200@10.0.0.5:5070", "10.0.0.5:5070", "", "", ""},
		{"a host name", "TCP", "sip:200@phone.example:5070", "10.0.0.5:40000", "", "", ""},
		{"unspecified address", "TCP", "sip:200@0.0.0.0:5070", "10.0.0.5:40000", "", "", ""},
		{"unknown transport", "TCP", "sip:200@10.0.0.5:5070;transport=sctp", "10.0.0.5:40000", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := reconnectRequest(t, tt.transport, tt.uri, tt.dest, tt.route)
			tr, dest, ok := target(req)
			if tt.wantDest == "" {
				if ok {
					t.Fatalf("changed to %s %s, want unchanged", tr, dest)
				}
				return
			}
			if !ok || tr != tt.wantTransport || dest.String() != tt.wantDest {
				t.Fatalf("got %s %s (ok %v), want %s %s", tr, dest, ok, tt.wantTransport, tt.wantDest)
			}
		})
	}
}

func FuzzTarget(f *testing.F) {
	f.Add("TCP", "sip:200@10.0.0.5:5070;transport=tcp", "10.0.0.5:40000", "")
	f.Add("TLS", "sips:200@[2001:db8::5]", "[2001:db8::5]:1", "sip:10.0.0.9;lr")
	f.Add("TCP", "sip:200@10.0.0.5:99999", "x", "sip:[::]:0")
	f.Fuzz(func(t *testing.T, transport, uri, dest, route string) {
		var u sip.Uri
		if sip.ParseUri(uri, &u) != nil {
			return
		}
		req := sip.NewRequest(sip.INVITE, u)
		var r sip.Uri
		if route != "" && sip.ParseUri(route, &r) == nil {
			req.AppendHeader(&sip.RouteHeader{Address: r})
		}
		req.SetTransport(transport)
		req.SetDestination(dest)
		tr, got, ok := target(req)
		if !ok {
			return
		}
		if tr != "UDP" && tr != "TCP" && tr != "TLS" {
			t.Fatalf("transport %q", tr)
		}
		if !got.IsValid() || got.Addr().IsUnspecified() || got.Port() == 0 && u.Port != 0 {
			t.Fatalf("destination %v from %q", got, uri)
		}
		if _, err := netip.ParseAddrPort(got.String()); err != nil {
			t.Fatalf("destination %v does not parse back: %v", got, err)
		}
	})
}
