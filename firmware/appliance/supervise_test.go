package appliance

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
)

const twinYAML = `node:
  name: a
sip:
  listen: ["udp:10.99.0.10:5060"]
  rtp_ports: "30000-30099"
extensions:
  - number: "100"
    name: A
    secret: alice-secret-1
cluster:
  peer: b
  pairing_key: test-pairing-key-0123456789
  crossover: {local: 10.98.0.1, peer: 10.98.0.2}
  lan: {local: 10.99.0.1, peer: 10.99.0.2}
  lan_interface: lan0
  vip: 10.99.0.10/24
  gateway: 10.99.0.254
  watchdog_timeout: 3s
`

func TestPlanSupervision(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	twinCfg := write("twin.yaml", twinYAML)
	boxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(boxDir, boxconfig.FileName), []byte(twinYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	twinData := t.TempDir()
	twinPlan := Supervision{Twin: true, LANInterface: "lan0", VIP: netip.MustParsePrefix("10.99.0.10/24"), WatchdogTimeout: 3 * time.Second}
	tests := []struct {
		name      string
		o         Options
		want      Supervision
		configErr bool
	}{
		{name: "first run, nothing stored", o: Options{DataDir: t.TempDir()}},
		{name: "twin config on the simulated board", o: Options{ConfigPath: twinCfg, DataDir: twinData}, want: twinPlan},
		{name: "twin from its box file", o: Options{DataDir: boxDir}, want: twinPlan},
		{name: "real board: no hosted watchdog", o: Options{ConfigPath: twinCfg, DataDir: t.TempDir(), Board: "apu2"},
			want: Supervision{Twin: true, LANInterface: "lan0", VIP: twinPlan.VIP}},
		{name: "unknown field", o: Options{ConfigPath: write("bad.yaml", "node:\n  name: a\n  bogus: 1\n"), DataDir: t.TempDir()}, configErr: true},
		{name: "missing file", o: Options{ConfigPath: filepath.Join(dir, "nope.yaml"), DataDir: t.TempDir()}, configErr: true},
		{name: "unknown board", o: Options{ConfigPath: twinCfg, DataDir: t.TempDir(), Board: "no-such-board"}, configErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlanSupervision(tc.o)
			if tc.configErr {
				if !IsConfigError(err) {
					t.Fatalf("err %v, want a config error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("plan %+v, want %+v", got, tc.want)
			}
		})
	}
	// It reads only: the box file is written by the worker, not here.
	if _, err := os.Stat(filepath.Join(twinData, boxconfig.FileName)); !os.IsNotExist(err) {
		t.Fatalf("PlanSupervision wrote a box file: %v", err)
	}
}
