package twin

import (
	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/cluster/heartbeat"
)

// beats adapts heartbeat.Heartbeat to cluster.Heartbeat.
type beats struct{ hb *heartbeat.Heartbeat }

var _ cluster.Heartbeat = beats{}

// pathNames are the heartbeat path names by cluster.Path.
var pathNames = [cluster.NumPaths]string{cluster.Crossover: "crossover", cluster.LAN: "lan"}

func (b beats) SetLocal(c cluster.Beat) { b.hb.SetLocal(toWire(c)) }

func (b beats) SendNow() { b.hb.SendNow() }

func (b beats) Events() <-chan struct{} { return b.hb.Changed() }

func (b beats) Peer() cluster.PeerView { return fromWire(b.hb.Peer()) }

// toWire is what the heartbeat layer carries of a manager's beat.
func toWire(c cluster.Beat) heartbeat.Beat {
	var f heartbeat.Flags
	for _, x := range []struct {
		on bool
		f  heartbeat.Flags
	}{
		{c.Goodbye, heartbeat.Goodbye},
		{c.Handover, heartbeat.HandoverRequest},
		{c.Maintenance, heartbeat.Maintenance},
		{c.GatewayOK, heartbeat.GatewayOK},
		{c.Healthy, heartbeat.Healthy},
		{c.SharedFault, heartbeat.SharedFault},
	} {
		if x.on {
			f |= x.f
		}
	}
	return heartbeat.Beat{
		Role:            heartbeat.Role(c.Role),
		Term:            c.Term,
		StoreSeq:        c.StoreSeq,
		ConfigVersion:   c.ConfigVersion,
		Flags:           f,
		WatchdogTimeout: c.WatchdogTimeout,
	}
}

// fromWire turns the heartbeat layer's view of the twin into the
// manager's.
func fromWire(v heartbeat.PeerView) cluster.PeerView {
	var out cluster.PeerView
	for i, name := range pathNames {
		pv, ok := v.Path(name)
		if !ok {
			continue
		}
		out.Paths[i] = cluster.PathView{Up: pv.Up, LastHeard: pv.Last.Arrived, Latency: pv.RTT}
	}
	if !v.Heard {
		return out
	}
	r := v.Latest
	f := r.Beat.Flags
	out.Heard = r.Arrived
	out.Last = cluster.Beat{
		Node:            r.Node,
		Role:            cluster.Role(r.Beat.Role),
		Term:            r.Beat.Term,
		StoreSeq:        r.Beat.StoreSeq,
		ConfigVersion:   r.Beat.ConfigVersion,
		GatewayOK:       f&heartbeat.GatewayOK != 0,
		Healthy:         f&heartbeat.Healthy != 0,
		Goodbye:         f&heartbeat.Goodbye != 0,
		Handover:        f&heartbeat.HandoverRequest != 0,
		Maintenance:     f&heartbeat.Maintenance != 0,
		SharedFault:     f&heartbeat.SharedFault != 0,
		WatchdogTimeout: r.Beat.WatchdogTimeout,
		Incarnation:     r.Incarnation,
		Sent:            r.Sent,
		Echo:            cluster.Echo{Sent: r.Echo.Sent, Term: r.Echo.Term},
	}
	return out
}
