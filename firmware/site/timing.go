package site

import (
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// tuneGossip applies a site.timing preset to memberlist's LAN settings.
//
// memberlist notices a dead box in two steps: a probe (and the indirect
// probes through other boxes) goes unanswered within ProbeTimeout, so the
// box is suspected; the suspicion is gossiped and the box is declared
// dead when it has not refuted it within the suspicion timeout,
// SuspicionMult × ProbeInterval (× log10 of the number of boxes, from 10
// boxes on), up to SuspicionMaxTimeoutMult times that while too few other
// boxes confirm it. A live box that is merely slow refutes the suspicion
// as soon as it hears of it, so a short timeout costs a suspicion now and
// then on a loaded box, not a box declared dead; memberlist also lengthens
// its own timeouts when its probes fail (its awareness score).
//
// "lan" keeps memberlist's LAN settings (probe every 1 s, 500 ms timeout,
// suspicion 4 s with three boxes): about 6 s. "fast" probes every 400 ms
// with a 200 ms timeout and keeps the suspicion at 1.6–3.2 s: 2–3 s,
// for a LAN whose delays stay well under 100 ms.
func tuneGossip(mc *memberlist.Config, timing string) {
	if timing != config.SiteTimingFast {
		return
	}
	mc.ProbeInterval = 400 * time.Millisecond
	mc.ProbeTimeout = 200 * time.Millisecond
	mc.SuspicionMult = 4
	mc.SuspicionMaxTimeoutMult = 2
	mc.GossipInterval = 100 * time.Millisecond
}
