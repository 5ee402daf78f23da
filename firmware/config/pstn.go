package config

import "time"

// PSTN tunes the PSTN layer-1 monitor of a twin pair (docs/ISDN.md, "The
// layer-1 monitor"; docs/CLUSTER.md, "No ping-pong"). The section is
// optional: absent, the defaults apply. A standalone box has no monitor.
type PSTN struct {
	// Layer1Grace is how long a span an isdn trunk uses may have layer 1
	// down (LOS, AIS, or not activated) before the active box counts a
	// failure: the relay has just switched, or a restart in place is
	// re-activating the line. Default 10s.
	Layer1Grace Duration `yaml:"layer1_grace,omitempty"`
	// HoldDown is how long a box that handed service over because its
	// line was down is not handed service back for the line. Default 15m.
	HoldDown Duration `yaml:"hold_down,omitempty"`
}

// Defaults and bounds of the pstn section.
const (
	DefaultLayer1Grace  = 10 * time.Second
	DefaultPSTNHoldDown = 15 * time.Minute
	MinLayer1Grace      = time.Second
	MaxLayer1Grace      = 10 * time.Minute
	MinPSTNHoldDown     = time.Minute
	MaxPSTNHoldDown     = 7 * 24 * time.Hour
)

// Grace is the layer-1 grace in effect: Layer1Grace, or the default.
func (p *PSTN) Grace() time.Duration {
	if p == nil || p.Layer1Grace == 0 {
		return DefaultLayer1Grace
	}
	return p.Layer1Grace.D()
}

// HoldDownTime is the hold-down in effect: HoldDown, or the default.
func (p *PSTN) HoldDownTime() time.Duration {
	if p == nil || p.HoldDown == 0 {
		return DefaultPSTNHoldDown
	}
	return p.HoldDown.D()
}

func (c *Config) validatePSTN(ps *problems) {
	p := c.PSTN
	if p == nil {
		return
	}
	if g := p.Layer1Grace.D(); g != 0 && (g < MinLayer1Grace || g > MaxLayer1Grace) {
		ps.add("pstn.layer1_grace", "%v is outside %v to %v (BRI activation takes up to a few seconds)", p.Layer1Grace, MinLayer1Grace, Duration(MaxLayer1Grace))
	}
	if h := p.HoldDown.D(); h != 0 && (h < MinPSTNHoldDown || h > MaxPSTNHoldDown) {
		ps.add("pstn.hold_down", "%v is outside %v to %v", p.HoldDown, Duration(MinPSTNHoldDown), Duration(MaxPSTNHoldDown))
	}
}
