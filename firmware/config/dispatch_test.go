package config

import (
	"bytes"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
)

const dispatchBase = `node: {name: lb}
sip: {listen: ["udp:10.77.0.5:5060"]}
dispatcher:
  algorithm: round-robin
  backends:
    - {uri: "sip:10.77.0.11:5060", weight: 2}
    - {uri: "10.77.0.12:5070"}
    - {uri: "10.77.0.13"}
`

func TestDispatcherValidate(t *testing.T) {
	tests := []struct {
		name  string
		extra string // appended under dispatcher:
		edit  func(string) string
		want  string // substring of the error; empty: valid
	}{
		{name: "valid"},
		{name: "all settings", extra: "  probe_interval: 2s\n  down_after: 3\n  up_after: 1\n  tx_timeout: 1500ms\n"},
		{name: "kamailio number", edit: func(s string) string { return strings.Replace(s, "round-robin", `"3"`, 1) }},
		{name: "default algorithm", edit: func(s string) string { return strings.Replace(s, "  algorithm: round-robin\n", "", 1) }},
		{name: "unknown algorithm", edit: func(s string) string { return strings.Replace(s, "round-robin", "random", 1) }, want: `dispatcher.algorithm: unknown algorithm "random"`},
		{name: "no backends", edit: func(s string) string { return s[:strings.Index(s, "  backends:")] + "  backends: []\n" }, want: "dispatcher.backends: missing"},
		{name: "host name", edit: func(s string) string { return strings.Replace(s, "10.77.0.13", "pbx3.example", 1) }},
		{name: "host name and port", edit: func(s string) string { return strings.Replace(s, "10.77.0.13", "sip:pbx3.example:5070", 1) }},
		{name: "srv name", edit: func(s string) string { return strings.Replace(s, "10.77.0.13", "_sip._udp.pbxes.example", 1) }},
		{name: "bad name", edit: func(s string) string { return strings.Replace(s, "10.77.0.13", "pbx_3.example", 1) }, want: "dispatcher.backends[2].uri: \"pbx_3.example\" is neither"},
		{name: "name twice", edit: func(s string) string {
			return strings.Replace(strings.Replace(s, "10.77.0.13", "PBX3.example:5060", 1), "10.77.0.12:5070", "pbx3.example:5060", 1)
		}, want: "dispatcher.backends[2].uri: pbx3.example:5060 is listed twice"},
		{name: "attempts", extra: "  attempts: 1\n"},
		{name: "attempts too many", extra: "  attempts: 11\n", want: "dispatcher.attempts: 11"},
		{name: "attempts negative", extra: "  attempts: -1\n", want: "dispatcher.attempts: -1"},
		{name: "user part", edit: func(s string) string { return strings.Replace(s, "sip:10.77.0.11:5060", "sip:x@10.77.0.11", 1) }, want: "dispatcher.backends[0].uri"},
		{name: "twice", edit: func(s string) string { return strings.Replace(s, "10.77.0.13", "10.77.0.12:5070", 1) }, want: "dispatcher.backends[2].uri: 10.77.0.12:5070 is listed twice"},
		{name: "same as default port", edit: func(s string) string { return strings.Replace(s, "10.77.0.13", "sip:10.77.0.11", 1) }, want: "listed twice"},
		{name: "weight", edit: func(s string) string { return strings.Replace(s, "weight: 2", "weight: -1", 1) }, want: "dispatcher.backends[0].weight"},
		{name: "probe too fast", extra: "  probe_interval: 1ms\n", want: "dispatcher.probe_interval: 1ms is outside"},
		{name: "timeout too long", extra: "  tx_timeout: 5m\n", want: "dispatcher.tx_timeout"},
		{name: "down_after", extra: "  down_after: 1000\n", want: "dispatcher.down_after: 1000"},
		{name: "tcp and tls listeners", edit: func(s string) string {
			return strings.Replace(s, `"udp:10.77.0.5:5060"`, `"udp:10.77.0.5:5060", "tcp:10.77.0.5:5060", "tls:10.77.0.5:5061"`, 1)
		}},
		{name: "tcp listener alone", edit: func(s string) string {
			return strings.Replace(s, `"udp:10.77.0.5:5060"`, `"tcp:10.77.0.5:5060"`, 1)
		}, want: "sip.listen: the dispatcher needs a udp listener too"},
		{name: "tcp limits", extra: "  tcp_max_connections: 500\n  tcp_max_per_source: 50\n  tcp_idle_timeout: 30s\n"},
		{name: "tcp max negative", extra: "  tcp_max_connections: -1\n", want: "dispatcher.tcp_max_connections: -1"},
		{name: "tcp per source above max", extra: "  tcp_max_connections: 10\n  tcp_max_per_source: 20\n", want: "dispatcher.tcp_max_per_source: 20 is more than"},
		{name: "tcp and tls backends", extra: "  tls_ca: /data/ca.pem\n  backend_connections: 4\n", edit: func(s string) string {
			return strings.Replace(strings.Replace(s, "10.77.0.13", "tls:10.77.0.13", 1), "10.77.0.12:5070", "_sip._tcp.pbxes.example", 1)
		}},
		{name: "tls_ca relative", extra: "  tls_ca: ca.pem\n", edit: func(s string) string { return strings.Replace(s, "10.77.0.13", "tls:10.77.0.13", 1) }, want: "dispatcher.tls_ca: \"ca.pem\": want an absolute path"},
		{name: "same address over two transports", edit: func(s string) string { return strings.Replace(s, "10.77.0.13", "tcp:10.77.0.12:5070", 1) }, want: "dispatcher.backends[2].uri: 10.77.0.12:5070 is listed twice"},
		{name: "tls_ca for phones over tls", extra: "  tls_ca: /data/ca.pem\n", edit: func(s string) string {
			return strings.Replace(s, `["udp:10.77.0.5:5060"]`, `["udp:10.77.0.5:5060", "tls:10.77.0.5:5061"]`, 1)
		}},
		{name: "tls_ca without a tls backend", extra: "  tls_ca: /data/ca.pem\n", want: "dispatcher.tls_ca: only for backends over tls"},
		{name: "backend connections too many", extra: "  backend_connections: 17\n", want: "dispatcher.backend_connections: 17: want 1 to 16"},
		{name: "tcp idle too short", extra: "  tcp_idle_timeout: 10ms\n", want: "dispatcher.tcp_idle_timeout: 10ms is outside"},
		{name: "pbx still needs rtp ports", edit: func(s string) string { return s[:strings.Index(s, "dispatcher:")] }, want: "sip.rtp_ports: missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := dispatchBase + tc.extra
			if tc.edit != nil {
				text = tc.edit(text)
			}
			checkText(t, "lb.yaml", text, tc.want)
		})
	}
}

func TestDispatcherBackendTarget(t *testing.T) {
	for _, tc := range []struct {
		uri, addr, name string // both empty: refused
		tr              string // "": udp
	}{
		{uri: "sip:10.0.0.1:5070", addr: "10.0.0.1:5070"},
		{uri: "10.0.0.1", addr: "10.0.0.1:5060"},
		{uri: "pbx1.branch.example:5060", name: "pbx1.branch.example:5060"},
		{uri: "sip:PBX1.branch.example:5062", name: "pbx1.branch.example:5062"},
		{uri: "pbx1.branch.example", name: "pbx1.branch.example"},
		{uri: "_sip._udp.pbxes.branch.example", name: "_sip._udp.pbxes.branch.example"},
		{uri: "sip:_SIP._UDP.pbxes.example", name: "_sip._udp.pbxes.example"},
		{uri: "pbx1:5060", name: "pbx1:5060"},
		{uri: "tcp:10.0.0.1:5070", addr: "10.0.0.1:5070", tr: "tcp"},
		{uri: "TCP:10.0.0.1", addr: "10.0.0.1:5060", tr: "tcp"},
		{uri: "tls:10.0.0.1", addr: "10.0.0.1:5061", tr: "tls"},
		{uri: "tls:[2001:db8::1]", addr: "[2001:db8::1]:5061", tr: "tls"},
		{uri: "tls:sip:10.0.0.1:5062", addr: "10.0.0.1:5062", tr: "tls"},
		{uri: "udp:10.0.0.1", addr: "10.0.0.1:5060"},
		{uri: "tcp:pbx1.example:5060", name: "pbx1.example:5060", tr: "tcp"},
		{uri: "tls:pbx1.example", name: "pbx1.example", tr: "tls"},
		{uri: "_sip._tcp.pbxes.example", name: "_sip._tcp.pbxes.example", tr: "tcp"},
		{uri: "_SIPS._TCP.pbxes.example", name: "_sips._tcp.pbxes.example", tr: "tls"},
		{uri: "tls:_sips._tcp.pbxes.example", name: "_sips._tcp.pbxes.example", tr: "tls"},
		{uri: "tcp:_sips._tcp.pbxes.example"},
		{uri: "udp:_sip._tcp.pbxes.example"},
		{uri: "_sips._udp.pbxes.example"},
		{uri: "tcp:"},
		{uri: "sctp:10.0.0.1"},
		{uri: "pbx1"},
		{uri: "_sip._udp.pbxes.example:5060"},
		{uri: "_sip._tcp.pbxes.example:5060"},
		{uri: "pbx1.example:0"},
		{uri: "pbx1.example:70000"},
		{uri: "pbx1.example;transport=tcp"},
		{uri: "alice@pbx1.example"},
		{uri: "-pbx.example"},
		{uri: "10.0.0.1:99999"},
		{uri: ""},
	} {
		b := DispatcherBackend{URI: tc.uri}
		ap, name, err := b.Target()
		want := tc.tr
		if want == "" {
			want = "udp"
		}
		switch {
		case tc.addr == "" && tc.name == "":
			if err == nil {
				t.Errorf("%q: accepted as %s %q", tc.uri, ap, name)
			}
			if tr := b.Transport(); tr != "" {
				t.Errorf("%q: refused, but its transport is %q", tc.uri, tr)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.uri, err)
		case tc.addr != "" && ap != netip.MustParseAddrPort(tc.addr), name != tc.name:
			t.Errorf("%q: %s %q, want %s %q", tc.uri, ap, name, tc.addr, tc.name)
		case b.Transport() != want:
			t.Errorf("%q: transport %q, want %q", tc.uri, b.Transport(), want)
		}
	}
}

func FuzzDispatcherBackendTarget(f *testing.F) {
	for _, s := range []string{"sip:10.0.0.1:5070", "pbx1.example:5060", "_sip._udp.pbxes.example", "sip:[::1]:5060", "a..b", "x:",
		"tls:10.0.0.1", "tcp:pbx.example:5060", "_sips._tcp.pbxes.example", "tls:_sips._tcp.x.example", "tcp:tls:1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		b := DispatcherBackend{URI: uri}
		ap, name, err := b.Target()
		if err != nil {
			if tr := b.Transport(); tr != "" {
				t.Fatalf("%q: refused (%v) but transport %q", uri, err, tr)
			}
			return
		}
		tr := b.Transport()
		if tr != "udp" && tr != "tcp" && tr != "tls" {
			t.Fatalf("%q: transport %q", uri, tr)
		}
		if ap.IsValid() == (name != "") {
			t.Fatalf("%q: address %s and name %q", uri, ap, name)
		}
		if name != "" {
			// The name, with the transport before it, is itself a
			// backend URI that means the same.
			back := DispatcherBackend{URI: tr + ":" + name}
			if ap2, name2, err := back.Target(); err != nil || ap2.IsValid() || name2 != name || back.Transport() != tr {
				t.Fatalf("%q: name %q reads back as %s %q %q %v", uri, name, ap2, name2, back.Transport(), err)
			}
		}
	})
}

func TestDispatcherBackendAddr(t *testing.T) {
	for _, tc := range []struct {
		uri, want string
	}{
		{"sip:10.0.0.1:5070", "10.0.0.1:5070"},
		{"SIP:10.0.0.1", "10.0.0.1:5060"},
		{"10.0.0.1", "10.0.0.1:5060"},
		{" 10.0.0.1:5080 ", "10.0.0.1:5080"},
		{"[::1]:5062", "[::1]:5062"},
		{"sip:[fd00::5]", "[fd00::5]:5060"},
		{"fd00::5", "[fd00::5]:5060"},
		{"10.0.0.1:0", ""},
		{"10.0.0.1:99999", ""},
		{"pbx.example:5060", ""},
		{"sip:10.0.0.1;transport=tcp", ""},
		{"", ""},
	} {
		got, err := DispatcherBackend{URI: tc.uri}.AddrPort()
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%q: accepted as %s", tc.uri, got)
		case tc.want != "" && (err != nil || got != netip.MustParseAddrPort(tc.want)):
			t.Errorf("%q: %s, %v; want %s", tc.uri, got, err, tc.want)
		}
	}
}

// TestDispatcherDocExample: the example of docs/DISPATCHER.md is a valid
// config.
func TestDispatcherDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/DISPATCHER.md")
	if err != nil {
		t.Fatal(err)
	}
	ms := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(ms) < 2 {
		t.Fatal("docs/DISPATCHER.md has not its two YAML examples (addresses, names)")
	}
	// The first two: backends by address, backends by name.
	for i, m := range ms[:2] {
		c, err := Parse("DISPATCHER.md example", m[1])
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Fatalf("example %d: %v", i, err)
		}
		if c.Dispatcher == nil || len(c.Dispatcher.Backends) != 3 {
			t.Fatalf("example %d has no dispatcher with three backends: %+v", i, c.Dispatcher)
		}
		names := 0
		for _, b := range c.Dispatcher.Backends {
			if _, name, _ := b.Target(); name != "" {
				names++
			}
		}
		if want := []int{0, 3}[i]; names != want {
			t.Errorf("example %d has %d backends by name, want %d", i, names, want)
		}
	}
	// The one with TCP and TLS listeners.
	for _, m := range ms {
		if !bytes.Contains(m[1], []byte(`"tcp:`)) {
			continue
		}
		c, err := Parse("DISPATCHER.md example", m[1])
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Fatalf("the TCP example: %v", err)
		}
		return
	}
	t.Error("docs/DISPATCHER.md has no example with a tcp listener")
}
