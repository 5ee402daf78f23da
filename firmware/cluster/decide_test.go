package cluster

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/relay"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func testConfig(node, peer string) Config {
	side := relay.A
	if node > peer {
		side = relay.B
	}
	return Config{Node: node, Peer: peer, Side: side}.WithDefaults()
}

// world describes one tick's inputs in a few words.
type world struct {
	peer      *Beat         // the twin's latest beat; nil: silent
	heardAgo  time.Duration // how long ago it arrived (default 10 ms)
	never     bool          // silent, and never heard since start
	pathsDown []Path        // paths down while the twin is heard
	gwDown    bool
	notInSync bool
	seq, cfgv uint64
	maint, sw bool
	mon       map[string]error
	vip       probeResult // the VIP probe's answer, if it is asked for
}

func (w world) inputs(now time.Time) inputs {
	in := inputs{Now: now, GatewayOK: !w.gwDown, InSync: !w.notInSync, StoreSeq: w.seq, ConfigVersion: w.cfgv,
		Maintenance: w.maint, Switchover: w.sw, Monitors: w.mon}
	switch {
	case w.peer != nil:
		ago := w.heardAgo
		if ago == 0 {
			ago = 10 * time.Millisecond
		}
		b := *w.peer
		if b.Echo.Term != 0 && b.Echo.Sent.IsZero() {
			b.Echo.Sent = now.Add(-ago - 10*time.Millisecond)
		}
		in.Peer = PeerView{Last: b, Heard: now.Add(-ago)}
		for p := range in.Peer.Paths {
			in.Peer.Paths[p] = PathView{Up: !slices.Contains(w.pathsDown, Path(p)), LastHeard: now.Add(-ago)}
		}
	case !w.never:
		in.Peer = PeerView{Last: Beat{Node: "b", Role: Active, Term: 1}, Heard: t0.Add(-time.Second)}
	}
	return in
}

// beat builds a twin's beat; echo is the term of ours it echoes (0: none).
func beat(role Role, term, echo uint64) *Beat {
	return &Beat{Node: "b", Role: role, Term: term, GatewayOK: true, Healthy: true, Echo: Echo{Term: echo}}
}

func with(b *Beat, f func(*Beat)) *Beat { f(b); return b }

type step struct {
	at      time.Duration // since t0
	w       world
	role    Role
	acts    []string
	alarm   string // must be raised
	clear   string // must not be raised
	shared  int    // 1: the beat says SharedFault after the step, -1: it does not
	healthy int    // 1: healthy after the step (no monitor failing), -1: not
	lease   int    // 1: valid after the step, -1: not valid, 0: either
	probed  bool   // the VIP probe must have been asked for
	retries int    // the PSTN retries counted after the step (-1: none)
}

var takeoverActs = func(term string) []string {
	return []string{"term " + term, "select relay", "acquire vip", "become source", "serve " + term}
}

// TestDecide plays the decision table of docs/CLUSTER.md row by row, over
// simulated time, on the box named "a" (its twin is "b").
func TestDecide(t *testing.T) {
	standby1 := state{Role: Standby, Term: 1, SeenTerm: 1, Following: true, BootStart: t0.Add(-time.Minute)}
	active1 := state{Role: Active, Term: 1, BootStart: t0.Add(-time.Minute), LeaseExpiry: t0.Add(200 * time.Millisecond)}
	boot := state{Role: Boot}
	failing := errors.New("no answer")
	tests := []struct {
		name  string
		cfg   func(*Config)
		start state
		steps []step
	}{
		{name: "active power loss: standby takes over", start: standby1, steps: []step{
			{w: world{}, role: Active, acts: takeoverActs("2"), lease: 1, probed: true},
		}},
		{name: "active process crash: restarted node syncs and stays standby", start: boot, steps: []step{
			{w: world{peer: beat(Active, 2, 0)}, role: Sync, acts: []string{"remove stale vip", "follow"}},
			{at: 50 * time.Millisecond, w: world{peer: beat(Active, 2, 0), notInSync: true}, role: Sync},
			{at: 100 * time.Millisecond, w: world{peer: beat(Active, 2, 0)}, role: Standby},
			{at: time.Hour, w: world{peer: beat(Active, 2, 0)}, role: Standby},
		}},
		{name: "active hang: standby takes over", start: standby1, steps: []step{
			{w: world{vip: probeUnanswered}, role: Active, acts: takeoverActs("2"), probed: true},
		}},
		{name: "hung active resumes: lease expired, twin has a higher term, demotes without serving",
			start: active1, steps: []step{
				{at: 2 * time.Second, w: world{peer: beat(Active, 2, 0)}, role: Sync, acts: []string{"stop", "release vip", "follow"}, lease: -1, alarm: AlarmTwoActives},
			}},
		{name: "hung active resumes with both paths down: twin answers on the VIP, demotes",
			start: active1, steps: []step{
				{at: 2 * time.Second, w: world{vip: probeAnswered}, role: Standby, acts: []string{"stop", "release vip", "follow"}, lease: -1, probed: true, alarm: AlarmTwinServing},
			}},
		{name: "crossover cut on the standby: alarm only", start: standby1, steps: []step{
			{w: world{peer: beat(Active, 1, 1), pathsDown: []Path{Crossover}}, role: Standby, alarm: "heartbeat path crossover down"},
		}},
		{name: "crossover cut on the active: alarm only, lease renewed over the LAN", start: active1, steps: []step{
			{at: time.Second, w: world{peer: beat(Standby, 1, 1), pathsDown: []Path{Crossover}}, role: Active, lease: 1, alarm: "heartbeat path crossover down"},
		}},
		{name: "LAN cut on the active (carrier): NIC monitor fails, hands over", start: active1, steps: []step{
			{w: world{peer: beat(Standby, 1, 1), pathsDown: []Path{LAN}, mon: map[string]error{"nic": failing}},
				role: Standby, acts: []string{"stop", "release vip", "follow"}, lease: -1},
		}},
		{name: "LAN cut on the active (carrier): standby takes over on the handover request", start: standby1, steps: []step{
			{w: world{peer: with(beat(Standby, 1, 1), func(b *Beat) { b.Handover = true; b.GatewayOK = false }), pathsDown: []Path{LAN}},
				role: Active, acts: takeoverActs("2"), lease: 1},
		}},
		{name: "LAN cut on the active (silent): gateway lost while the twin reaches it, hands over", start: active1, steps: []step{
			{w: world{peer: beat(Standby, 1, 1), pathsDown: []Path{LAN}, gwDown: true}, role: Active, alarm: AlarmIsolated},
			{at: 50 * time.Millisecond, w: world{peer: beat(Standby, 1, 1), pathsDown: []Path{LAN}, gwDown: true}, role: Active, alarm: AlarmIsolated},
			{at: 100 * time.Millisecond, w: world{peer: beat(Standby, 1, 1), pathsDown: []Path{LAN}, gwDown: true},
				role: Standby, acts: []string{"stop", "release vip", "follow"}, alarm: AlarmIsolated},
		}},
		{name: "one gateway reply lost: the active stays", start: active1, steps: []step{
			{w: world{peer: beat(Standby, 1, 1), gwDown: true}, role: Active, lease: 1, alarm: AlarmIsolated},
			{at: 50 * time.Millisecond, w: world{peer: beat(Standby, 1, 1), gwDown: true}, role: Active, lease: 1},
			{at: 100 * time.Millisecond, w: world{peer: beat(Standby, 1, 1)}, role: Active, lease: 1, clear: AlarmIsolated},
			{at: 150 * time.Millisecond, w: world{peer: beat(Standby, 1, 1), gwDown: true}, role: Active, lease: 1},
			{at: 200 * time.Millisecond, w: world{peer: beat(Standby, 1, 1), gwDown: true}, role: Active, lease: 1},
		}},
		{name: "twin silent, one gateway reply lost: the lone active stays", start: active1, steps: []step{
			{w: world{gwDown: true}, role: Active, alarm: AlarmIsolated},
			{at: 50 * time.Millisecond, w: world{}, role: Active, lease: 1, alarm: AlarmTwinSilent},
			{at: 100 * time.Millisecond, w: world{gwDown: true}, role: Active},
			{at: 150 * time.Millisecond, w: world{}, role: Active, lease: 1},
		}},
		{name: "LAN cut on the standby: alarm on the standby", start: standby1, steps: []step{
			{w: world{peer: beat(Active, 1, 1), pathsDown: []Path{LAN}, gwDown: true}, role: Standby, alarm: AlarmIsolated},
		}},
		{name: "LAN cut on the standby: the active stays", start: active1, steps: []step{
			{w: world{peer: with(beat(Standby, 1, 1), func(b *Beat) { b.GatewayOK = false }), pathsDown: []Path{LAN}},
				role: Active, lease: 1, alarm: AlarmTwinGatewayNo},
		}},
		{name: "LAN and crossover cut on the active: fenced", start: active1, steps: []step{
			{w: world{gwDown: true}, role: Active, alarm: AlarmIsolated},
			{at: 50 * time.Millisecond, w: world{gwDown: true}, role: Active},
			{at: 100 * time.Millisecond, w: world{gwDown: true}, role: Fenced, acts: []string{"stop", "release vip", "fence"}, lease: -1},
			{at: time.Second, w: world{}, role: Fenced},
		}},
		{name: "both heartbeat paths broken, active fine: standby sees the VIP answer, no takeover", start: standby1, steps: []step{
			{w: world{vip: probeAnswered}, role: Standby, probed: true, alarm: AlarmTwinServing},
			{at: 50 * time.Millisecond, w: world{vip: probeAnswered}, role: Standby, probed: true},
		}},
		{name: "both heartbeat paths broken, active fine: keeps its lease through the gateway", start: active1, steps: []step{
			{at: 100 * time.Millisecond, w: world{}, role: Active, lease: 1, alarm: AlarmTwinSilent},
			{at: 150 * time.Millisecond, w: world{}, role: Active, lease: 1},
			{at: 200 * time.Millisecond, w: world{}, role: Active, lease: 1},
		}},
		{name: "own gateway down: isolated standby never takes over", start: standby1, steps: []step{
			{w: world{gwDown: true}, role: Standby, alarm: AlarmIsolated},
			{at: time.Minute, w: world{gwDown: true}, role: Standby, alarm: AlarmIsolated},
		}},
		{name: "reboot and rejoin: the active stays (sticky)", start: active1, steps: []step{
			{w: world{peer: beat(Boot, 1, 0)}, role: Active},
			{at: 50 * time.Millisecond, w: world{peer: beat(Sync, 1, 1)}, role: Active, lease: 1},
			{at: time.Hour, w: world{peer: beat(Standby, 1, 1)}, role: Active, lease: 1},
		}},
		{name: "boot: silent twin, wait boot_wait, then take over", start: boot, steps: []step{
			{w: world{never: true}, role: Boot, acts: []string{"remove stale vip"}},
			{at: time.Second, w: world{never: true}, role: Boot},
			{at: 2 * time.Second, w: world{never: true, vip: probeUnanswered}, role: Active, acts: takeoverActs("1"), probed: true, lease: 1},
		}},
		{name: "boot: twin active, sync then standby", start: boot, steps: []step{
			{w: world{peer: beat(Active, 4, 0), notInSync: true}, role: Sync, acts: []string{"remove stale vip", "follow"}},
			{at: time.Second, w: world{peer: beat(Active, 4, 0)}, role: Standby},
		}},
		{name: "both boot at once: newer store sequence wins", start: boot, steps: []step{
			{w: world{peer: beat(Boot, 0, 0), seq: 10}, role: Active, acts: append([]string{"remove stale vip"}, takeoverActs("1")...), lease: -1},
			{at: 50 * time.Millisecond, w: world{peer: beat(Sync, 0, 1), seq: 10}, role: Active, lease: 1},
		}},
		{name: "both boot at once: older store sequence follows", start: boot, steps: []step{
			{w: world{peer: with(beat(Boot, 0, 0), func(b *Beat) { b.StoreSeq = 11 }), seq: 10}, role: Sync, acts: []string{"remove stale vip", "follow"}},
		}},
		{name: "both boot at once: config version breaks a store tie", start: boot, steps: []step{
			{w: world{peer: with(beat(Boot, 0, 0), func(b *Beat) { b.StoreSeq, b.ConfigVersion = 10, 3 }), seq: 10, cfgv: 2}, role: Sync, acts: []string{"remove stale vip", "follow"}},
		}},
		{name: "both boot at once: preferred breaks a data tie", cfg: func(c *Config) { c.Preferred = "b" }, start: boot, steps: []step{
			{w: world{peer: beat(Boot, 0, 0)}, role: Sync, acts: []string{"remove stale vip", "follow"}},
		}},
		{name: "both boot at once: lower name breaks the last tie", start: boot, steps: []step{
			{w: world{peer: beat(Boot, 0, 0)}, role: Active, acts: append([]string{"remove stale vip"}, takeoverActs("1")...)},
		}},
		{name: "both boot at once: a twin without the gateway loses", start: boot, steps: []step{
			{w: world{peer: with(beat(Boot, 0, 0), func(b *Beat) { b.GatewayOK = false; b.StoreSeq = 99 })}, role: Active, acts: append([]string{"remove stale vip"}, takeoverActs("1")...)},
		}},
		{name: "failback: preferred standby gets service back after the delay",
			cfg:   func(c *Config) { c.Preferred, c.Failback, c.FailbackDelay = "b", true, time.Minute },
			start: active1, steps: []step{
				{w: world{peer: beat(Standby, 1, 1)}, role: Active},
				{at: 30 * time.Second, w: world{peer: beat(Standby, 1, 1)}, role: Active},
				{at: 40 * time.Second, w: world{peer: beat(Standby, 1, 1), notInSync: true}, role: Active},
				{at: 41 * time.Second, w: world{peer: beat(Standby, 1, 1)}, role: Active},
				{at: 100 * time.Second, w: world{peer: beat(Standby, 1, 1)}, role: Active},
				{at: 101 * time.Second, w: world{peer: beat(Standby, 1, 1)}, role: Standby, acts: []string{"stop", "release vip", "follow"}},
			}},
		{name: "sticky: no failback without failback", cfg: func(c *Config) { c.Preferred = "b" }, start: active1, steps: []step{
			{at: time.Hour, w: world{peer: beat(Standby, 1, 1)}, role: Active},
		}},
		{name: "switchover: hands over to a healthy standby", start: active1, steps: []step{
			{w: world{peer: beat(Standby, 1, 1), sw: true}, role: Standby, acts: []string{"stop", "release vip", "follow"}},
			{at: 50 * time.Millisecond, w: world{peer: beat(Standby, 1, 1)}, role: Standby},
			{at: 100 * time.Millisecond, w: world{peer: beat(Active, 2, 1)}, role: Standby},
		}},
		{name: "switchover: refused while the twin is syncing", start: active1, steps: []step{
			{w: world{peer: beat(Sync, 1, 1), sw: true}, role: Active, alarm: AlarmNoHandover},
		}},
		{name: "handover flag: the box that handed over does not take back", start: state{Role: Standby, Term: 1, Following: true, Handover: true, HandoverAt: t0}, steps: []step{
			{at: time.Second, w: world{peer: with(beat(Standby, 1, 0), func(b *Beat) { b.StoreSeq = 0 }), seq: 5}, role: Standby},
			{at: 3 * time.Second, w: world{peer: beat(Standby, 1, 0), seq: 5}, role: Active, acts: takeoverActs("2")},
		}},
		{name: "maintenance on the active: hands over first", start: active1, steps: []step{
			{w: world{peer: beat(Standby, 1, 1), maint: true}, role: Maintenance, acts: []string{"stop", "release vip", "follow"}},
			{at: time.Second, w: world{maint: true}, role: Maintenance},
		}},
		{name: "maintenance on the active without a standby: stays active", start: active1, steps: []step{
			{w: world{peer: beat(Boot, 1, 1), maint: true}, role: Active, alarm: AlarmNoHandover},
		}},
		{name: "maintenance: never takes over, leaves to standby", start: standby1, steps: []step{
			{w: world{peer: beat(Active, 1, 0), maint: true}, role: Maintenance},
			{at: time.Second, w: world{maint: true, vip: probeUnanswered}, role: Maintenance},
			{at: 2 * time.Second, w: world{peer: beat(Active, 1, 0)}, role: Sync},
		}},
		{name: "fail counter: restart in place up to the threshold, then migrate", start: active1, steps: []step{
			{w: world{peer: beat(Standby, 1, 1), mon: map[string]error{"pbx": failing}}, role: Active, acts: []string{"restart pbx"}},
			{at: 50 * time.Millisecond, w: world{peer: beat(Standby, 1, 1), mon: map[string]error{"pbx": nil}}, role: Active},
			{at: 100 * time.Millisecond, w: world{peer: beat(Standby, 1, 1), mon: map[string]error{"pbx": failing}}, role: Active, acts: []string{"restart pbx"}},
			{at: 150 * time.Millisecond, w: world{peer: beat(Standby, 1, 1), mon: map[string]error{"pbx": failing}}, role: Active, acts: []string{"restart pbx"}},
			{at: 200 * time.Millisecond, w: world{peer: beat(Standby, 1, 1), mon: map[string]error{"pbx": failing}}, role: Standby, acts: []string{"stop", "release vip", "follow"}},
		}},
		{name: "fail counter: failures outside the window are forgotten", cfg: func(c *Config) { c.FailureTimeout = time.Minute }, start: active1, steps: []step{
			{w: world{peer: beat(Standby, 1, 1), mon: map[string]error{"pbx": failing}}, role: Active, acts: []string{"restart pbx"}},
			{at: 10 * time.Second, w: world{peer: beat(Standby, 1, 1), mon: map[string]error{"pbx": failing}}, role: Active, acts: []string{"restart pbx"}},
			{at: 20 * time.Second, w: world{peer: beat(Standby, 1, 1), mon: map[string]error{"pbx": failing}}, role: Active, acts: []string{"restart pbx"}},
			{at: 90 * time.Second, w: world{peer: beat(Standby, 1, 1), mon: map[string]error{"pbx": failing}}, role: Active, acts: []string{"restart pbx"}},
		}},
		{name: "fail counter: no twin to migrate to, keeps restarting", start: active1, steps: []step{
			{w: world{peer: beat(Sync, 1, 1), mon: map[string]error{"pbx": failing}}, role: Active, acts: []string{"restart pbx"}},
			{at: 50 * time.Millisecond, w: world{peer: beat(Sync, 1, 1), mon: map[string]error{"pbx": failing}}, role: Active, acts: []string{"restart pbx"}},
			{at: 100 * time.Millisecond, w: world{peer: beat(Sync, 1, 1), mon: map[string]error{"pbx": failing}}, role: Active, acts: []string{"restart pbx"}},
			{at: 150 * time.Millisecond, w: world{peer: beat(Sync, 1, 1), mon: map[string]error{"pbx": failing}}, role: Active, acts: []string{"restart pbx"}, alarm: AlarmNoHandover},
		}},
		{name: "failing monitor on a standby: unhealthy, not elected", start: state{Role: Standby, Term: 1, Following: true}, steps: []step{
			{w: world{peer: beat(Standby, 1, 0), seq: 9, mon: map[string]error{"store": failing}}, role: Standby, alarm: "monitor store failing"},
		}},
		{name: "two actives with one term: the higher name demotes", start: state{Role: Active, Term: 3, LeaseExpiry: t0.Add(time.Second)}, cfg: func(c *Config) { *c = testConfig("c", "b") }, steps: []step{
			{w: world{peer: beat(Active, 3, 3)}, role: Sync, acts: []string{"stop", "release vip", "follow"}, lease: -1},
		}},
		{name: "two actives with one term: the lower name stays, without a lease", start: state{Role: Active, Term: 3, LeaseExpiry: t0.Add(-time.Second)}, steps: []step{
			{w: world{peer: beat(Active, 3, 3)}, role: Active, lease: -1, alarm: AlarmTwoActives},
		}},
		{name: "active that hung through its twin's term steps down for an election", start: active1, steps: []step{
			{at: 5 * time.Second, w: world{peer: beat(Sync, 2, 1)}, role: Standby, acts: []string{"stop", "release vip", "follow"}, lease: -1},
			{at: 5050 * time.Millisecond, w: world{peer: beat(Standby, 2, 1)}, role: Active, acts: takeoverActs("3")},
		}},
		{name: "lease needs the twin to echo this term", start: state{Role: Active, Term: 3}, steps: []step{
			{w: world{peer: beat(Sync, 2, 2)}, role: Active, lease: -1},
			{at: 50 * time.Millisecond, w: world{peer: beat(Sync, 2, 3)}, role: Active, lease: 1},
		}},
		{name: "standby waits after a failed takeover", start: state{Role: Standby, Term: 1, Following: true, HoldUntil: t0.Add(300 * time.Millisecond)}, steps: []step{
			{w: world{vip: probeUnanswered}, role: Standby, probed: true},
			{at: 300 * time.Millisecond, w: world{vip: probeUnanswered}, role: Active, probed: true, acts: takeoverActs("2")},
		}},
	}
	tests = append(tests, pstnRows()...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("a", "b")
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			d := &decider{cfg: cfg, monitors: map[string]monitorSpec{
				"pbx": {Restartable: true, ActiveOnly: true}, "nic": {}, "store": {},
				"pstn": {Restartable: true, ActiveOnly: true, HoldDown: pstnHoldDown, BothAlarm: alarmLineBoth},
			}}
			s := tc.start
			if s.Since.IsZero() {
				s.Since = t0.Add(-time.Hour)
			}
			for i, st := range tc.steps {
				now := t0.Add(st.at)
				in := st.w.inputs(now)
				res := d.decide(s, in)
				probed := res.Probe
				if res.Probe {
					if st.w.vip == probeNotRun {
						st.w.vip = probeUnanswered
					}
					in.VIP = st.w.vip
					res = d.decide(s, in)
					if res.Probe {
						t.Fatalf("step %d: probe asked for twice", i)
					}
				}
				if probed != st.probed {
					t.Errorf("step %d: probed = %v, want %v", i, probed, st.probed)
				}
				var acts []string
				for _, a := range res.Actions {
					acts = append(acts, a.String())
				}
				if res.Next.Role != st.role {
					t.Errorf("step %d: role %v, want %v (reason %q)", i, res.Next.Role, st.role, res.Next.Reason)
				}
				if !slices.Equal(acts, st.acts) {
					t.Errorf("step %d: actions %q, want %q", i, acts, st.acts)
				}
				if st.alarm != "" && !slices.Contains(res.Next.Alarms, st.alarm) {
					t.Errorf("step %d: alarms %q lack %q", i, res.Next.Alarms, st.alarm)
				}
				if st.clear != "" && slices.Contains(res.Next.Alarms, st.clear) {
					t.Errorf("step %d: alarm %q still raised", i, st.clear)
				}
				if f := res.Next.sharedFault(); (st.shared == 1 && !f) || (st.shared == -1 && f) {
					t.Errorf("step %d: shared fault = %v, want %d", i, f, st.shared)
				}
				if h := res.Next.healthy(); (st.healthy == 1 && !h) || (st.healthy == -1 && h) {
					t.Errorf("step %d: healthy = %v (failing %v), want %d", i, h, res.Next.Failing, st.healthy)
				}
				if v := res.Next.leaseValid(now); (st.lease == 1 && !v) || (st.lease == -1 && v) {
					t.Errorf("step %d: lease valid = %v (expiry %v), want %d", i, v, res.Next.LeaseExpiry.Sub(now), st.lease)
				}
				if r := res.Next.Retries["pstn"]; st.retries != 0 && r != max(st.retries, 0) {
					t.Errorf("step %d: %d PSTN retries, want %d", i, r, max(st.retries, 0))
				}
				if res.Next.Role == Active && res.Next.Term <= s.Term && s.Role != Active {
					t.Errorf("step %d: took over without a new term (%d)", i, res.Next.Term)
				}
				s = res.Next
			}
		})
	}
}

// TestDecideReasons checks that role changes say why, in words an
// operator reads in `twinpbx status`.
func TestDecideReasons(t *testing.T) {
	d := &decider{cfg: testConfig("a", "b")}
	res := d.decide(state{Role: Boot}, world{peer: with(beat(Boot, 0, 0), func(b *Beat) { b.StoreSeq = 3 })}.inputs(t0))
	if res.Next.Role != Sync || !strings.Contains(res.Next.Reason, "store sequence") {
		t.Fatalf("role %v reason %q, want SYNC because of the store sequence", res.Next.Role, res.Next.Reason)
	}
}
