package config

// How a call reaches a phone registered on another box of the site
// (site.forward).
const (
	// SiteForwardAlways sends the call to the box that holds the
	// registration, which rings the phone over the phone's own flow (its
	// NAT binding or connection) and relays its media.
	SiteForwardAlways = "always"
	// SiteForwardNever sends the call straight to the address the phone
	// registered from.
	SiteForwardNever = "never"
)

// Gossip timing presets (site.timing).
const (
	// SiteTimingLAN is memberlist's LAN settings: a dead box is noticed in
	// about 6 s, with room for a slow or loaded box.
	SiteTimingLAN = "lan"
	// SiteTimingFast probes more often with shorter timeouts: a dead box
	// is noticed in 2–3 s.
	SiteTimingFast = "fast"
)

func (s *Site) fillForward() {
	if s.Forward == "" {
		s.Forward = SiteForwardAlways
	}
	if s.Timing == "" {
		s.Timing = SiteTimingLAN
	}
}

func (s *Site) validateForward(ps *problems) {
	switch s.Forward {
	case "", SiteForwardAlways, SiteForwardNever:
	default:
		ps.add("site.forward", "%q: want %q or %q", s.Forward, SiteForwardAlways, SiteForwardNever)
	}
	switch s.Timing {
	case "", SiteTimingLAN, SiteTimingFast:
	default:
		ps.add("site.timing", "%q: want %q or %q", s.Timing, SiteTimingLAN, SiteTimingFast)
	}
}
