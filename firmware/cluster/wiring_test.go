package cluster

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/hw/relay"
	"github.com/twinpbx/twinpbx/hw/watchdog"
)

// The hardware packages' types fit the manager's interfaces as they are.
var (
	_ Relay = relay.Relay(nil)
	_ Fence = (*watchdog.Fence)(nil)
)

func TestStatusJSON(t *testing.T) {
	s := startPair(t, nil)
	b, err := json.Marshal(s.mgr("a").Status())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Role":"ACTIVE"`, `"Path":"crossover"`, `"To":"ACTIVE"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("status JSON lacks %s: %s", want, b)
		}
	}
}

// TestPresetsMakeValidConfigs: every timing preset, through the config's
// defaults, gives the manager a config it accepts, with a VIP probe that
// spans more than a tick and fits in the lease.
func TestPresetsMakeValidConfigs(t *testing.T) {
	for name := range config.TimingPresets {
		t.Run(name, func(t *testing.T) {
			c := config.Config{Node: config.Node{Name: "a"}, Cluster: &config.Cluster{Peer: "b", Timing: name}}
			cl := *c.WithDefaults().Cluster
			mc := FromConfig("a", relay.A, cl)
			if err := mc.Validate(); err != nil {
				t.Fatalf("preset %s: %v", name, err)
			}
			if mc.ProbeSpan <= mc.Interval || mc.ProbeSpan > mc.Lease {
				t.Errorf("preset %s: probe span %v, interval %v, lease %v", name, mc.ProbeSpan, mc.Interval, mc.Lease)
			}
		})
	}
}
