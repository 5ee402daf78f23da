package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Dispatcher makes the box a SIP load balancer in front of PBX boxes
// instead of a PBX (docs/DISPATCHER.md). It listens on the UDP entries of
// sip.listen; extensions and rtp_ports are not used.
type Dispatcher struct {
	// Algorithm picks the backend of a new call: hash-callid (0),
	// hash-from (1), hash-to (2), hash-ruri (3) or round-robin (4), by
	// name or by kamailio's number. Empty: hash-callid.
	Algorithm string `yaml:"algorithm,omitempty"`
	// Backends are the PBXs behind the dispatcher.
	Backends []DispatcherBackend `yaml:"backends"`
	// ProbeInterval is how often each backend gets an OPTIONS (default 5s).
	ProbeInterval Duration `yaml:"probe_interval,omitempty"`
	// DownAfter unanswered probes in a row mark a backend down (default
	// 2); UpAfter answered ones mark it up again (default 2).
	DownAfter int `yaml:"down_after,omitempty"`
	UpAfter   int `yaml:"up_after,omitempty"`
	// TxTimeout marks a backend down when it leaves a forwarded request
	// without any answer for this long (default 4s).
	TxTimeout Duration `yaml:"tx_timeout,omitempty"`
}

// DispatcherBackend is one PBX behind the dispatcher.
type DispatcherBackend struct {
	// URI is "sip:IP:port", "IP:port" or "IP" (port 5060).
	URI string `yaml:"uri"`
	// Weight is its share of new calls relative to the others (default 1).
	Weight int `yaml:"weight,omitempty"`
}

// DispatcherAlgorithms are the algorithm names in kamailio's order: the
// index is the number the dispatcher module uses.
var DispatcherAlgorithms = []string{"hash-callid", "hash-from", "hash-to", "hash-ruri", "round-robin"}

// Bounds of the dispatcher settings.
const (
	MinProbeInterval   = 50 * time.Millisecond
	MaxProbeInterval   = 10 * time.Minute
	MinDispatchTimeout = 100 * time.Millisecond
	MaxDispatchTimeout = time.Minute
	MaxDispatchCount   = 100  // down_after, up_after
	MaxDispatchWeight  = 1000 // weight
)

// AddrPort parses the backend's URI.
func (b DispatcherBackend) AddrPort() (netip.AddrPort, error) {
	s := strings.TrimSpace(b.URI)
	if rest, ok := strings.CutPrefix(strings.ToLower(s), "sip:"); ok {
		s = s[len(s)-len(rest):]
	}
	if strings.ContainsAny(s, "@;?") {
		return netip.AddrPort{}, fmt.Errorf("%q: give sip:IP:port, IP:port or IP, without user or parameters", b.URI)
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a, 5060), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address with an optional port (host names are not resolved)", b.URI)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port 0", b.URI)
	}
	return ap, nil
}

// DispatcherAlgorithm returns the number (0-4) of an algorithm name or
// number, or an error.
func DispatcherAlgorithm(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	for i, n := range DispatcherAlgorithms {
		if s == n || s == strconv.Itoa(i) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown algorithm %q (%s, or 0-4)", s, strings.Join(DispatcherAlgorithms, ", "))
}

func (c *Config) validateDispatcher(ps *problems) {
	d := c.Dispatcher
	if d == nil {
		return
	}
	if c.Cluster != nil {
		c.validateDispatcherPair(ps)
	}
	if c.Site != nil {
		ps.add("dispatcher", "a dispatcher is in front of a site's boxes, not one of them: remove site or dispatcher")
	}
	for i, e := range c.SIP.Listen {
		if l, err := ParseListen(e); err == nil && l.Transport != "udp" {
			ps.add(fmt.Sprintf("sip.listen[%d]", i), "%s: the dispatcher speaks UDP only", e)
		}
	}
	if _, err := DispatcherAlgorithm(d.Algorithm); err != nil {
		ps.add("dispatcher.algorithm", "%s", err.Error())
	}
	if len(d.Backends) == 0 {
		ps.add("dispatcher.backends", "missing: list the PBXs behind the dispatcher, e.g. - uri: sip:10.0.0.11:5060")
	}
	seen := map[netip.AddrPort]int{}
	for i, b := range d.Backends {
		f := fmt.Sprintf("dispatcher.backends[%d]", i)
		ap, err := b.AddrPort()
		if err != nil {
			ps.add(f+".uri", "%s", err.Error())
		} else if j, dup := seen[ap]; dup {
			ps.add(f+".uri", "%s is listed twice (also dispatcher.backends[%d])", ap, j)
		} else {
			seen[ap] = i
		}
		if b.Weight < 0 || b.Weight > MaxDispatchWeight {
			ps.add(f+".weight", "%d: want 1 to %d (0 or absent: 1)", b.Weight, MaxDispatchWeight)
		}
	}
	durs := []struct {
		field    string
		set      Duration
		min, max time.Duration
	}{
		{"dispatcher.probe_interval", d.ProbeInterval, MinProbeInterval, MaxProbeInterval},
		{"dispatcher.tx_timeout", d.TxTimeout, MinDispatchTimeout, MaxDispatchTimeout},
	}
	for _, x := range durs {
		if x.set < 0 || x.set != 0 && (x.set.D() < x.min || x.set.D() > x.max) {
			ps.add(x.field, "%s is outside %s..%s", x.set, Duration(x.min), Duration(x.max))
		}
	}
	for _, x := range []struct {
		field string
		n     int
	}{{"dispatcher.down_after", d.DownAfter}, {"dispatcher.up_after", d.UpAfter}} {
		if x.n < 0 || x.n > MaxDispatchCount {
			ps.add(x.field, "%d: want 1 to %d (0 or absent: the default)", x.n, MaxDispatchCount)
		}
	}
}
