package pbx

import (
	"net/netip"
	"strings"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// twinForwarder reports whether a binding's source is the twin's
// own-address forwarder (docs/CLUSTER.md, "Both boxes take requests"):
// a phone on TCP registered through it is reached through the twin, and
// rung at its Contact should the twin's box be gone (b2bua's
// forwarder.go). The forwarder sends from the twin's LAN address. Nil off
// a twin pair.
func twinForwarder(cfg *config.Config) func(source string) bool {
	if cfg.Cluster == nil {
		return nil
	}
	peer, err := netip.ParseAddr(strings.TrimSpace(cfg.Cluster.LAN.Peer))
	if err != nil {
		return nil // the config's validation refuses it
	}
	peer = peer.Unmap()
	return func(source string) bool {
		tp, hp, err := location.ParseSource(source)
		if err != nil || tp != "UDP" {
			return false
		}
		ap, err := netip.ParseAddrPort(hp)
		return err == nil && ap.Addr().Unmap() == peer
	}
}
