package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Dispatcher makes the box a SIP load balancer in front of PBX boxes
// instead of a PBX (docs/DISPATCHER.md). It listens on the entries of
// sip.listen: phones may use UDP, TCP or TLS, the backends UDP (the
// default), TCP or TLS; extensions and rtp_ports are not used.
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
	// Attempts is how many backends a new call, or another request of a
	// phone outside a dialog, is tried on: one that leaves it unanswered
	// for tx_timeout or refuses it with 500 or 503 passes it to the next
	// (default 3; 1: no retry).
	Attempts int `yaml:"attempts,omitempty"`
	// TCPMaxConnections bounds the phones' open TCP and TLS connections
	// (default 4096), TCPMaxPerSource those from one IP address (default
	// 128).
	TCPMaxConnections int `yaml:"tcp_max_connections,omitempty"`
	TCPMaxPerSource   int `yaml:"tcp_max_per_source,omitempty"`
	// TCPIdleTimeout closes a connection on which no message came for
	// this long, unless it carries a registration (default 2m).
	TCPIdleTimeout Duration `yaml:"tcp_idle_timeout,omitempty"`
	// BackendConnections is how many connections the dispatcher keeps
	// open to each backend over tcp or tls (default 2).
	BackendConnections int `yaml:"backend_connections,omitempty"`
	// TLSCA is a PEM file of the authorities that sign the certificates
	// of tls backends, and of phones the dispatcher connects to over tls
	// (absent: the system's).
	TLSCA string `yaml:"tls_ca,omitempty"`
}

// DispatcherBackend is one PBX behind the dispatcher, or a DNS name for
// several.
type DispatcherBackend struct {
	// URI is "sip:IP:port", "IP:port" or "IP" (port 5060); or a DNS
	// name: "host:port" (each of its addresses), "host" or "_sip._udp.host" (each
	// target of its SRV records a backend), each also with "sip:". A
	// "tcp:" or "tls:" in front ("tls:10.0.0.1", "tcp:host:port") speaks
	// to it over that transport (tls: port 5061 by default), as do the
	// SRV names "_sip._tcp.host" and "_sips._tcp.host".
	URI string `yaml:"uri"`
	// Weight is its share of new calls relative to the others (default
	// 1; for SRV targets the record's weight).
	Weight int `yaml:"weight,omitempty"`
}

// DispatcherAlgorithms are the algorithm names in kamailio's order: the
// index is the number the dispatcher module uses.
var DispatcherAlgorithms = []string{"hash-callid", "hash-from", "hash-to", "hash-ruri", "round-robin"}

// Bounds of the dispatcher settings.
const (
	MinProbeInterval    = 50 * time.Millisecond
	MaxProbeInterval    = 10 * time.Minute
	MinDispatchTimeout  = 100 * time.Millisecond
	MaxDispatchTimeout  = time.Minute
	MaxDispatchCount    = 100  // down_after, up_after
	MaxDispatchWeight   = 1000 // weight
	MaxDispatchAttempts = 10   // attempts
	MaxDispatchConns    = 100000
	MinTCPIdleTimeout   = time.Second
	MaxTCPIdleTimeout   = 24 * time.Hour
	MaxBackendConns     = 16 // backend_connections
)

// srvPrefixes are the SRV owner-name prefixes a backend name may start
// with, and the transport each means.
var srvPrefixes = []struct{ prefix, transport string }{
	{"_sip._udp.", "udp"}, {"_sip._tcp.", "tcp"}, {"_sips._tcp.", "tls"},
}

// splitTransport cuts a "tcp:", "tls:" or "udp:" prefix off a backend
// URI; the transport is "" without one.
func splitTransport(s string) (transport, rest string) {
	for _, t := range []string{"udp", "tcp", "tls"} {
		if r := cutPrefixFold(s, t+":"); r != s {
			return t, r
		}
	}
	return "", s
}

// Transport is how the dispatcher speaks to the backend: "udp", "tcp" or
// "tls", from the URI's prefix or its SRV name ("udp" when neither says;
// "" when the URI does not parse).
func (b DispatcherBackend) Transport() string {
	if _, _, err := b.Target(); err != nil {
		return ""
	}
	tr, rest := splitTransport(strings.TrimSpace(b.URI))
	if tr != "" {
		return tr
	}
	rest = cutPrefixFold(rest, "sip:")
	for _, p := range srvPrefixes {
		if cutPrefixFold(rest, p.prefix) != rest {
			return p.transport
		}
	}
	return "udp"
}

// Target parses the backend's URI: an address, or else a DNS name
// ("host:port", "host", "_sip._udp.host", "_sip._tcp.host" or
// "_sips._tcp.host", without "sip:" or the transport prefix).
func (b DispatcherBackend) Target() (netip.AddrPort, string, error) {
	tr, s := splitTransport(strings.TrimSpace(b.URI))
	ap, err := DispatcherBackend{URI: s}.AddrPort()
	if err == nil {
		if tr == "tls" && !hasPort(s) {
			ap = netip.AddrPortFrom(ap.Addr(), 5061)
		}
		return ap, "", nil
	}
	s = cutPrefixFold(s, "sip:")
	if strings.ContainsAny(s, "@;?[]") || s == "" {
		return netip.AddrPort{}, "", err
	}
	host, port, hasPort := strings.Cut(s, ":")
	if hasPort {
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 1 || n > 65535 {
			return netip.AddrPort{}, "", fmt.Errorf("%q: port %q is not 1-65535", b.URI, port)
		}
	}
	check := host
	for _, p := range srvPrefixes {
		rest := cutPrefixFold(host, p.prefix)
		if rest == host {
			continue
		}
		switch {
		case hasPort:
			return netip.AddrPort{}, "", fmt.Errorf("%q: an SRV name takes no port (its records give them)", b.URI)
		case tr != "" && tr != p.transport:
			return netip.AddrPort{}, "", fmt.Errorf("%q: %s: names another transport than its SRV name", b.URI, tr)
		}
		check = rest
		tr = ""
		break
	}
	if _, perr := netip.ParseAddr(check); perr == nil || checkHost(check) != nil || !strings.Contains(check, ".") && !hasPort {
		return netip.AddrPort{}, "", fmt.Errorf("%q is neither sip:IP:port, IP:port, IP nor a DNS name (host:port, host, _sip._udp.host), each with tcp: or tls: before it or not", b.URI)
	}
	return netip.AddrPort{}, strings.ToLower(s), nil
}

// hasPort tells whether an address as AddrPort takes it names a port.
func hasPort(s string) bool {
	s = cutPrefixFold(strings.TrimSpace(s), "sip:")
	_, err := netip.ParseAddrPort(s)
	return err == nil
}

// cutPrefixFold removes prefix from s, ignoring case.
func cutPrefixFold(s, prefix string) string {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):]
	}
	return s
}

// AddrPort parses the backend's URI as an address.
func (b DispatcherBackend) AddrPort() (netip.AddrPort, error) {
	s := strings.TrimSpace(b.URI)
	s = cutPrefixFold(s, "sip:")
	if strings.ContainsAny(s, "@;?") {
		return netip.AddrPort{}, fmt.Errorf("%q: give sip:IP:port, IP:port or IP, without user or parameters", b.URI)
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a, 5060), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address with an optional port", b.URI)
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
	udp := false
	for _, e := range c.SIP.Listen {
		if l, err := ParseListen(e); err == nil && l.Transport == "udp" {
			udp = true
		}
	}
	// A pair's own check says this with the VIP's address.
	if !udp && len(c.SIP.Listen) > 0 && c.Cluster == nil {
		ps.add("sip.listen", "the dispatcher needs a udp listener too: it speaks to the backends and probes them over UDP (e.g. udp:0.0.0.0:5060 next to tcp:0.0.0.0:5060)")
	}
	if d.TCPMaxConnections < 0 || d.TCPMaxConnections > MaxDispatchConns {
		ps.add("dispatcher.tcp_max_connections", "%d: want 1 to %d (0 or absent: 4096)", d.TCPMaxConnections, MaxDispatchConns)
	}
	if d.TCPMaxPerSource < 0 || d.TCPMaxPerSource > MaxDispatchConns {
		ps.add("dispatcher.tcp_max_per_source", "%d: want 1 to %d (0 or absent: 128)", d.TCPMaxPerSource, MaxDispatchConns)
	} else if d.TCPMaxConnections > 0 && d.TCPMaxPerSource > d.TCPMaxConnections {
		ps.add("dispatcher.tcp_max_per_source", "%d is more than tcp_max_connections (%d)", d.TCPMaxPerSource, d.TCPMaxConnections)
	}
	if d.BackendConnections < 0 || d.BackendConnections > MaxBackendConns {
		ps.add("dispatcher.backend_connections", "%d: want 1 to %d (0 or absent: 2)", d.BackendConnections, MaxBackendConns)
	}
	if d.TLSCA != "" {
		if !slices.ContainsFunc(d.Backends, func(b DispatcherBackend) bool { return b.Transport() == "tls" }) && !c.HasTLS() {
			ps.add("dispatcher.tls_ca", "only for backends over tls (tls:host:port or _sips._tcp.host), or phones over a tls listener")
		} else if err := checkPath(d.TLSCA); err != nil {
			ps.add("dispatcher.tls_ca", "%v", err)
		}
	}
	if _, err := DispatcherAlgorithm(d.Algorithm); err != nil {
		ps.add("dispatcher.algorithm", "%s", err.Error())
	}
	if len(d.Backends) == 0 {
		ps.add("dispatcher.backends", "missing: list the PBXs behind the dispatcher, e.g. - uri: sip:10.0.0.11:5060")
	}
	seen := map[string]int{}
	for i, b := range d.Backends {
		f := fmt.Sprintf("dispatcher.backends[%d]", i)
		ap, name, err := b.Target()
		key := name
		if name == "" {
			key = ap.String()
		}

		if err != nil {
			ps.add(f+".uri", "%s", err.Error())
		} else if j, dup := seen[key]; dup {
			ps.add(f+".uri", "%s is listed twice (also dispatcher.backends[%d])", key, j)
		} else {
			seen[key] = i
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
		{"dispatcher.tcp_idle_timeout", d.TCPIdleTimeout, MinTCPIdleTimeout, MaxTCPIdleTimeout},
	}
	for _, x := range durs {
		if x.set < 0 || x.set != 0 && (x.set.D() < x.min || x.set.D() > x.max) {
			ps.add(x.field, "%s is outside %s..%s", x.set, Duration(x.min), Duration(x.max))
		}
	}
	if d.Attempts < 0 || d.Attempts > MaxDispatchAttempts {
		ps.add("dispatcher.attempts", "%d: want 1 to %d (0 or absent: 3)", d.Attempts, MaxDispatchAttempts)
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
