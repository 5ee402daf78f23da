package twin

import (
	"context"
	"io"
	"sync/atomic"

	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/replication"
	"github.com/twinpbx/twinpbx/firmware/rollout"
	"github.com/twinpbx/twinpbx/firmware/update"
)

// AlarmRollout is raised while the last rolling update failed, was
// abandoned, or waits for the active's half (the status says why).
const AlarmRollout = "rolling update stopped"

// rollParts are the rolling-update parts of a node (firmware/rollout):
// the orchestrator, used while this box is active, and the follower that
// takes a bundle the active offers while it is standby.
type rollParts struct {
	box      rollout.Box
	firmware string
	// run is the orchestrator of the current run and the context its
	// rolls run in; nil before Run.
	run atomic.Pointer[rollRun]
}

type rollRun struct {
	r   *rollout.Rollout
	ctx context.Context
}

// initRollout picks the box's firmware (Config.Updates, or the box's own
// disk) and names its version on the replication link.
func (n *Node) initRollout(c Config) {
	n.roll.box = c.Updates
	if n.roll.box == nil {
		n.roll.box = rollout.NewSlotBox(n.log.With("part", "update"))
	}
	n.roll.firmware = n.roll.box.Firmware()
	n.sender.SetFirmware(n.roll.firmware)
}

// startRollout makes the orchestrator and the follower for this run and
// reads the record of a roll from before a restart, which it carries on
// in ctx (rollout.ResumeIn).
func (n *Node) startRollout(ctx context.Context, rep *replica) {
	log := n.log.With("part", "rollout")
	f := rollout.NewFollower(ctx, rollout.FollowerConfig{
		Box: n.roll.box, DataDir: n.cfg.DataDir, Logger: log,
		Standby: func() bool { return n.Role() == cluster.Standby },
		Fetch: func(ctx context.Context, o replication.Offer, consume func(io.Reader) error) error {
			return replication.Fetch(ctx, replication.FetchConfig{Node: n.box.Node.Name, Dial: rep.dialTwin, TLS: rep.clientTLS}, o, consume)
		},
	})
	rep.firmware, rep.onOffer = n.roll.firmware, f.Offered
	r := rollout.New(rollout.Config{Pair: nodePair{n: n, rep: rep}, Box: n.roll.box, DataDir: n.cfg.DataDir, Logger: log})
	r.ResumeIn(ctx)
	n.roll.run.Store(&rollRun{r: r, ctx: ctx})
	if n.roll.firmware == "" {
		// Not booted from a slot (a development host, a namespace test):
		// no update stick to look for.
		return
	}
	log.Info("running firmware", "version", n.roll.firmware)
	go rollout.WatchStick(ctx, rollout.StickConfig{
		Find: update.BoxDisk.Stick, Active: func() bool { return n.Role() == cluster.Active },
		Box: n.roll.box, Roll: r, Logger: log,
	})
}

// StartRollout begins a rolling update of the pair to the bundle at path
// (on this box's file system): from the active, the standby first; from
// the standby, this box first (firmware/rollout). Status follows it.
func (n *Node) StartRollout(path string) error {
	run := n.roll.run.Load()
	if run == nil {
		return ErrNotRunning
	}
	return run.r.Start(run.ctx, path)
}

// rolloutStatus adds the firmware and the last roll to s.
func (n *Node) rolloutStatus(s *Status) {
	s.Firmware = n.roll.firmware
	run := n.roll.run.Load()
	if run == nil {
		return
	}
	st := run.r.Status()
	if st.State == "" {
		return
	}
	s.Rollout = &st
	if st.Alarm() != "" {
		s.Alarms = append(s.Alarms, cluster.Alarm{Text: AlarmRollout + ": " + st.Error, Since: st.Updated})
	}
}

// nodePair is the running pair as a roll sees it.
type nodePair struct {
	n   *Node
	rep *replica
}

func (p nodePair) Local() rollout.Local {
	role := p.n.Role()
	return rollout.Local{Active: role == cluster.Active, Standby: role == cluster.Standby, InSync: role == cluster.Standby && p.rep.InSync()}
}

func (p nodePair) Twin() rollout.Twin {
	m := p.n.mgr.Load()
	if m == nil {
		return rollout.Twin{}
	}
	tw := m.Status().Twin
	t := rollout.Twin{
		Standby: tw.Heard && tw.Role == cluster.Standby && tw.Healthy,
		Active:  tw.Heard && tw.Role == cluster.Active,
	}
	if p.n.Role() == cluster.Active {
		ss := p.n.sender.Status()
		t.InSync, t.Firmware, t.Since = ss.InSync, ss.PeerFirmware, ss.Since
	} else if rc := p.rep.receiver.Load(); rc != nil {
		t.Firmware = rc.PeerFirmware()
	}
	return t
}

func (p nodePair) Offer(o *replication.Offer, open func() (io.ReadCloser, error)) {
	p.n.sender.SetOffer(o, open)
}

func (p nodePair) Fetched() replication.FetchStatus { return p.n.sender.Fetched() }

func (p nodePair) Switchover(ctx context.Context) error { return p.n.Switchover(ctx) }
