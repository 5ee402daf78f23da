package config

import (
	"slices"
	"strings"
	"testing"
)

func TestSiteValidate(t *testing.T) {
	base := func() *Config {
		return &Config{
			Node:       Node{Name: "pbx-1"},
			SIP:        SIP{Listen: []string{"udp:10.80.0.11:5060"}, RTPPorts: "20000-20999"},
			Extensions: []Extension{{Number: "100", Secret: "s3cret-100"}},
			Site: &Site{
				Bind:  "10.80.0.11",
				Seeds: []string{"10.80.0.12", "pbx-3.example:7000"},
				Key:   "0123456789abcdef",
			},
		}
	}
	tests := []struct {
		name  string
		edit  func(c *Config)
		field string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no bind", func(c *Config) { c.Site.Bind = "" }, "site.bind"},
		{"bind not an address", func(c *Config) { c.Site.Bind = "pbx-1" }, "site.bind"},
		{"wildcard bind", func(c *Config) { c.Site.Bind = "0.0.0.0" }, "site.bind"},
		{"short key", func(c *Config) { c.Site.Key = "short" }, "site.key"},
		{"bad seed port", func(c *Config) { c.Site.Seeds = []string{"10.0.0.1:99999"} }, "site.seeds[0]"},
		{"bad seed host", func(c *Config) { c.Site.Seeds = []string{"bad host!"} }, "site.seeds[0]"},
		{"same ports", func(c *Config) { c.Site.RaftPort = DefaultSiteGossipPort }, "site.raft_port"},
		{"port out of range", func(c *Config) { c.Site.GossipPort = 70000 }, "site.gossip_port"},
		{"negative expect", func(c *Config) { c.Site.Expect = -1 }, "site.expect"},
		{"short remove_after", func(c *Config) { c.Site.RemoveAfter = Duration(1) }, "site.remove_after"},
		{"bad name", func(c *Config) { c.Site.Name = "PBX 1" }, "site.name"},
		{"forward never", func(c *Config) { c.Site.Forward = SiteForwardNever }, ""},
		{"fast timing", func(c *Config) { c.Site.Timing = SiteTimingFast }, ""},
		{"bad forward", func(c *Config) { c.Site.Forward = "sometimes" }, "site.forward"},
		{"bad timing", func(c *Config) { c.Site.Timing = "wan" }, "site.timing"},
		{"with a twin", func(c *Config) { c.Cluster = &Cluster{} }, "site"},
		{"on a dispatcher", func(c *Config) { c.Dispatcher = &Dispatcher{} }, "site"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("Validate() = %v, want problems with %s", err, tt.field)
			}
			if !slices.ContainsFunc(e.Problems, func(p Problem) bool { return p.Field == tt.field }) {
				t.Errorf("no problem with %s in:\n%v", tt.field, err)
			}
		})
	}
}

func TestSiteEffectiveAndSeeds(t *testing.T) {
	s := Site{Seeds: []string{"10.0.0.2", "10.0.0.3:8000", "pbx-4", "::1", "[fe80::1]:7000"}, GossipPort: 7000}
	e := s.Effective("pbx-1")
	if e.Name != "pbx-1" || e.RaftPort != DefaultSiteRaftPort || e.Expect != DefaultSiteExpect || e.RemoveAfter.D() != DefaultSiteRemoveAfter || e.GossipPort != 7000 ||
		e.Forward != SiteForwardAlways || e.Timing != SiteTimingLAN {
		t.Errorf("Effective = %+v", e)
	}
	got := strings.Join(s.SeedAddrs(), " ")
	want := "10.0.0.2:7000 10.0.0.3:8000 pbx-4:7000 [::1]:7000 [fe80::1]:7000"
	if got != want {
		t.Errorf("SeedAddrs = %q, want %q", got, want)
	}
}
