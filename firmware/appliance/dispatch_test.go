package appliance

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/dispatch"
)

func TestDispatchConfig(t *testing.T) {
	got := dispatchFrom(t, `node: {name: lb}
sip: {listen: ["udp:127.0.0.1:5090"], advertise: lb.example}
dispatcher:
  algorithm: "4"
  backends:
    - {uri: "sip:127.0.0.1:5091", weight: 3}
    - {uri: "127.0.0.1:5092"}
  probe_interval: 250ms
  down_after: 1
  up_after: 3
  tx_timeout: 2s
`, nil)
	want := dispatch.Config{
		Algorithm: dispatch.RoundRobin,
		Backends: []dispatch.Backend{
			{Addr: netip.MustParseAddrPort("127.0.0.1:5091"), Weight: 3},
			{Addr: netip.MustParseAddrPort("127.0.0.1:5092")},
		},
		Listen:        []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5090")},
		Advertise:     "lb.example",
		ProbeInterval: 250 * time.Millisecond,
		DownAfter:     1,
		UpAfter:       3,
		TxTimeout:     2 * time.Second,
	}
	if got.Algorithm != want.Algorithm || len(got.Backends) != 2 || got.Backends[0] != want.Backends[0] || got.Backends[1] != want.Backends[1] ||
		len(got.Listen) != 1 || got.Listen[0] != want.Listen[0] || got.Advertise != want.Advertise ||
		got.ProbeInterval != want.ProbeInterval || got.DownAfter != 1 || got.UpAfter != 3 || got.TxTimeout != want.TxTimeout {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// TestDispatchConfigStreams: tcp and tls entries of sip.listen become the
// dispatcher's stream listeners, the tls ones with the box's derived
// certificate, and the connection limits pass through.
func TestDispatchConfigStreams(t *testing.T) {
	got := dispatchFrom(t, `node: {name: lb}
sip: {listen: ["udp:127.0.0.1:5090", "tcp:127.0.0.1:5090", "tls:127.0.0.1:5091"]}
dispatcher:
  backends: [{uri: "127.0.0.1:5092"}]
  tcp_max_connections: 50
  tcp_max_per_source: 5
  tcp_idle_timeout: 30s
`, []byte("a seed of the box, thirty-two bytes or more"))
	if len(got.Listen) != 1 || len(got.StreamListen) != 2 ||
		got.StreamListen[0].Addr != netip.MustParseAddrPort("127.0.0.1:5090") || got.StreamListen[0].TLS != nil ||
		got.StreamListen[1].Addr != netip.MustParseAddrPort("127.0.0.1:5091") || got.StreamListen[1].TLS == nil ||
		len(got.StreamListen[1].TLS.Certificates) != 1 {
		t.Fatalf("listeners %v, stream listeners %+v", got.Listen, got.StreamListen)
	}
	if got.MaxConns != 50 || got.MaxConnsPerSource != 5 || got.IdleTimeout != 30*time.Second {
		t.Errorf("limits %d, %d, %s", got.MaxConns, got.MaxConnsPerSource, got.IdleTimeout)
	}
}

// TestDispatchingImportConfig: a dispatcher stores an imported config as
// a new version that needs a restart, takes the same one again as no
// change, and refuses a broken one.
func TestDispatchingImportConfig(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const base = "node: {name: lb}\nsip: {listen: [\"udp:127.0.0.1:5090\"]}\ndispatcher:\n  backends: [{uri: \"127.0.0.1:5091\"}]\n"
	first, err := config.Parse("lb.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if first, err = boxconfig.Save(st, first); err != nil {
		t.Fatal(err)
	}
	a := &dispatching{configured: configured{st: st, cfg: first}}
	for _, tc := range []struct {
		name        string
		text        string
		wantVersion uint64
		wantRestart bool
		wantErr     bool
	}{
		{"same", base, first.Version, false, false},
		{"changed", base + "  algorithm: round-robin\n", first.Version + 1, true, false},
		{"broken", base + "  algorithm: random\n", 0, false, true},
	} {
		ver, restart, err := a.ImportConfig([]byte(tc.text))
		if (err != nil) != tc.wantErr || ver != tc.wantVersion || restart != tc.wantRestart {
			t.Errorf("%s: version %d restart %v err %v; want %d %v error %v", tc.name, ver, restart, err, tc.wantVersion, tc.wantRestart, tc.wantErr)
		}
	}
	out, err := a.ExportConfig()
	if err != nil || !strings.Contains(string(out), "round-robin") {
		t.Errorf("export after the import: %v\n%s", err, out)
	}
}

// TestDispatchConfigNames: backends by DNS name pass as names, with the
// box's DNS servers for their resolver, and attempts passes on.
func TestDispatchConfigNames(t *testing.T) {
	got := dispatchFrom(t, `node: {name: lb, network: {address: 192.0.2.5/24, gateway: 192.0.2.1, dns: [192.0.2.53]}}
sip: {listen: ["udp:127.0.0.1:5090"]}
dispatcher:
  backends:
    - {uri: "127.0.0.1:5091"}
    - {uri: "sip:PBX1.example:5070", weight: 2}
    - {uri: "_sip._udp.pbxes.example"}
  attempts: 2
`, nil)
	want := []dispatch.Backend{
		{Addr: netip.MustParseAddrPort("127.0.0.1:5091")},
		{Name: "pbx1.example:5070", Weight: 2},
		{Name: "_sip._udp.pbxes.example"},
	}
	if len(got.Backends) != len(want) {
		t.Fatalf("backends %+v, want %+v", got.Backends, want)
	}
	for i := range want {
		if got.Backends[i] != want[i] {
			t.Errorf("backend %d: %+v, want %+v", i, got.Backends[i], want[i])
		}
	}
	if got.Attempts != 2 || got.Resolver == nil {
		t.Errorf("attempts %d, resolver %v: want 2 and a resolver for node.network.dns", got.Attempts, got.Resolver)
	}
}

// dispatchFrom parses and validates the config text and converts it, with
// the box's seed, as the appliance does.
func dispatchFrom(t *testing.T, text string, seed []byte) dispatch.Config {
	t.Helper()
	cfg, err := config.Parse("lb.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := dispatchConfig(cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
