package site

import (
	"net"
	"slices"
	"testing"

	"github.com/hashicorp/memberlist"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/location"
)

func TestSIPAddress(t *testing.T) {
	tests := []struct {
		listen []string
		want   string
	}{
		{[]string{"udp:10.80.0.11:5060"}, "udp:10.80.0.11:5060"},
		{[]string{"udp:0.0.0.0:5070"}, "udp:10.80.0.1:5070"},
		{[]string{"tcp:10.80.0.11:5060", "udp:[::]:5060"}, "udp:10.80.0.1:5060"},
		{[]string{"udp:pbx.example:5060"}, "udp:10.80.0.1:5060"},
		{[]string{"tcp:10.80.0.11:5060"}, ""},
		{[]string{"garbage"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := SIPAddress(tt.listen, "10.80.0.1"); got != tt.want {
			t.Errorf("SIPAddress(%q) = %q, want %q", tt.listen, got, tt.want)
		}
	}
}

// viewSite is a Site with only a gossip view, for Route and memberIPs.
func viewSite(forward string, members ...member) *Site {
	s := &Site{name: "box3", cfg: config.Site{Forward: forward}, view: map[string]member{}}
	for _, m := range members {
		s.view[m.name] = m
	}
	return s
}

func TestRoute(t *testing.T) {
	box1 := member{name: "box1", alive: true, node: memberlist.Node{Addr: net.ParseIP("10.80.0.11")},
		meta: meta{SIP: "udp:10.80.0.21:5060"}}
	dead := box1
	dead.alive = false
	noSIP := box1
	noSIP.meta.SIP = ""
	tests := []struct {
		name    string
		s       *Site
		holder  string
		want    string
		wantOK  bool
		wantIPs []string
	}{
		{"alive holder", viewSite(config.SiteForwardAlways, box1), "box1", "udp:10.80.0.21:5060", true, []string{"10.80.0.11", "10.80.0.21"}},
		{"forwarding off", viewSite(config.SiteForwardNever, box1), "box1", "", false, []string{"10.80.0.11", "10.80.0.21"}},
		{"holder gone", viewSite(config.SiteForwardAlways, dead), "box1", "", false, nil},
		{"holder takes no forwarded calls", viewSite(config.SiteForwardAlways, noSIP), "box1", "", false, []string{"10.80.0.11"}},
		{"unknown holder", viewSite(config.SiteForwardAlways, box1), "box7", "", false, nil},
		{"own binding", viewSite(config.SiteForwardAlways, box1), "", "", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.s.Route(location.Binding{AOR: "101", Contact: "sip:101@192.168.1.5", Holder: tt.holder})
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Route = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
			var ips []string
			for _, ip := range tt.s.memberIPs(tt.holder) {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("memberIPs = %v, want %v", ips, tt.wantIPs)
			}
		})
	}
}
