package cluster

import (
	"encoding/json"
	"strings"
	"testing"

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
