package config

import (
	"testing"
	"time"
)

func TestPSTNValidate(t *testing.T) {
	const base = "node: {name: a}\nsip: {listen: [\"udp:10.77.0.5:5060\"], rtp_ports: \"20000-20999\"}\n"
	tests := []struct {
		name     string
		section  string // the pstn section, appended to base
		want     string // substring of the error; empty: valid
		grace    time.Duration
		holdDown time.Duration
	}{
		{name: "absent: defaults", grace: DefaultLayer1Grace, holdDown: DefaultPSTNHoldDown},
		{name: "empty: defaults", section: "pstn: {}\n", grace: DefaultLayer1Grace, holdDown: DefaultPSTNHoldDown},
		{name: "both set", section: "pstn: {layer1_grace: 3s, hold_down: 1h}\n", grace: 3 * time.Second, holdDown: time.Hour},
		{name: "whole seconds", section: "pstn: {layer1_grace: 20}\n", grace: 20 * time.Second, holdDown: DefaultPSTNHoldDown},
		{name: "grace too short", section: "pstn: {layer1_grace: 100ms}\n", want: "pstn.layer1_grace: 100ms is outside"},
		{name: "grace too long", section: "pstn: {layer1_grace: 1h}\n", want: "pstn.layer1_grace"},
		{name: "negative grace", section: "pstn: {layer1_grace: -5s}\n", want: "pstn.layer1_grace"},
		{name: "hold-down too short", section: "pstn: {hold_down: 10s}\n", want: "pstn.hold_down: 10s is outside"},
		{name: "hold-down too long", section: "pstn: {hold_down: 400h}\n", want: "pstn.hold_down"},
		{name: "not a duration", section: "pstn: {hold_down: soon}\n", want: "invalid duration"},
		{name: "unknown key", section: "pstn: {grace: 5s}\n", want: "grace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := checkText(t, "test", base+tc.section, tc.want)
			if c == nil {
				return
			}
			if g, h := c.PSTN.Grace(), c.PSTN.HoldDownTime(); g != tc.grace || h != tc.holdDown {
				t.Fatalf("grace %v hold-down %v, want %v and %v", g, h, tc.grace, tc.holdDown)
			}
		})
	}
}
