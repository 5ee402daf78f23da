package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// TestISDNOnTheSimulatedBoard: `twinpbx run` with an isdn trunk starts the
// ISDN gateway of the simulated board's span, whose line is the exchange
// emulator; an extension dials out over the route, the exchange answers
// (it always does, after a second of ringing) and the CDR names the trunk.
func TestISDNOnTheSimulatedBoard(t *testing.T) {
	needTools(t, "sipp")
	gw := freePorts(t, 1)
	p := startPBXWith(t, func(c *config.Config) {
		c.Trunks = []config.TrunkLine{{Name: "isdn", Type: config.LineISDN, Host: fmt.Sprintf("127.0.0.1:%d", gw)}}
		c.Routes = []config.Route{{Pattern: "0.", Strip: 1, Trunks: []string{"isdn"}}}
	}, alice, bob)

	var st struct {
		ISDN []struct {
			Name   string
			Trunk  string
			LineUp bool `json:"line_up"`
			Error  string
		}
	}
	waitFor(t, 20*time.Second, "the simulated ISDN line to come up", func() bool {
		if err := p.status(&st); err != nil {
			t.Fatal(err)
		}
		return len(st.ISDN) == 1 && st.ISDN[0].LineUp
	})
	if s := st.ISDN[0]; s.Name != "bri0" || s.Trunk != "isdn" || s.Error != "" {
		t.Errorf("span status %+v, want bri0 on trunk isdn without error", s)
	}

	uac := runSipp(t, sippOpts{
		scenario: "uac.xml", remote: p.addr(), service: "0301234567",
		user: alice.Number, pass: alice.Secret, pause: 500 * time.Millisecond, keys: caller(alice),
	}, 0)
	rec := p.waitCDR(func(r map[string]string) bool { return r["call_id"] == sippCallID(uac) })
	if rec["disposition"] != "ANSWERED" || rec["trunk"] != "isdn" {
		t.Errorf("CDR %v, want ANSWERED over trunk isdn", rec)
	}
}
