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
	p := startOnSimulatedBRI(t, []config.Route{{Pattern: "0.", Strip: 1, Trunks: []string{"isdn"}}}, alice, bob)
	var st struct {
		ISDN []struct {
			Name   string
			Trunk  string
			LineUp bool `json:"line_up"`
			Error  string
		}
	}
	if err := p.status(&st); err != nil {
		t.Fatal(err)
	}
	if len(st.ISDN) != 1 || st.ISDN[0].Name != "bri0" || st.ISDN[0].Trunk != "isdn" || st.ISDN[0].Error != "" {
		t.Errorf("spans %+v, want bri0 on trunk isdn without error", st.ISDN)
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

// startOnSimulatedBRI runs `twinpbx run` with exts and one isdn trunk,
// "isdn", on the simulated board's span (its gateway on a free port) and
// routes, and returns once the span's line is up.
func startOnSimulatedBRI(t *testing.T, routes []config.Route, exts ...config.Extension) *pbx {
	t.Helper()
	gw := freePorts(t, 1)
	p := startPBXWith(t, func(c *config.Config) {
		c.Trunks = []config.TrunkLine{{Name: "isdn", Type: config.LineISDN, Host: fmt.Sprintf("127.0.0.1:%d", gw)}}
		c.Routes = routes
	}, exts...)
	var st struct {
		ISDN []struct {
			LineUp bool `json:"line_up"`
		}
	}
	waitFor(t, 20*time.Second, "the simulated ISDN line to come up", func() bool {
		if err := p.status(&st); err != nil {
			t.Fatal(err)
		}
		return len(st.ISDN) == 1 && st.ISDN[0].LineUp
	})
	return p
}
