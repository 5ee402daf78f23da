package config

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

const dispatchPairBase = `node: {name: lb-a}
sip: {listen: ["udp:10.77.0.10:5060"]}
dispatcher:
  backends:
    - {uri: "10.77.0.21"}
    - {uri: "10.77.0.22"}
cluster:
  peer: lb-b
  pairing_key: "hq7n4-kd93m-x2pwa-77fne"
  crossover: {local: 10.78.0.1, peer: 10.78.0.2}
  lan: {local: 10.77.0.11, peer: 10.77.0.12}
  lan_interface: eth0
  vip: 10.77.0.10/24
  gateway: 10.77.0.1
`

// TestDispatcherPairValidate: a dispatcher may be one of a twin pair when
// it listens on the VIP alone.
func TestDispatcherPairValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want string // substring of the error; empty: valid
	}{
		{name: "valid"},
		{name: "second port on the VIP", edit: func(s string) string {
			return strings.Replace(s, `"udp:10.77.0.10:5060"`, `"udp:10.77.0.10:5060", "udp:10.77.0.10:5080"`, 1)
		}},
		{name: "own address", edit: func(s string) string { return strings.Replace(s, "udp:10.77.0.10:5060", "udp:10.77.0.11:5060", 1) },
			want: "sip.listen[0]: udp:10.77.0.11:5060: a dispatcher pair serves on the VIP only: listen on udp:10.77.0.10:5060"},
		{name: "wildcard", edit: func(s string) string { return strings.Replace(s, "udp:10.77.0.10:5060", "udp:0.0.0.0:5070", 1) },
			want: "listen on udp:10.77.0.10:5070"},
		{name: "second listener elsewhere", edit: func(s string) string {
			return strings.Replace(s, `"udp:10.77.0.10:5060"`, `"udp:10.77.0.10:5060", "udp:10.77.0.11:5060"`, 1)
		}, want: "sip.listen[1]"},
		{name: "tcp on the own address", edit: func(s string) string {
			return strings.Replace(s, `"udp:10.77.0.10:5060"`, `"udp:10.77.0.10:5060", "tcp:10.77.0.11:5060"`, 1)
		}, want: "sip.listen[1]: tcp:10.77.0.11:5060: a dispatcher pair serves on the VIP only: listen on tcp:10.77.0.10:5060"},
		{name: "no listener", edit: func(s string) string {
			return strings.Replace(s, `{listen: ["udp:10.77.0.10:5060"]}`, `{advertise: 10.77.0.10}`, 1)
		},
			want: "sip.listen: a dispatcher pair needs a UDP listener on the VIP, e.g. udp:10.77.0.10:5060"},
		{name: "cluster still checked", edit: func(s string) string { return strings.Replace(s, "peer: lb-b", "peer: lb-a", 1) },
			want: "cluster.peer"},
		{name: "not with a site", edit: func(s string) string { return s + "site: {}\n" }, want: "remove site or dispatcher"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := dispatchPairBase
			if tc.edit != nil {
				text = tc.edit(text)
			}
			checkText(t, "lb-a.yaml", text, tc.want)
		})
	}
}

// TestDispatcherPairDocExample: the pair example of docs/DISPATCHER.md is
// a valid config of a dispatcher pair box.
func TestDispatcherPairDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/DISPATCHER.md")
	if err != nil {
		t.Fatal(err)
	}
	var example []byte
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1) {
		if strings.Contains(string(m[1]), "cluster:") {
			example = m[1]
		}
	}
	if example == nil {
		t.Fatal("docs/DISPATCHER.md has no YAML example with a cluster section")
	}
	c, err := Parse("DISPATCHER.md pair example", example)
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		t.Fatal(err)
	}
	if c.Dispatcher == nil || c.Cluster == nil {
		t.Fatalf("the pair example lacks the dispatcher or the cluster section")
	}
}

// TestDispatcherPairNoUDPOnce: a pair listening on the VIP over TCP alone
// is told once that it needs UDP, with the VIP's address, not also with
// the single dispatcher's wildcard example (which a pair refuses).
func TestDispatcherPairNoUDPOnce(t *testing.T) {
	text := strings.Replace(dispatchPairBase, `"udp:10.77.0.10:5060"`, `"tcp:10.77.0.10:5060"`, 1)
	c, err := Parse("lb-a.yaml", []byte(text))
	if err == nil {
		err = c.Validate()
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want a config error, got %v", err)
	}
	var listen []string
	for _, p := range ce.Problems {
		if p.Field == "sip.listen" {
			listen = append(listen, p.Msg)
		}
	}
	if len(listen) != 1 || !strings.Contains(listen[0], "udp:10.77.0.10:5060") {
		t.Errorf("sip.listen problems %q, want one naming udp:10.77.0.10:5060", listen)
	}
}
