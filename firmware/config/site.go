package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Site joins this box to a site cluster of three boxes or more (see
// docs/SITE.md): membership by gossip, registrations shared through a
// replicated log. A box is either part of a twin pair (cluster:) or of a
// site (site:), not both.
type Site struct {
	// Name is this box's member name in the site; empty: node.name.
	Name string `yaml:"name,omitempty"`
	// Bind is this box's own address for gossip and the replicated log;
	// the other boxes reach it there, so it must be a concrete address.
	Bind string `yaml:"bind"`
	// GossipPort (UDP and TCP) and RaftPort (TCP) on Bind; the same on
	// every box is simplest. Defaults 7946 and 7947.
	GossipPort int `yaml:"gossip_port,omitempty"`
	RaftPort   int `yaml:"raft_port,omitempty"`
	// Seeds are "host:port" gossip addresses of other boxes to join
	// through; one that answers is enough. A port left out is GossipPort.
	Seeds []string `yaml:"seeds"`
	// Key is the secret every box of the site shares (at least 16
	// characters); gossip and the replicated log are encrypted with keys
	// derived from it.
	Key string `yaml:"key"`
	// Expect is how many boxes must have met before the very first leader
	// is elected (default 3). Set it to the number of boxes of the site.
	Expect int `yaml:"expect,omitempty"`
	// RemoveAfter is how long a box must be gone before it leaves the
	// replicated log's voters (default 30s), so a flapping box is not
	// removed and added back each time.
	RemoveAfter Duration `yaml:"remove_after,omitempty"`
	// Forward says how a call reaches a phone registered on another box:
	// "always" (default) through that box, "never" straight to the phone
	// (site_forward.go).
	Forward string `yaml:"forward,omitempty"`
	// Timing is the gossip's failure detection preset: "lan" (default) or
	// "fast" (site_forward.go).
	Timing string `yaml:"timing,omitempty"`
}

// Site defaults and limits.
const (
	DefaultSiteGossipPort  = 7946
	DefaultSiteRaftPort    = 7947
	DefaultSiteExpect      = 3
	DefaultSiteRemoveAfter = 30 * time.Second
	MinSiteKey             = 16
	MinSiteRemoveAfter     = time.Second
)

// Effective returns s with every unset setting filled: the member name
// from node (the box's node.name), the ports, expect and remove_after.
func (s Site) Effective(node string) Site {
	if s.Name == "" {
		s.Name = node
	}
	if s.GossipPort == 0 {
		s.GossipPort = DefaultSiteGossipPort
	}
	if s.RaftPort == 0 {
		s.RaftPort = DefaultSiteRaftPort
	}
	if s.Expect == 0 {
		s.Expect = DefaultSiteExpect
	}
	if s.RemoveAfter == 0 {
		s.RemoveAfter = Duration(DefaultSiteRemoveAfter)
	}
	s.fillForward()
	return s
}

// SeedAddrs returns the seeds as "host:port", the default gossip port
// added where a seed names none.
func (s Site) SeedAddrs() []string {
	port := s.GossipPort
	if port == 0 {
		port = DefaultSiteGossipPort
	}
	out := make([]string, 0, len(s.Seeds))
	for _, seed := range s.Seeds {
		if _, _, err := net.SplitHostPort(seed); err == nil {
			out = append(out, seed)
			continue
		}
		out = append(out, net.JoinHostPort(seed, strconv.Itoa(port)))
	}
	return out
}

func (c *Config) validateSite(ps *problems) {
	s := c.Site
	if s == nil {
		return
	}
	if c.Cluster != nil {
		ps.add("site", "a box is either one of a twin pair (cluster:) or of a site (site:), not both")
	}
	if c.Dispatcher != nil {
		ps.add("site", "a dispatcher is not a member of the site: list the site's boxes as its backends instead")
	}
	if s.Name != "" {
		for _, r := range s.Name {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') || len(s.Name) > MaxNodeName {
				ps.add("site.name", "%q: up to %d lower-case letters, digits and hyphens", s.Name, MaxNodeName)
				break
			}
		}
	}
	if s.Bind == "" {
		ps.add("site.bind", "missing: this box's address the other boxes reach it at")
	} else if a, err := netip.ParseAddr(s.Bind); err != nil {
		ps.add("site.bind", "%q is not an IP address", s.Bind)
	} else if a.IsUnspecified() || a.IsMulticast() {
		ps.add("site.bind", "%s cannot be reached by the other boxes: give this box's own address", s.Bind)
	}
	port := func(field string, p int) {
		if p < 0 || p > 65535 {
			ps.add(field, "%d: want a port from 1 to 65535", p)
		}
	}
	port("site.gossip_port", s.GossipPort)
	port("site.raft_port", s.RaftPort)
	e := s.Effective(c.Node.Name)
	if e.GossipPort == e.RaftPort {
		ps.add("site.raft_port", "%d is also the gossip port", e.RaftPort)
	}
	for i, seed := range s.Seeds {
		f := fmt.Sprintf("site.seeds[%d]", i)
		host, p, err := net.SplitHostPort(seed)
		if err != nil {
			host, p = seed, ""
		}
		if err := checkHost(host); err != nil || host == "" {
			ps.add(f, "%q is not host or host:port", seed)
			continue
		}
		if p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				ps.add(f, "port %q in %q: want a number from 1 to 65535", p, seed)
			}
		}
	}
	if len(s.Key) < MinSiteKey {
		ps.add("site.key", "must be at least %d characters (every box of the site uses the same key)", MinSiteKey)
	}
	if s.Expect < 0 {
		ps.add("site.expect", "%d: want the number of boxes of the site (default %d)", s.Expect, DefaultSiteExpect)
	}
	if s.RemoveAfter != 0 && s.RemoveAfter.D() < MinSiteRemoveAfter {
		ps.add("site.remove_after", "%s is shorter than %s", s.RemoveAfter.D(), MinSiteRemoveAfter)
	}
	s.validateForward(ps)
}
