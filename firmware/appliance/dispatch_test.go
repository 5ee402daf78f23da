package appliance

import (
	"net/netip"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/dispatch"
)

func TestDispatchConfig(t *testing.T) {
	cfg, err := config.Parse("lb.yaml", []byte(`node: {name: lb}
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
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := dispatchConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
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
