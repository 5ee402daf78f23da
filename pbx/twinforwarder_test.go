package pbx

import (
	"testing"

	"github.com/twinpbx/twinpbx/firmware/config"
)

func TestTwinForwarder(t *testing.T) {
	if f := twinForwarder(&config.Config{}); f != nil {
		t.Fatal("a box without a twin has a twin's forwarder")
	}
	cfg := &config.Config{Cluster: &config.Cluster{LAN: config.Path{Local: "192.0.2.11", Peer: "192.0.2.12"}}}
	f := twinForwarder(cfg)
	if f == nil {
		t.Fatal("no forwarder on a twin")
	}
	for src, want := range map[string]bool{
		"udp:192.0.2.12:5060":  true,  // the twin's forwarder
		"UDP:192.0.2.12:5080":  true,  // any port of it
		"udp:192.0.2.11:5060":  false, // this box's own: alive while we run
		"tcp:192.0.2.12:40000": false, // a phone's own connection
		"udp:192.0.2.50:5062":  false, // a phone
		"udp:192.0.2.12":       false, // malformed
		"":                     false,
	} {
		if got := f(src); got != want {
			t.Errorf("forwarder(%q) = %v, want %v", src, got, want)
		}
	}
}
