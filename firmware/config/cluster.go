package config

import (
	"net/netip"
	"time"
)

// Timing presets of the twin pair: heartbeat interval, dead time, lease
// and boot wait (docs/CLUSTER.md). "default" detects a dead twin in
// 300 ms; "fast" in 100 ms for a quiet crossover; "slow" in 1 s for
// links that drop bursts.
var TimingPresets = map[string]struct{ Interval, DeadTime, Lease, BootWait time.Duration }{
	"fast":    {20 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, time.Second},
	"default": {50 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond, 2 * time.Second},
	"slow":    {200 * time.Millisecond, time.Second, time.Second, 5 * time.Second},
}

// Cluster defaults that do not depend on the timing preset.
const (
	DefaultClusterPort        = 7450
	DefaultGARPCount          = 3
	DefaultGARPInterval       = 200 * time.Millisecond
	DefaultGARPRefresh        = 2 * time.Second
	DefaultMigrationThreshold = 3
	DefaultFailureTimeout     = 10 * time.Minute
	DefaultFailbackDelay      = time.Minute
	DefaultWatchdogTimeout    = 5 * time.Second
	MinPairingKey             = 16
)

// withDefaults fills the unset cluster settings from the timing preset and
// the defaults above.
func (cl *Cluster) withDefaults() {
	fill := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	if cl.Timing == "" {
		cl.Timing = "default"
	}
	if p, ok := TimingPresets[cl.Timing]; ok {
		fill(&cl.Interval, p.Interval)
		fill(&cl.DeadTime, p.DeadTime)
		fill(&cl.Lease, p.Lease)
		fill(&cl.BootWait, p.BootWait)
	}
	if cl.Port == 0 {
		cl.Port = DefaultClusterPort
	}
	if cl.GARPCount == 0 {
		cl.GARPCount = DefaultGARPCount
	}
	fill(&cl.GARPInterval, DefaultGARPInterval)
	fill(&cl.GARPRefresh, DefaultGARPRefresh)
	if cl.MigrationThreshold == 0 {
		cl.MigrationThreshold = DefaultMigrationThreshold
	}
	fill(&cl.FailureTimeout, DefaultFailureTimeout)
	fill(&cl.FailbackDelay, DefaultFailbackDelay)
	fill(&cl.WatchdogTimeout, DefaultWatchdogTimeout)
}

func (c *Config) validateCluster(ps *problems, eff *Config) {
	cl := c.Cluster
	if cl == nil {
		return
	}
	e := eff.Cluster
	switch {
	case cl.Peer == "":
		ps.add("cluster.peer", "missing: name the twin (its node.name)")
	case cl.Peer == c.Node.Name:
		ps.add("cluster.peer", "%q is this box's own name; name the twin", cl.Peer)
	}
	if len(cl.PairingKey) < MinPairingKey {
		ps.add("cluster.pairing_key", "must be at least %d characters (both boxes use the same key)", MinPairingKey)
	}
	ip := func(field, s string) (netip.Addr, bool) {
		if s == "" {
			ps.add(field, "missing: an IP address")
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			ps.add(field, "%q is not an IP address", s)
			return netip.Addr{}, false
		}
		return a, true
	}
	xl, okxl := ip("cluster.crossover.local", cl.Crossover.Local)
	xp, okxp := ip("cluster.crossover.peer", cl.Crossover.Peer)
	ll, okll := ip("cluster.lan.local", cl.LAN.Local)
	lp, oklp := ip("cluster.lan.peer", cl.LAN.Peer)
	if okxl && okxp && xl == xp {
		ps.add("cluster.crossover.peer", "is the same address as crossover.local")
	}
	if okll && oklp && ll == lp {
		ps.add("cluster.lan.peer", "is the same address as lan.local")
	}
	if cl.LANInterface == "" {
		ps.add("cluster.lan_interface", "missing: the interface that carries the VIP (e.g. eth0)")
	} else if len(cl.LANInterface) > 15 {
		ps.add("cluster.lan_interface", "%q is longer than an interface name can be (15)", cl.LANInterface)
	}
	vip, err := netip.ParsePrefix(cl.VIP)
	switch {
	case cl.VIP == "":
		ps.add("cluster.vip", "missing: the virtual address with its prefix, e.g. 192.168.1.10/24")
	case err != nil:
		ps.add("cluster.vip", "%q is not an address with a prefix, e.g. 192.168.1.10/24", cl.VIP)
	default:
		if okll && vip.Addr() == ll || oklp && vip.Addr() == lp {
			ps.add("cluster.vip", "%s is a box's own LAN address; the VIP must be a third address", vip.Addr())
		}
		if okll && !vip.Masked().Contains(ll) {
			ps.add("cluster.vip", "%s is not in the subnet of lan.local %s", cl.VIP, ll)
		}
	}
	if gw, ok := ip("cluster.gateway", cl.Gateway); ok && err == nil && !vip.Masked().Contains(gw) {
		ps.add("cluster.gateway", "%s is not on the LAN %s: the tie-breaker must answer ARP there", gw, vip.Masked())
	}
	if cl.Port < 0 || cl.Port > 65535 {
		ps.add("cluster.port", "%d is not a port (1-65535)", cl.Port)
	}
	if cl.Preferred != "" && cl.Preferred != c.Node.Name && cl.Preferred != cl.Peer {
		ps.add("cluster.preferred", "%q is neither this box (%s) nor the twin (%s)", cl.Preferred, c.Node.Name, cl.Peer)
	}
	if cl.Failback && cl.Preferred == "" {
		ps.add("cluster.failback", "needs cluster.preferred: failback moves service back to the preferred box")
	}
	if _, ok := TimingPresets[e.Timing]; !ok {
		ps.add("cluster.timing", "unknown preset %q (fast, default, slow)", cl.Timing)
		return
	}
	if e.Interval < 5*Duration(time.Millisecond) {
		ps.add("cluster.interval", "%s is too short (at least 5ms)", e.Interval)
	}
	if e.DeadTime < 3*e.Interval {
		ps.add("cluster.dead_time", "%s must be at least 3 heartbeat intervals (%s)", e.DeadTime, 3*e.Interval)
	}
	if e.Lease > e.DeadTime {
		ps.add("cluster.lease", "%s must not exceed dead_time %s: the old active must stop serving before the standby takes over", e.Lease, e.DeadTime)
	}
	if e.GARPCount < 1 || e.GARPCount > 20 {
		ps.add("cluster.garp_count", "%d: want 1 to 20", e.GARPCount)
	}
	if e.MigrationThreshold < 1 {
		ps.add("cluster.migration_threshold", "%d: want at least 1", e.MigrationThreshold)
	}
	if e.WatchdogTimeout < Duration(time.Second) || e.WatchdogTimeout > Duration(10*time.Minute) {
		ps.add("cluster.watchdog_timeout", "%s: want 1s to 10m", e.WatchdogTimeout)
	}
}
