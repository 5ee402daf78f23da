package config

import (
	"strings"
	"testing"
	"time"
)

const twinBase = `node: {name: a}
sip: {listen: ["udp:10.77.0.10:5060"], rtp_ports: "20000-20999"}
extensions:
  - {number: "100", secret: "s3cret-100x"}
cluster:
  peer: b
  pairing_key: "hq7n4-kd93m-x2pwa-77fne"
  crossover: {local: 10.78.0.1, peer: 10.78.0.2}
  lan: {local: 10.77.0.11, peer: 10.77.0.12}
  lan_interface: eth0
  vip: 10.77.0.10/24
  gateway: 10.77.0.1
`

func TestClusterValidate(t *testing.T) {
	tests := []struct {
		name  string
		extra string // appended under cluster:
		edit  func(string) string
		want  string // substring of the error; empty: valid
	}{
		{name: "valid"},
		{name: "fast preset", extra: "  timing: fast\n"},
		{name: "peer is self", edit: func(s string) string { return strings.Replace(s, "peer: b", "peer: a", 1) }, want: "cluster.peer: \"a\" is this box's own name"},
		{name: "short key", edit: func(s string) string { return strings.Replace(s, "hq7n4-kd93m-x2pwa-77fne", "short", 1) }, want: "cluster.pairing_key: must be at least 16"},
		{name: "vip is own address", edit: func(s string) string { return strings.Replace(s, "vip: 10.77.0.10/24", "vip: 10.77.0.11/24", 1) }, want: "is a box's own LAN address"},
		{name: "vip off lan", edit: func(s string) string { return strings.Replace(s, "vip: 10.77.0.10/24", "vip: 10.99.0.10/24", 1) }, want: "is not in the subnet of lan.local"},
		{name: "gateway off lan", edit: func(s string) string { return strings.Replace(s, "gateway: 10.77.0.1", "gateway: 10.1.0.1", 1) }, want: "cluster.gateway: 10.1.0.1 is not on the LAN"},
		{name: "bad address", edit: func(s string) string { return strings.Replace(s, "local: 10.78.0.1", "local: ten", 1) }, want: "cluster.crossover.local: \"ten\" is not an IP address"},
		{name: "unknown preset", extra: "  timing: turbo\n", want: "unknown preset \"turbo\""},
		{name: "lease above dead time", extra: "  lease: 1s\n", want: "cluster.lease: 1s must not exceed dead_time"},
		{name: "dead time too short", extra: "  dead_time: 100ms\n", want: "must be at least 3 heartbeat intervals"},
		{name: "failback without preferred", extra: "  failback: true\n", want: "cluster.failback: needs cluster.preferred"},
		{name: "failback with preferred", extra: "  failback: true\n  preferred: a\n"},
		{name: "preferred stranger", extra: "  preferred: c\n", want: "neither this box"},
		{name: "bool typo", extra: "  failback: yes please\n", want: "expected true or false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := twinBase + tc.extra
			if tc.edit != nil {
				text = tc.edit(text)
			}
			checkText(t, "twin.yaml", text, tc.want)
		})
	}
}

func TestClusterDefaults(t *testing.T) {
	c, err := Parse("twin.yaml", []byte(twinBase))
	if err != nil {
		t.Fatal(err)
	}
	e := c.WithDefaults().Cluster
	if e.Interval.D() != 50*time.Millisecond || e.DeadTime.D() != 300*time.Millisecond || e.Port != DefaultClusterPort {
		t.Fatalf("defaults not applied: %+v", e)
	}
	if c.Cluster.Interval != 0 {
		t.Fatal("WithDefaults changed the original")
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("again", out)
	if err != nil || !back.Equal(c) {
		t.Fatalf("round trip lost the cluster section: %v\n%s", err, out)
	}
}

// checkText parses and validates text as the config file name and wants
// it valid (want empty) or refused with an error containing want; it
// returns the valid config, or nil when it was refused as wanted.
func checkText(t *testing.T, name, text, want string) *Config {
	t.Helper()
	c, err := Parse(name, []byte(text))
	return checkParsed(t, c, err, want)
}

// checkParsed validates what Parse returned (c and err) as checkText does,
// for a test that edits the parsed config before it is validated.
func checkParsed(t *testing.T, c *Config, err error, want string) *Config {
	t.Helper()
	if err == nil {
		err = c.Validate()
	}
	switch {
	case want == "" && err != nil:
		t.Fatalf("want valid, got %v", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("want an error containing %q, got %v", want, err)
	case want != "":
		return nil
	}
	return c
}
