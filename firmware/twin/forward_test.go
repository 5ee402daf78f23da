package twin

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/cluster/heartbeat"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/dispatch"
	"github.com/twinpbx/twinpbx/pbx/sipmark"
)

func TestForwardWait(t *testing.T) {
	beat := func(role heartbeat.Role, flags heartbeat.Flags) heartbeat.Received {
		return heartbeat.Received{Node: "b", Beat: heartbeat.Beat{Role: role, Flags: flags}}
	}
	tests := []struct {
		name    string
		serving bool
		twin    heartbeat.PeerView
		want    time.Duration
	}{
		{"this box serves", true, heartbeat.PeerView{}, 0},
		{"this box serves, twin silent", true, heartbeat.PeerView{Heard: true, Silent: true}, 0},
		{"twin active", false, heartbeat.PeerView{Heard: true, Latest: beat(heartbeat.RoleActive, 0)}, 0},
		{"twin never heard", false, heartbeat.PeerView{}, ForwardRetryAfter},
		{"twin silent (it died)", false, heartbeat.PeerView{Heard: true, Silent: true, Latest: beat(heartbeat.RoleActive, 0)}, ForwardRetryAfter},
		{"twin standby too", false, heartbeat.PeerView{Heard: true, Latest: beat(heartbeat.RoleStandby, 0)}, ForwardRetryAfter},
		{"twin leaving", false, heartbeat.PeerView{Heard: true, Latest: beat(heartbeat.RoleActive, heartbeat.Goodbye)}, ForwardRetryAfter},
		{"twin fenced", false, heartbeat.PeerView{Heard: true, Latest: beat(heartbeat.RoleFenced, 0)}, ForwardRetryAfter},
	}
	for _, tt := range tests {
		if got := forwardWait(tt.serving, tt.twin); got != tt.want {
			t.Errorf("%s: forwardWait = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// twinBox is box name's config of a pair on 192.0.2.0/24 (LAN) and
// 10.9.0.0/30 (crossover).
func twinBox(name string) *config.Config {
	lan := map[string]string{"a": "192.0.2.11", "b": "192.0.2.12"}
	xo := map[string]string{"a": "10.9.0.1", "b": "10.9.0.2"}
	peer := map[string]string{"a": "b", "b": "a"}[name]
	return &config.Config{
		Node: config.Node{Name: name},
		SIP:  config.SIP{Listen: []string{"udp:192.0.2.10:5060", "tcp:192.0.2.10:5070"}},
		Cluster: &config.Cluster{Peer: peer, PairingKey: "forward-test-pairing-key-0123",
			LAN:       config.Path{Local: lan[name], Peer: lan[peer]},
			Crossover: config.Path{Local: xo[name], Peer: xo[peer]},
			VIP:       "192.0.2.10/24"},
	}
}

func TestForwarderConfig(t *testing.T) {
	tests := []struct {
		name    string
		listen  []string
		ok      bool
		udp     []string
		tcp     []string
		backend string
	}{
		{"udp and tcp", []string{"udp:192.0.2.10:5060", "tcp:192.0.2.10:5070"}, true,
			[]string{"192.0.2.11:5060"}, []string{"192.0.2.11:5070"}, "192.0.2.10:5060"},
		{"two udp ports: the first is the backend", []string{"udp:192.0.2.10:5080", "udp:192.0.2.10:5060"}, true,
			[]string{"192.0.2.11:5080", "192.0.2.11:5060"}, nil, "192.0.2.10:5080"},
		{"tls only: not forwarded", []string{"tls:192.0.2.10:5061"}, false, nil, nil, ""},
		{"tcp only: nothing to forward to", []string{"tcp:192.0.2.10:5060"}, false, nil, nil, ""},
		{"wildcard udp: the PBX holds the port", []string{"udp:0.0.0.0:5060", "tcp:192.0.2.10:5070"}, false, nil, nil, ""},
		{"wildcard tcp skipped", []string{"udp:192.0.2.10:5060", "tcp:0.0.0.0:5070"}, true,
			[]string{"192.0.2.11:5060"}, nil, "192.0.2.10:5060"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok, err := forwarderConfig(twinBox("a"), tt.listen)
			if err != nil || ok != tt.ok {
				t.Fatalf("forwarderConfig = ok %v, %v; want ok %v", ok, err, tt.ok)
			}
			if !ok {
				return
			}
			var udp, tcp []string
			for _, l := range cfg.Listen {
				udp = append(udp, l.String())
			}
			for _, l := range cfg.StreamListen {
				tcp = append(tcp, l.Addr.String())
			}
			if !slices.Equal(udp, tt.udp) || !slices.Equal(tcp, tt.tcp) {
				t.Errorf("listeners udp %v tcp %v, want %v %v", udp, tcp, tt.udp, tt.tcp)
			}
			if len(cfg.Backends) != 1 || cfg.Backends[0].Addr.String() != tt.backend {
				t.Errorf("backends %+v, want only %s", cfg.Backends, tt.backend)
			}
			if cfg.Attempts != 1 || !cfg.KeepUp || cfg.Server != "twinpbx/a" {
				t.Errorf("attempts %d server %q", cfg.Attempts, cfg.Server)
			}
			if _, err := dispatch.New(cfg); err != nil {
				t.Errorf("the dispatcher refuses it: %v", err)
			}
		})
	}
	if _, _, err := forwarderConfig(twinBox("a"), []string{"udp:nonsense"}); err == nil {
		t.Error("a bad listen entry was accepted")
	}
}

// TestMarkerBetweenTwins: a mark box b makes is taken by box a from b's
// LAN and crossover addresses, and from a's own addresses only as a's
// own mark; any other address or name is refused.
func TestMarkerBetweenTwins(t *testing.T) {
	ma, err := NewMarker(twinBox("a"))
	if err != nil {
		t.Fatal(err)
	}
	mb, err := NewMarker(twinBox("b"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		signer *sipmark.Marker
		sender string
		source string
		want   error
	}{
		{"twin over the LAN", mb, "b", "192.0.2.12:5060", nil},
		{"twin over the crossover", mb, "b", "10.9.0.2:5060", nil},
		{"own forwarder", ma, "a", "192.0.2.11:5060", nil},
		{"twin's name from this box's address", mb, "b", "192.0.2.11:5060", sipmark.ErrNotSender},
		{"a phone", mb, "b", "192.0.2.50:5062", sipmark.ErrNotSender},
		{"another name", mb, "c", "192.0.2.12:5060", sipmark.ErrNotSender},
	}
	for _, tt := range tests {
		req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "192.0.2.10"})
		req.AppendHeader(sip.NewHeader("From", "<sip:100@x>;tag=1"))
		req.AppendHeader(sip.NewHeader("To", "<sip:100@x>"))
		cid := sip.CallIDHeader("c1")
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.REGISTER})
		if err := tt.signer.Sign(req, tt.sender, "udp:192.0.2.50:5062"); err != nil {
			t.Fatal(err)
		}
		req.SetSource(tt.source)
		mk, err := ma.Verify(req)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
		}
		if err == nil && mk.Claim != "udp:192.0.2.50:5062" {
			t.Errorf("%s: claim %q", tt.name, mk.Claim)
		}
	}
	if _, err := NewMarker(&config.Config{}); err == nil {
		t.Error("a config without a cluster section gave a marker")
	}
	other := twinBox("b")
	other.Cluster.PairingKey = "another-pairing-key-0123456789"
	mo, err := NewMarker(other)
	if err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "192.0.2.10"})
	if err := mo.Sign(req, "b", "udp:192.0.2.50:5062"); err != nil {
		t.Fatal(err)
	}
	req.SetSource("192.0.2.12:5060")
	if _, err := ma.Verify(req); !errors.Is(err, sipmark.ErrBadMAC) {
		t.Errorf("a mark with another pairing key: %v, want %v", err, sipmark.ErrBadMAC)
	}
}
