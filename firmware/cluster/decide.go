package cluster

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// state is what the decisions remember from one tick to the next.
type state struct {
	Role Role
	// Since is when Role was entered; Reason why.
	Since  time.Time
	Reason string
	// Term is the persisted term; SeenTerm the highest one seen in the
	// twin's beats.
	Term     uint64
	SeenTerm uint64
	// BootStart is when BOOT began (zero: not yet).
	BootStart time.Time
	// LeaseExpiry: this box may serve until then (only while ACTIVE).
	LeaseExpiry time.Time
	// LeaseByGateway is set when the lease was last renewed by the gateway
	// alone (reported in status).
	LeaseByGateway bool
	// Handover is this box's handover flag, set at HandoverAt.
	Handover   bool
	HandoverAt time.Time
	// Following is true once the replica was told to follow the twin.
	Following bool
	// HoldUntil: no takeover before then (after a failed one).
	HoldUntil time.Time
	// PeerHealthySince is when the twin was first seen a healthy standby
	// in the current stretch (failback).
	PeerHealthySince time.Time
	// Fails holds each monitor's failure times within FailureTimeout;
	// Failing each monitor's last result.
	Fails   map[string][]time.Time
	Failing map[string]string
	// LeftFor holds, per monitor with a hold-down, when this box handed
	// service over because it failed; Stuck, since when a monitor with a
	// hold-down has failed on both boxes while this one stays active (it
	// latched). Either is told to the twin as Beat.SharedFault.
	LeftFor map[string]time.Time
	Stuck   map[string]time.Time
	// Retries counts, per monitor, the handovers of a latched box that
	// gave the twin's side another try (docs/CLUSTER.md, "No ping-pong",
	// rule 3).
	Retries map[string]int
	// GatewayMisses counts the gateway probes in a row that went
	// unanswered (zero once one is answered).
	GatewayMisses int
	// Alarms are the conditions raised by the last decision.
	Alarms []string
}

// GatewayLostAfter is how many gateway probes in a row must go unanswered
// before the active acts on the loss (hands over to a twin that reaches
// the gateway, or fences itself when the twin is silent too). One lost
// ARP reply (a busy router, a stalled tick) is not a lost LAN; a lease is
// never renewed by an unanswered probe, so waiting serves nothing stale.
const GatewayLostAfter = 3

func (s state) clone() state {
	s.Fails = maps.Clone(s.Fails)
	for k, v := range s.Fails {
		s.Fails[k] = slices.Clone(v)
	}
	s.Failing = maps.Clone(s.Failing)
	s.LeftFor = maps.Clone(s.LeftFor)
	s.Stuck = maps.Clone(s.Stuck)
	s.Retries = maps.Clone(s.Retries)
	s.Alarms = nil
	return s
}

// leaseValid reports whether the lease holds at now.
func (s state) leaseValid(now time.Time) bool {
	return s.Role == Active && now.Before(s.LeaseExpiry)
}

// healthy reports whether no monitor fails.
func (s state) healthy() bool { return len(s.Failing) == 0 }

// sharedFault reports whether the twin must not be handed service for a
// monitor with a hold-down (Beat.SharedFault).
func (s state) sharedFault() bool { return len(s.LeftFor) > 0 || len(s.Stuck) > 0 }

// probeResult is the outcome of the VIP probe, if it was run this tick.
type probeResult int

const (
	probeNotRun probeResult = iota
	probeAnswered
	probeUnanswered
)

// inputs is one tick's snapshot of everything the decisions look at.
type inputs struct {
	Now  time.Time
	Peer PeerView
	// GatewayOK is this box's view of the tie-breaker.
	GatewayOK bool
	// VIP is the VIP probe's result; decide asks for it when it needs it.
	VIP probeResult
	// ProbeEnd is when the VIP probe finished (zero: not run). A lease
	// the gateway renews after an unanswered probe counts from then, not
	// from Now: the probe may outlast ProbeSpan.
	ProbeEnd time.Time
	// Replica state.
	InSync        bool
	StoreSeq      uint64
	ConfigVersion uint64
	// Monitors holds the results of the checks run this tick, by name.
	Monitors map[string]error
	// Maintenance and Switchover are the administrator's requests.
	Maintenance bool
	Switchover  bool
}

// actionKind is one step the manager carries out.
type actionKind int

const (
	actRemoveStaleVIP actionKind = iota
	actSetTerm
	actSelectRelay
	actAcquireVIP
	actBecomeSource
	actServe
	actStop
	actReleaseVIP
	actBecomeFollower
	actRestart
	actFence
)

type action struct {
	Kind   actionKind
	Term   uint64 // actSetTerm, actServe
	Name   string // actRestart: the monitor
	Reason string // actFence
}

func (a action) String() string {
	switch a.Kind {
	case actRemoveStaleVIP:
		return "remove stale vip"
	case actSetTerm:
		return fmt.Sprintf("term %d", a.Term)
	case actSelectRelay:
		return "select relay"
	case actAcquireVIP:
		return "acquire vip"
	case actBecomeSource:
		return "become source"
	case actServe:
		return fmt.Sprintf("serve %d", a.Term)
	case actStop:
		return "stop"
	case actReleaseVIP:
		return "release vip"
	case actBecomeFollower:
		return "follow"
	case actRestart:
		return "restart " + a.Name
	case actFence:
		return "fence"
	}
	return fmt.Sprintf("action(%d)", int(a.Kind))
}

// result is one decision: the next state and the actions to carry out in
// order, or a request to run the VIP probe and decide again.
type result struct {
	Next    state
	Actions []action
	Probe   bool
}

// monitorSpec is what the decisions need to know of a monitor.
type monitorSpec struct {
	Restartable bool
	ActiveOnly  bool
	// HoldDown and BothAlarm: see Monitor.
	HoldDown  time.Duration
	BothAlarm string
}

// bothAlarm is the alarm raised while monitor name fails on both boxes.
func (m monitorSpec) bothAlarm(name string) string {
	if m.BothAlarm != "" {
		return m.BothAlarm
	}
	return "monitor " + name + " failing on both boxes"
}

// decider holds the settings the decisions depend on.
type decider struct {
	cfg      Config
	monitors map[string]monitorSpec
}

// Alarm texts raised by the decisions.
const (
	AlarmIsolated      = "isolated: the gateway does not answer"
	AlarmTwinServing   = "heartbeat paths broken, twin serving"
	AlarmTwinSilent    = "twin silent on both paths"
	AlarmTwoActives    = "twin is active too"
	AlarmNoHandover    = "cannot hand over: the twin is not a healthy standby"
	AlarmTwinGatewayNo = "twin does not reach the gateway"
)

// alarmPathDown and alarmMonitor name per-path and per-monitor alarms.
func alarmPathDown(p Path) string     { return "heartbeat path " + p.String() + " down" }
func alarmMonitor(name string) string { return "monitor " + name + " failing" }

// decide is the decision table of docs/CLUSTER.md: given the last state
// and this tick's inputs, the next state and the actions, in order.
func (d *decider) decide(prev state, in inputs) result {
	s := prev.clone()
	t := &tick{d: d, s: &s, in: in}
	t.observe()
	switch s.Role {
	case Boot:
		t.boot()
	case Sync, Standby:
		t.standby()
	case Active:
		t.active()
	case Maintenance:
		t.maintenance()
	case Fenced:
		// Nothing: the watchdog resets the box.
	}
	if t.probe {
		return result{Next: prev, Probe: true}
	}
	if s.Role != Active {
		s.LeaseExpiry = time.Time{}
		s.LeaseByGateway = false
	}
	slices.Sort(t.alarms)
	s.Alarms = slices.Compact(t.alarms)
	return result{Next: s, Actions: t.acts}
}

// tick is one run of decide.
type tick struct {
	d      *decider
	s      *state
	in     inputs
	acts   []action
	alarms []string
	probe  bool
}

func (t *tick) do(a ...action) { t.acts = append(t.acts, a...) }

func (t *tick) alarm(a string) { t.alarms = append(t.alarms, a) }

// heard reports whether the twin is heard on some path.
func (t *tick) heard() bool { return !t.in.Peer.Silent() && !t.in.Peer.Heard.IsZero() }

// beat is the twin's latest beat (meaningful only if heard).
func (t *tick) beat() Beat { return t.in.Peer.Last }

// peerActive reports whether the twin is heard and says it is active.
func (t *tick) peerActive() bool { return t.heard() && t.beat().Role == Active }

// peerLeaving reports whether the twin, no longer active, asks this box
// to take over at once (handover request or goodbye).
func (t *tick) peerLeaving() bool {
	b := t.beat()
	return t.heard() && b.Role != Active && (b.Handover || b.Goodbye)
}

// observe updates what every role tracks: the twin's term, monitor
// results, the handover flag, and the alarms that only describe.
func (t *tick) observe() {
	s, in := t.s, t.in
	if t.heard() && t.beat().Term > s.SeenTerm {
		s.SeenTerm = t.beat().Term
	}
	if s.Handover && (in.Now.Sub(s.HandoverAt) >= t.d.cfg.HandoverTimeout || (t.peerActive() && t.beat().Term > s.Term)) {
		s.Handover = false
	}
	if !in.GatewayOK {
		s.GatewayMisses++
		t.alarm(AlarmIsolated)
	} else {
		s.GatewayMisses = 0
	}
	if t.heard() {
		for p, pv := range in.Peer.Paths {
			if !pv.Up {
				t.alarm(alarmPathDown(Path(p)))
			}
		}
		if !t.beat().GatewayOK {
			t.alarm(AlarmTwinGatewayNo)
		}
	} else if s.Role != Boot || !in.Peer.Heard.IsZero() {
		t.alarm(AlarmTwinSilent)
	}
	t.observeMonitors()
}

// observeMonitors records this tick's monitor results and counts
// failures within the failure window.
func (t *tick) observeMonitors() {
	s, now := t.s, t.in.Now
	for _, name := range slices.Sorted(maps.Keys(t.in.Monitors)) {
		err := t.in.Monitors[name]
		if errors.Is(err, ErrNoVerdict) {
			continue
		}
		if err == nil {
			delete(s.Failing, name)
			// The shared resource works on this box again: the line is
			// back, or it never was down on this side.
			delete(s.LeftFor, name)
			delete(s.Stuck, name)
			continue
		}
		if s.Failing == nil {
			s.Failing = map[string]string{}
		}
		s.Failing[name] = err.Error()
		if s.Role != Active {
			continue // counted only where a restart follows
		}
		if s.Fails == nil {
			s.Fails = map[string][]time.Time{}
		}
		kept := s.Fails[name][:0:0]
		for _, at := range s.Fails[name] {
			if now.Sub(at) < t.d.cfg.FailureTimeout {
				kept = append(kept, at)
			}
		}
		s.Fails[name] = append(kept, now)
	}
	for name := range s.Failing {
		t.alarm(alarmMonitor(name))
	}
	for name, at := range s.LeftFor {
		if now.Sub(at) >= t.d.monitors[name].HoldDown {
			delete(s.LeftFor, name)
		}
	}
	for name := range s.Stuck {
		t.alarm(t.d.monitors[name].bothAlarm(name))
	}
}

// become moves to role for reason.
func (t *tick) become(role Role, reason string) {
	if t.s.Role == role {
		return
	}
	t.s.Role = role
	t.s.Since = t.in.Now
	t.s.Reason = reason
	if role != Active && role != Fenced && role != Boot && !t.s.Following {
		t.do(action{Kind: actBecomeFollower})
		t.s.Following = true
	}
}

// boot waits to hear the twin, then follows it or takes over.
func (t *tick) boot() {
	s, in := t.s, t.in
	if s.BootStart.IsZero() {
		s.BootStart = in.Now
		t.do(action{Kind: actRemoveStaleVIP})
	}
	switch {
	case in.Maintenance:
		t.become(Maintenance, "maintenance requested")
	case t.peerActive():
		t.become(Sync, "twin is active")
	case t.peerLeaving():
		t.takeover("twin handed over")
	case t.heard():
		if t.elected() {
			t.takeover("elected: " + t.whyElected())
		} else {
			t.become(Sync, "twin elected: "+t.whyElected())
		}
	case in.Now.Sub(s.BootStart) >= t.d.cfg.BootWait:
		t.silentTwin()
	}
}

// standby covers SYNC and STANDBY: follow the active twin, take over when
// it hands over, when it is gone, or when no one is active and this box
// is elected.
func (t *tick) standby() {
	s, in := t.s, t.in
	switch {
	case in.Maintenance:
		t.become(Maintenance, "maintenance requested")
	case t.peerLeaving() && !s.Handover:
		if t.beat().Goodbye {
			t.takeover("twin said goodbye")
		} else {
			t.takeover("twin handed over")
		}
	case t.peerActive():
		if s.Role == Sync && in.InSync {
			t.become(Standby, "caught up with the twin")
		}
	case t.heard():
		if t.elected() {
			t.takeover("elected: " + t.whyElected())
		} else if s.Role == Sync && in.InSync {
			t.become(Standby, "caught up with the twin")
		}
	default:
		t.silentTwin()
	}
}

// silentTwin takes over from a silent twin if the gateway answers and the
// VIP does not (docs/CLUSTER.md, timing argument).
func (t *tick) silentTwin() {
	if !t.in.GatewayOK {
		return // alarm isolated already raised
	}
	switch t.in.VIP {
	case probeNotRun:
		t.probe = true
	case probeAnswered:
		t.alarm(AlarmTwinServing)
		if t.s.Role == Boot {
			t.become(Sync, "twin silent but serving on the VIP")
		}
	case probeUnanswered:
		if t.takeover("twin silent on both paths") {
			t.s.LeaseExpiry = t.probeEnd().Add(t.d.cfg.ProbeSpan)
			t.s.LeaseByGateway = true
		}
	}
}

// probeEnd is when the VIP probe of this tick finished, or the tick's
// start when none ran. A lease renewed by the gateway counts from then:
// never later than the moment the decision is taken, so a box that hangs
// right after it stops serving within ProbeSpan, as the timing argument
// of docs/CLUSTER.md needs; and never earlier than the probe's end, so a
// probe longer than ProbeSpan does not leave the lease lapsed on arrival.
func (t *tick) probeEnd() time.Time {
	if t.in.VIP == probeNotRun || t.in.ProbeEnd.Before(t.in.Now) {
		return t.in.Now
	}
	return t.in.ProbeEnd
}

// takeover becomes ACTIVE under a new term, in takeover order. The lease
// starts with the twin's acknowledgement, its handover request, or (set by
// the caller) the gateway.
func (t *tick) takeover(reason string) bool {
	s, in := t.s, t.in
	if in.Now.Before(s.HoldUntil) {
		return false
	}
	term := max(s.Term, s.SeenTerm) + 1
	s.Term = term
	s.Handover = false
	s.Following = false
	s.PeerHealthySince = time.Time{}
	s.Fails = nil
	s.LeaseExpiry = time.Time{}
	s.LeaseByGateway = false
	t.become(Active, reason)
	t.do(action{Kind: actSetTerm, Term: term},
		action{Kind: actSelectRelay},
		action{Kind: actAcquireVIP},
		action{Kind: actBecomeSource},
		action{Kind: actServe, Term: term})
	if t.peerLeaving() && t.echoOK() {
		t.renew(t.beat().Echo.Sent.Add(t.d.cfg.Lease), false)
	}
	return true
}

// echoOK reports whether the twin's echo names a beat this box sent: not
// zero and not in the future (a lease never reaches past now + Lease).
func (t *tick) echoOK() bool {
	e := t.beat().Echo.Sent
	return !e.IsZero() && !e.After(t.in.Now)
}

// eligible reports whether a beat's sender may be elected.
func eligible(b Beat) bool {
	return (b.Role == Boot || b.Role == Sync || b.Role == Standby) && !b.Maintenance && !b.Handover && !b.Goodbye
}

// elected reports whether this box, rather than its heard twin, should
// become active when neither is: the one that reaches the gateway and is
// healthy, then the newer store sequence, then the newer config version,
// then the preferred box, then the lower name. Both boxes compute the
// same answer from the same beats.
func (t *tick) elected() bool {
	if t.in.Maintenance || t.s.Handover {
		return false
	}
	return t.compare() > 0
}

// compare ranks this box against its twin: >0 this box, <0 the twin.
func (t *tick) compare() int {
	c, _ := t.rank()
	return c
}

func (t *tick) whyElected() string {
	_, why := t.rank()
	return why
}

func (t *tick) rank() (int, string) {
	b, in := t.beat(), t.in
	if !eligible(b) {
		return 1, "twin not eligible"
	}
	me, peer := in.GatewayOK && t.s.healthy(), b.GatewayOK && b.Healthy
	if me != peer {
		return boolRank(me), "health and gateway"
	}
	if c := cmpUint(in.StoreSeq, b.StoreSeq); c != 0 {
		return c, "store sequence"
	}
	if c := cmpUint(in.ConfigVersion, b.ConfigVersion); c != 0 {
		return c, "config version"
	}
	return t.tieBreak(), t.tieBreakWhy()
}

// tieBreak ranks the boxes by configuration alone: the preferred one,
// then the lower name. >0: this box.
func (t *tick) tieBreak() int {
	cfg := t.d.cfg
	switch cfg.Preferred {
	case cfg.Node:
		return 1
	case cfg.Peer:
		return -1
	}
	return -strings.Compare(cfg.Node, cfg.Peer)
}

func (t *tick) tieBreakWhy() string {
	if t.d.cfg.Preferred != "" {
		return "preferred"
	}
	return "lower name"
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return -1
}

func cmpUint(a, b uint64) int {
	switch {
	case a > b:
		return 1
	case a < b:
		return -1
	}
	return 0
}

// renew extends the lease to until.
func (t *tick) renew(until time.Time, byGateway bool) {
	if until.After(t.s.LeaseExpiry) {
		t.s.LeaseExpiry = until
		t.s.LeaseByGateway = byGateway
	}
}

// active keeps the lease, hands over, restarts resources, or fences.
func (t *tick) active() {
	s, in, cfg := t.s, t.in, t.d.cfg
	b := t.beat()
	if t.peerActive() {
		t.alarm(AlarmTwoActives)
		if b.Term > s.Term || (b.Term == s.Term && t.tieBreak() < 0) {
			t.stop(Sync, fmt.Sprintf("twin active with term %d", b.Term))
		}
		return // no lease from an active twin
	}
	if t.heard() && b.Term > s.Term {
		// The twin took over after this box and has lost service since
		// (this box hung through it): its term is newer than ours, so it
		// will not acknowledge ours. Step down; the election decides.
		t.stop(Standby, fmt.Sprintf("twin holds the newer term %d", b.Term))
		return
	}
	if t.heard() && b.Term <= s.Term && t.echoOK() && (b.Echo.Term == s.Term || t.peerLeaving()) {
		t.renew(b.Echo.Sent.Add(cfg.Lease), false)
	}
	if in.Peer.Silent() && s.GatewayMisses >= GatewayLostAfter {
		t.stop(Fenced, "lost the twin and the gateway")
		t.do(action{Kind: actFence, Reason: "lost the twin and the gateway"})
		return
	}
	quiet := !t.heard() || in.Now.Sub(in.Peer.Heard) >= 2*cfg.Interval
	if quiet && in.GatewayOK {
		if !s.leaseValid(in.Now) {
			// A lapsed lease (a hang, a late tick) is renewed by the
			// gateway only once the VIP probe shows no twin serving.
			switch in.VIP {
			case probeNotRun:
				t.probe = true
				return
			case probeAnswered:
				t.alarm(AlarmTwinServing)
				t.stop(Standby, "lease lapsed and the twin serves on the VIP")
				return
			}
		}
		t.renew(t.probeEnd().Add(cfg.ProbeSpan), true)
	}
	if t.handoverIfAsked() {
		return
	}
	restarts := t.checkMonitors()
	if s.Role != Active {
		return
	}
	if s.GatewayMisses >= GatewayLostAfter && t.heard() && b.GatewayOK && t.handover(Standby, "gateway lost while the twin reaches it") {
		return
	}
	if t.failback() {
		return
	}
	t.do(restarts...) // only while staying: a handover makes them moot
}

// handoverIfAsked serves the administrator's maintenance and switchover
// requests.
func (t *tick) handoverIfAsked() bool {
	switch {
	case t.in.Maintenance:
		return t.handover(Maintenance, "maintenance requested")
	case t.in.Switchover:
		return t.handover(Standby, "switchover requested")
	}
	return false
}

// checkMonitors returns the restarts in place of failed resources, up to
// the migration threshold within the failure window; past it, it hands
// over.
func (t *tick) checkMonitors() []action {
	s, cfg := t.s, t.d.cfg
	var restarts []action
	for _, name := range slices.Sorted(maps.Keys(t.in.Monitors)) {
		err := t.in.Monitors[name]
		if err == nil || errors.Is(err, ErrNoVerdict) {
			continue
		}
		spec := t.d.monitors[name]
		if t.retryDue(name, spec) {
			since := t.in.Now.Sub(s.Stuck[name]).Round(time.Second)
			if t.handover(Standby, fmt.Sprintf("monitor %s latched for %v, the twin's verdict older than the hold-down: retrying its side: %v", name, since, err)) {
				if s.Retries == nil {
					s.Retries = map[string]int{}
				}
				s.Retries[name]++
				return nil
			}
		}
		n := len(s.Fails[name])
		if (!spec.Restartable || n > cfg.MigrationThreshold) && !t.failsOnBoth(name, spec) {
			if t.handover(Standby, fmt.Sprintf("monitor %s failed %d times: %v", name, n, err)) {
				if spec.HoldDown > 0 {
					if s.LeftFor == nil {
						s.LeftFor = map[string]time.Time{}
					}
					s.LeftFor[name] = t.in.Now
				}
				return nil
			}
		}
		if spec.Restartable {
			restarts = append(restarts, action{Kind: actRestart, Name: name})
		}
	}
	return restarts
}

// failsOnBoth reports whether a monitor with a hold-down, failing past
// its threshold here, also failed on the twin: the twin handed service
// over for it within its hold-down or stays stuck with it (its beat says
// SharedFault), or this box found so before. Moving service would only
// move it back: the box stays, restarting in place, with the alarm, until
// the check passes (docs/CLUSTER.md, "No ping-pong").
func (t *tick) failsOnBoth(name string, spec monitorSpec) bool {
	s := t.s
	if spec.HoldDown <= 0 {
		return false
	}
	_, stuck := s.Stuck[name]
	if !stuck && !(t.heard() && t.beat().SharedFault) {
		return false
	}
	if !stuck {
		if s.Stuck == nil {
			s.Stuck = map[string]time.Time{}
		}
		s.Stuck[name] = t.in.Now
	}
	t.alarm(spec.bothAlarm(name))
	return true
}

// retryDue reports whether this box, latched on monitor name (its check
// failing now), should hand service over once more to retry the twin's
// side: the latch is a hold-down old, and the twin is a healthy standby
// whose beats no longer carry the shared fault, so its own last verdict
// on the resource is older than the hold-down. The line may be back on
// the exchange's side while this box's own side broke (its card, its
// cable from the relay), which this box cannot tell from a dead line. A
// dead line costs one move per hold-down: the twin that takes over finds
// it down, sees this box's shared fault (stop sets it) and latches in
// turn (docs/CLUSTER.md, "No ping-pong", rule 3).
func (t *tick) retryDue(name string, spec monitorSpec) bool {
	since, stuck := t.s.Stuck[name]
	if !stuck || spec.HoldDown <= 0 || t.in.Now.Sub(since) < spec.HoldDown {
		return false
	}
	b := t.beat()
	return t.heard() && b.Role == Standby && !b.Maintenance && b.Healthy && b.GatewayOK && !b.SharedFault
}

// failback hands service back to the preferred twin once it has been a
// healthy, caught-up standby for FailbackDelay.
func (t *tick) failback() bool {
	s, in, cfg := t.s, t.in, t.d.cfg
	b := t.beat()
	if !cfg.Failback || cfg.Preferred != cfg.Peer || !t.heard() || b.Role != Standby || !b.Healthy || !b.GatewayOK || b.Maintenance || b.SharedFault || !in.InSync {
		s.PeerHealthySince = time.Time{}
		return false
	}
	if s.PeerHealthySince.IsZero() {
		s.PeerHealthySince = in.Now
	}
	return in.Now.Sub(s.PeerHealthySince) >= cfg.FailbackDelay && t.handover(Standby, "failback to the preferred twin")
}

// handover stops serving in stop order and asks the twin to take over,
// if the twin is a healthy standby that reaches the gateway.
func (t *tick) handover(to Role, reason string) bool {
	b := t.beat()
	if !t.heard() || b.Role != Standby || b.Maintenance || !b.Healthy || !b.GatewayOK {
		t.alarm(AlarmNoHandover)
		return false
	}
	t.stop(to, reason)
	t.s.Handover = true
	t.s.HandoverAt = t.in.Now
	return true
}

// stop leaves ACTIVE in stop order: stop serving, drop the VIP. The relay
// stays where it is until the twin selects its own side.
func (t *tick) stop(to Role, reason string) {
	t.s.LeaseExpiry = time.Time{}
	// A shared resource stuck or failing here when this box leaves, for
	// whatever reason, stays the twin's to know about for its hold-down:
	// this box found it down.
	found := slices.Collect(maps.Keys(t.s.Stuck))
	for name := range t.s.Failing {
		if t.d.monitors[name].HoldDown > 0 {
			found = append(found, name)
		}
	}
	for _, name := range found {
		if t.s.LeftFor == nil {
			t.s.LeftFor = map[string]time.Time{}
		}
		t.s.LeftFor[name] = t.in.Now
	}
	t.s.Stuck = nil
	// Active-only checks do not run off ACTIVE: their last failure would
	// mark this box unhealthy for good, and its twin could then never hand
	// over to it. A line that failed here is told by the shared fault.
	for name := range t.s.Failing {
		if t.d.monitors[name].ActiveOnly {
			delete(t.s.Failing, name)
		}
	}
	t.do(action{Kind: actStop}, action{Kind: actReleaseVIP})
	t.become(to, reason)
}

// maintenance never becomes active; leaving it follows the twin or waits
// as a standby.
func (t *tick) maintenance() {
	if t.in.Maintenance {
		return
	}
	if t.peerActive() {
		t.become(Sync, "maintenance over")
	} else {
		t.become(Standby, "maintenance over")
	}
}
