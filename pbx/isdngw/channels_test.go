package isdngw

import (
	"testing"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/line"
	"github.com/twinpbx/twinpbx/hw/isdn/q931"
)

// TestSpanChannelsMatchConfig: the gateway finds as many B channels on a
// line as an isdn trunk's default channels say (config.BRIChannels,
// config.PRIChannels), so that the PBX stops sending calls exactly when
// the gateway would answer cause 34.
func TestSpanChannelsMatchConfig(t *testing.T) {
	for _, tc := range []struct {
		typ  isdn.SpanType
		want int
	}{
		{isdn.BRIPointToPoint, config.BRIChannels},
		{isdn.BRIPointToMultipoint, config.BRIChannels},
		{isdn.PRI, config.PRIChannels},
	} {
		var calls []*q931.Call
		for {
			ch := line.FreeChannel(calls, tc.typ)
			if ch == 0 {
				break
			}
			calls = append(calls, &q931.Call{State: q931.Active, Channel: q931.ChannelID{Channel: ch}})
			if len(calls) > 64 {
				t.Fatalf("span type %v: FreeChannel never runs out", tc.typ)
			}
		}
		if len(calls) != tc.want {
			t.Errorf("span type %v: the gateway uses %d B channels, the config's default is %d", tc.typ, len(calls), tc.want)
		}
	}
}
