package config

import (
	"fmt"
	"net/netip"
)

// validateDispatcherPair checks what a dispatcher that is one of a twin
// pair (a config with both dispatcher and cluster) needs beyond each
// section's own rules: it serves on the VIP, so every listener is on the
// VIP's address; the box's own addresses would differ between the twins,
// and a wildcard would let the standby answer on them. The cluster
// section itself is checked by validateCluster.
func (c *Config) validateDispatcherPair(ps *problems) {
	vip, err := netip.ParsePrefix(c.Cluster.VIP)
	if err != nil {
		return // reported as cluster.vip
	}
	udp := 0
	for i, e := range c.SIP.Listen {
		l, err := ParseListen(e)
		if err != nil {
			continue // reported as sip.listen[i]
		}
		if l.Transport == "udp" {
			udp++
		}
		a, err := netip.ParseAddr(l.Host)
		if err != nil || a.Unmap() != vip.Addr() {
			ps.add(fmt.Sprintf("sip.listen[%d]", i), "%s: a dispatcher pair serves on the VIP only: listen on %s:%s",
				e, l.Transport, netip.AddrPortFrom(vip.Addr(), uint16(l.Port)))
		}
	}
	if udp == 0 {
		ps.add("sip.listen", "a dispatcher pair needs a UDP listener on the VIP, e.g. udp:%s",
			netip.AddrPortFrom(vip.Addr(), 5060))
	}
}
