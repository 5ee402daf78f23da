package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/relay"
)

// The PSTN monitor's settings in the decision tests.
const (
	pstnHoldDown  = 15 * time.Minute
	alarmLineBoth = "PSTN line down on both boxes"
)

// pstnRows are the decision table's rows for the PSTN layer-1 monitor
// (docs/CLUSTER.md, "No ping-pong"), played by TestDecide on box "a".
func pstnRows() []struct {
	name  string
	cfg   func(*Config)
	start state
	steps []step
} {
	active1 := state{Role: Active, Term: 1, BootStart: t0.Add(-time.Minute), LeaseExpiry: t0.Add(200 * time.Millisecond)}
	standby1 := state{Role: Standby, Term: 1, SeenTerm: 1, Following: true, BootStart: t0.Add(-time.Minute)}
	down := errors.New("span bri0: layer 1 down (LOS) for 10s")
	pending := fmt.Errorf("%w: span bri0: layer 1 down (LOS) for 1s, within the 10s grace", ErrNoVerdict)
	line := func(err error) map[string]error { return map[string]error{"pstn": err} }
	standby := func() *Beat { return beat(Standby, 1, 1) }
	faulty := func(role Role, term, echo uint64) *Beat {
		return with(beat(role, term, echo), func(b *Beat) { b.SharedFault = true })
	}
	// After a's takeover in term 2, b is the standby that left for the line.
	faultyStandby := func() *Beat { return faulty(Standby, 1, 2) }
	stayActs := []string{"restart pstn"}
	handover := []string{"stop", "release vip", "follow"}
	return []struct {
		name  string
		cfg   func(*Config)
		start state
		steps []step
	}{
		{name: "PSTN line down on the active only: restarts in place, then hands over after the count", start: active1, steps: []step{
			{w: world{peer: standby(), mon: line(down)}, role: Active, acts: stayActs, alarm: "monitor pstn failing", shared: -1},
			{at: 10 * time.Second, w: world{peer: standby(), mon: line(down)}, role: Active, acts: stayActs},
			{at: 20 * time.Second, w: world{peer: standby(), mon: line(down)}, role: Active, acts: stayActs},
			{at: 30 * time.Second, w: world{peer: standby(), mon: line(down)}, role: Standby, acts: handover, shared: 1},
			// The box that left tells its twin for the hold-down, then forgets.
			{at: 31 * time.Second, w: world{peer: beat(Active, 2, 1)}, role: Standby, shared: 1},
			{at: 30*time.Second + pstnHoldDown, w: world{peer: beat(Active, 2, 1)}, role: Standby, shared: -1},
		}},
		{name: "PSTN: the box that left for the line is a healthy standby (no active-only failure kept)", start: active1, steps: []step{
			{w: world{peer: standby(), mon: map[string]error{"pstn": down, "store": nil}}, role: Active, acts: stayActs, clear: "monitor store failing"},
			{at: 10 * time.Second, w: world{peer: standby(), mon: line(down)}, role: Active, acts: stayActs},
			{at: 20 * time.Second, w: world{peer: standby(), mon: line(down)}, role: Active, acts: stayActs},
			{at: 30 * time.Second, w: world{peer: standby(), mon: line(down)}, role: Standby, acts: handover, shared: 1, healthy: 1},
			{at: 31 * time.Second, w: world{peer: beat(Active, 2, 1)}, role: Standby, shared: 1, healthy: 1, clear: "monitor pstn failing"},
		}},
		{name: "failing store on the active that hands over stays unhealthy (it is checked everywhere)", start: active1, steps: []step{
			{w: world{peer: standby(), mon: map[string]error{"store": down, "nic": down}}, role: Standby, acts: handover, healthy: -1, alarm: "monitor store failing"},
		}},
		{name: "PSTN line down on the active, no healthy standby: stays and keeps restarting", start: active1, steps: []step{
			{w: world{peer: beat(Sync, 1, 1), mon: line(down)}, role: Active, acts: stayActs},
			{at: 10 * time.Second, w: world{peer: beat(Sync, 1, 1), mon: line(down)}, role: Active, acts: stayActs},
			{at: 20 * time.Second, w: world{peer: beat(Sync, 1, 1), mon: line(down)}, role: Active, acts: stayActs},
			{at: 30 * time.Second, w: world{peer: beat(Sync, 1, 1), mon: line(down)}, role: Active, acts: stayActs, alarm: AlarmNoHandover, clear: alarmLineBoth},
		}},
		{name: "PSTN line down on both: the new active does not hand back, raises the alarm and stays", start: standby1, steps: []step{
			{w: world{peer: with(faulty(Standby, 1, 1), func(b *Beat) { b.Handover = true })}, role: Active, acts: takeoverActs("2"), lease: 1},
			{at: 5 * time.Second, w: world{peer: faultyStandby(), mon: line(down)}, role: Active, acts: stayActs, lease: 1},
			{at: 15 * time.Second, w: world{peer: faultyStandby(), mon: line(down)}, role: Active, acts: stayActs},
			{at: 25 * time.Second, w: world{peer: faultyStandby(), mon: line(down)}, role: Active, acts: stayActs, clear: alarmLineBoth},
			{at: 35 * time.Second, w: world{peer: faultyStandby(), mon: line(down)}, role: Active, acts: stayActs, alarm: alarmLineBoth, shared: 1},
			// Between checks the alarm stays; it outlives the twin's hold-down.
			{at: 36 * time.Second, w: world{peer: faultyStandby()}, role: Active, alarm: alarmLineBoth, lease: 1},
			{at: 15*time.Minute + 10*time.Second, w: world{peer: beat(Standby, 1, 2), mon: line(down)}, role: Active, acts: stayActs, alarm: alarmLineBoth, shared: 1, retries: -1},
			// The latch is a hold-down old, the twin's verdict older:
			// one move to retry its side.
			{at: 15*time.Minute + 35*time.Second, w: world{peer: beat(Standby, 1, 2), mon: line(down)}, role: Standby, acts: handover, shared: 1, healthy: 1, retries: 1},
			// It tells the twin for the hold-down; the twin, its line down
			// too, latches in turn.
			{at: 15*time.Minute + 36*time.Second, w: world{peer: beat(Active, 3, 2)}, role: Standby, clear: alarmLineBoth, shared: 1, retries: 1},
			{at: 30*time.Minute + 35*time.Second, w: world{peer: beat(Active, 3, 2)}, role: Standby, shared: -1},
		}},
		{name: "PSTN latched, the line back: alarm and memory cleared, no move", start: state{Role: Active, Term: 2, LeaseExpiry: t0.Add(200 * time.Millisecond),
			Stuck: map[string]time.Time{"pstn": t0.Add(-time.Hour)}}, steps: []step{
			{w: world{peer: beat(Standby, 1, 2), mon: line(nil)}, role: Active, clear: alarmLineBoth, shared: -1, retries: -1},
			{at: time.Second, w: world{peer: beat(Standby, 1, 2)}, role: Active, clear: "monitor pstn failing"},
		}},
		{name: "PSTN latched long ago, the twin's verdict fresh (its shared fault): no retry", start: state{Role: Active, Term: 2, LeaseExpiry: t0.Add(200 * time.Millisecond),
			Stuck: map[string]time.Time{"pstn": t0.Add(-time.Hour)}}, steps: []step{
			{w: world{peer: faultyStandby(), mon: line(down)}, role: Active, acts: stayActs, alarm: alarmLineBoth, retries: -1},
		}},
		{name: "PSTN latched a hold-down ago, the twin not a healthy standby: no retry, no alarm of a refused handover", start: state{Role: Active, Term: 2, LeaseExpiry: t0.Add(200 * time.Millisecond),
			Stuck: map[string]time.Time{"pstn": t0.Add(-pstnHoldDown)}}, steps: []step{
			{w: world{peer: beat(Sync, 1, 2), mon: line(down)}, role: Active, acts: stayActs, alarm: alarmLineBoth, clear: AlarmNoHandover, retries: -1},
			{at: time.Second, w: world{peer: with(beat(Standby, 1, 2), func(b *Beat) { b.Healthy = false }), mon: line(down)}, role: Active, acts: stayActs, clear: AlarmNoHandover, retries: -1},
			{at: 2 * time.Second, w: world{peer: with(beat(Standby, 1, 2), func(b *Beat) { b.Maintenance = true }), mon: line(down)}, role: Active, acts: stayActs, clear: AlarmNoHandover, retries: -1},
			{at: 3 * time.Second, w: world{peer: with(beat(Standby, 1, 2), func(b *Beat) { b.GatewayOK = false }), mon: line(down)}, role: Active, acts: stayActs, clear: AlarmNoHandover, retries: -1},
		}},
		{name: "PSTN latched a hold-down ago: the retry waits for a failed check", start: state{Role: Active, Term: 2, LeaseExpiry: t0.Add(200 * time.Millisecond),
			Stuck: map[string]time.Time{"pstn": t0.Add(-pstnHoldDown)}}, steps: []step{
			{w: world{peer: beat(Standby, 1, 2)}, role: Active, alarm: alarmLineBoth, retries: -1},
			{at: time.Second, w: world{peer: beat(Standby, 1, 2), mon: line(pending)}, role: Active, alarm: alarmLineBoth, retries: -1},
			{at: 2 * time.Second, w: world{peer: beat(Standby, 1, 2), mon: line(down)}, role: Standby, acts: handover, shared: 1, retries: 1},
		}},
		{name: "PSTN: the twin that took over on a retry finds the line down too: it latches and waits a hold-down", start: standby1, steps: []step{
			{w: world{peer: with(faulty(Standby, 1, 1), func(b *Beat) { b.Handover = true })}, role: Active, acts: takeoverActs("2"), lease: 1},
			{at: 10 * time.Second, w: world{peer: faultyStandby(), mon: line(down)}, role: Active, acts: stayActs},
			{at: 20 * time.Second, w: world{peer: faultyStandby(), mon: line(down)}, role: Active, acts: stayActs},
			{at: 30 * time.Second, w: world{peer: faultyStandby(), mon: line(down)}, role: Active, acts: stayActs},
			{at: 40 * time.Second, w: world{peer: faultyStandby(), mon: line(down)}, role: Active, acts: stayActs, alarm: alarmLineBoth},
			// The twin's hold-down runs out before this box's latch is one
			// hold-down old: still no move.
			{at: 15*time.Minute + 5*time.Second, w: world{peer: beat(Standby, 1, 2), mon: line(down)}, role: Active, acts: stayActs, alarm: alarmLineBoth, retries: -1},
			{at: 15*time.Minute + 35*time.Second, w: world{peer: beat(Standby, 1, 2), mon: line(down)}, role: Active, acts: stayActs, alarm: alarmLineBoth, retries: -1},
			{at: 15*time.Minute + 45*time.Second, w: world{peer: beat(Standby, 1, 2), mon: line(down)}, role: Standby, acts: handover, shared: 1, retries: 1},
		}},
		{name: "PSTN: no verdict within the grace is neither a failure nor a pass", start: state{Role: Standby, Term: 1, SeenTerm: 1, Following: true,
			LeftFor: map[string]time.Time{"pstn": t0.Add(-time.Minute)}}, steps: []step{
			// The twin falls silent: this box takes over although it left
			// for the line a minute ago.
			{w: world{vip: probeUnanswered}, role: Active, acts: takeoverActs("2"), probed: true, shared: 1},
			{at: time.Second, w: world{peer: beat(Standby, 1, 2), mon: line(pending)}, role: Active, shared: 1, healthy: 1, clear: "monitor pstn failing"},
			{at: 2 * time.Second, w: world{peer: beat(Standby, 1, 2), mon: line(pending)}, role: Active, shared: 1},
			{at: 10 * time.Second, w: world{peer: beat(Standby, 1, 2), mon: line(down)}, role: Active, acts: stayActs, shared: 1, healthy: -1},
		}},
		{name: "PSTN: no verdict past the threshold hands nothing over", start: state{Role: Active, Term: 1, LeaseExpiry: t0.Add(200 * time.Millisecond),
			Fails: map[string][]time.Time{"pstn": {t0.Add(-3 * time.Second), t0.Add(-2 * time.Second), t0.Add(-time.Second), t0}}}, steps: []step{
			{w: world{peer: standby(), mon: line(pending)}, role: Active},
		}},
		{name: "PSTN failing, not yet past the count, when the active leaves for another reason: it tells the twin", start: active1, steps: []step{
			{w: world{peer: standby(), mon: line(down)}, role: Active, acts: stayActs, shared: -1},
			{at: 10 * time.Second, w: world{peer: standby(), mon: map[string]error{"nic": down}}, role: Standby, acts: handover, shared: 1, healthy: -1},
			{at: 11 * time.Second, w: world{peer: beat(Active, 2, 1)}, role: Standby, shared: 1},
		}},
		{name: "PSTN stuck on both, then the active hands over for its LAN: it tells the twin", start: state{Role: Active, Term: 2, Stuck: map[string]time.Time{"pstn": t0}}, steps: []step{
			{w: world{peer: beat(Standby, 1, 2), mon: map[string]error{"nic": down}}, role: Standby, acts: handover, shared: 1},
		}},
		{name: "PSTN: a failback waits while the preferred twin's line failed",
			cfg:   func(c *Config) { c.Preferred, c.Failback, c.FailbackDelay = "b", true, time.Minute },
			start: state{Role: Active, Term: 2, LeaseExpiry: t0.Add(200 * time.Millisecond)}, steps: []step{
				{w: world{peer: faulty(Standby, 1, 2)}, role: Active},
				{at: 2 * time.Minute, w: world{peer: faulty(Standby, 1, 2)}, role: Active},
				{at: 3 * time.Minute, w: world{peer: beat(Standby, 1, 2)}, role: Active},
				{at: 4*time.Minute + time.Second, w: world{peer: beat(Standby, 1, 2)}, role: Standby, acts: handover},
			}},
	}
}

// pstnLine is the simulated PSTN line behind the relay: down as a whole
// (the exchange side), or cut between the relay and one box's card.
type pstnLine struct {
	w      *simWorld
	mu     sync.Mutex
	down   bool
	cut    map[relay.Side]bool
	checks map[relay.Side]int
}

// monitor is box side's PSTN monitor: the line is up on it while the
// relay connects it, its cable is whole and the line is up. The grace of
// the real monitor is left out: the fail count alone paces the decisions.
func (l *pstnLine) monitor(side relay.Side) Monitor {
	return Monitor{
		Name: "pstn", ActiveOnly: true, Every: time.Second, HoldDown: pstnHoldDown, BothAlarm: alarmLineBoth,
		Check: func(context.Context) error {
			l.w.mu.Lock()
			pos := l.w.relay
			l.w.mu.Unlock()
			l.mu.Lock()
			defer l.mu.Unlock()
			l.checks[side]++
			switch {
			case pos != side:
				return fmt.Errorf("relay on %v", pos)
			case l.down:
				return errors.New("line down")
			case l.cut[side]:
				return errors.New("cable cut")
			}
			return nil
		},
		Restart: func(ctx context.Context) error { return nil },
	}
}

func (l *pstnLine) set(f func(*pstnLine)) { l.mu.Lock(); f(l); l.mu.Unlock() }

func (l *pstnLine) checked(side relay.Side) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.checks[side]
}

func hasAlarm(m *Manager, text string) bool {
	return slices.ContainsFunc(m.Status().Alarms, func(a Alarm) bool { return a.Text == text })
}

// TestSimPSTN runs two managers with the PSTN monitor over a simulated
// line: a cut cable moves service once; a dead line moves it at most once
// and raises the alarm; the line's return clears it; the standby never
// checks the line.
func TestSimPSTN(t *testing.T) {
	tests := []struct {
		name string
		// fault breaks the line while a is active.
		fault func(*pstnLine)
		// moves is how many takeovers follow the fault within an hour.
		moves  int
		server string // who serves at the end
		alarm  bool   // the line is down on both boxes
	}{
		{name: "cable cut to the active's card: one move, no alarm", fault: func(l *pstnLine) { l.cut[relay.A] = true }, moves: 1, server: "b"},
		{name: "line dead at the exchange: one move, then the alarm", fault: func(l *pstnLine) { l.down = true }, moves: 1, server: "b", alarm: true},
		{name: "both cables cut: one move, then the alarm", fault: func(l *pstnLine) { l.cut[relay.A], l.cut[relay.B] = true, true }, moves: 1, server: "b", alarm: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, line := pstnPair(t, 7)
			if n := line.checked(relay.B); n != 0 {
				t.Fatalf("the standby checked the line %d times", n)
			}
			before := s.takeovers
			line.set(tc.fault)
			// Long enough for a hand-back if the twin would do one: the
			// fail count passes in seconds.
			s.run(3 * time.Minute)
			if got := s.takeovers - before; got != tc.moves {
				t.Fatalf("%d moves after the fault, want %d; history:\n%s", got, tc.moves, strings.Join(s.history, "\n"))
			}
			if got := s.serving(); !slices.Equal(got, []string{tc.server}) {
				t.Fatalf("serving %v, want %s (%s)", got, tc.server, s.roles())
			}
			m := s.mgr(tc.server)
			if tw := m.Status().Twin; !tw.SharedFault || !tw.Healthy {
				t.Fatalf("the new active sees its twin %+v, want a healthy standby that left for the line", tw)
			}
			if got := hasAlarm(m, alarmLineBoth); got != tc.alarm {
				t.Fatalf("alarm %q raised = %v, want %v (alarms %v)", alarmLineBoth, got, tc.alarm, m.Status().Alarms)
			}
			if !tc.alarm {
				return
			}
			// The line comes back: the alarm clears, no move.
			line.set(func(l *pstnLine) { l.down = false; l.cut = map[relay.Side]bool{} })
			s.waitFor(5*time.Second, "the alarm to clear", func() bool { return !hasAlarm(m, alarmLineBoth) })
			if s.takeovers-before != tc.moves {
				t.Fatalf("the line's return moved service; history:\n%s", strings.Join(s.history, "\n"))
			}
		})
	}
}

// TestSimPSTNLatchAcrossRestart: the line is dead on both boxes and b,
// latched on it, serves; b's node restarts (a power cut, a watchdog
// reset). a takes over and finds the line down too; b, back as the
// standby, still tells it that it left for the line, so a latches: one
// move, the restart's. A node that forgot across its restart is handed
// service back, to find the same: two.
func TestSimPSTNLatchAcrossRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		latches bool
		moves   int
	}{{"kept", true, 1}, {"forgotten", false, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			s, line := pstnPairLatches(t, 13, tc.latches)
			line.set(func(l *pstnLine) { l.down = true })
			s.waitFor(time.Minute, "b latched on the dead line", func() bool {
				return slices.Equal(s.serving(), []string{"b"}) && hasAlarm(s.mgr("b"), alarmLineBoth)
			})
			before := s.takeovers
			s.note("crash b")
			s.w.crash("b")
			s.downUntil["b"] = s.clock.Now().Add(2 * time.Second)
			// Past the fail count on a, well within the hold-down.
			s.run(3 * time.Minute)
			if got := s.takeovers - before; got != tc.moves {
				t.Fatalf("%d moves after b's restart, want %d; history:\n%s", got, tc.moves, strings.Join(s.history, "\n"))
			}
			if tc.latches {
				if !slices.Equal(s.serving(), []string{"a"}) || !hasAlarm(s.mgr("a"), alarmLineBoth) {
					t.Fatalf("serving %v (%s), want a latched with the alarm", s.serving(), s.roles())
				}
				if tw := s.mgr("a").Status().Twin; !tw.SharedFault {
					t.Fatalf("a sees its twin %+v, want it to carry the shared fault", tw)
				}
			}
			// The line back: the alarm clears, and a, whose check
			// passes, keeps nothing any more (b, the standby, does not
			// check the line: its shared fault ends with the hold-down).
			line.set(func(l *pstnLine) { l.down = false })
			s.run(time.Minute)
			for _, n := range []string{"a", "b"} {
				if hasAlarm(s.mgr(n), alarmLineBoth) {
					t.Fatalf("%s still raises %q", n, alarmLineBoth)
				}
			}
			if a := s.w.boxes["a"]; len(a.latched) != 0 {
				t.Fatalf("a keeps %v after the line came back", a.latched)
			}
			if b := s.w.boxes["b"]; tc.latches && !slices.Equal(b.latched, []string{"pstn"}) {
				t.Fatalf("b keeps %v, want [pstn] for the hold-down", b.latched)
			}
		})
	}
}

// pstnMonitor returns status of the pstn monitor of m.
func pstnMonitor(m *Manager) MonitorStatus {
	for _, ms := range m.Status().Monitors {
		if ms.Name == "pstn" {
			return ms
		}
	}
	return MonitorStatus{}
}

// TestSimPSTNRetry runs two managers over a simulated line that is down on
// both boxes for a long time. A box latched on it hands over once per
// hold-down to retry its twin's side: a dead line costs at most one move
// per hold-down, and a box latched behind its own cut cable gives the line
// to its twin within a hold-down of the line's return.
func TestSimPSTNRetry(t *testing.T) {
	tests := []struct {
		name string
		// after breaks the line once it is down on both boxes and b,
		// latched on it, serves.
		after func(*pstnLine)
		// run is how long the pair then runs; minMoves the moves it must
		// at least see in that time (the retries bite).
		run      time.Duration
		minMoves int
		// server serves at the end, with no alarm on either box; it
		// serves within run (a hold-down from the latch, plus a few checks
		// and the handover).
		server string
	}{
		{name: "dead line, both sides fine: one move per hold-down at most", after: func(*pstnLine) {}, run: 35 * time.Minute, minMoves: 2},
		{name: "latched box behind its own cut cable, line back: the twin serves within a hold-down", after: func(l *pstnLine) {
			l.cut[relay.B] = true
			l.down = false
		}, run: pstnHoldDown + 30*time.Second, minMoves: 1, server: "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, line := pstnPair(t, 11)
			line.set(func(l *pstnLine) { l.down = true })
			s.waitFor(time.Minute, "b latched on the dead line", func() bool {
				return slices.Equal(s.serving(), []string{"b"}) && hasAlarm(s.mgr("b"), alarmLineBoth)
			})
			faultMove := s.takeoverAt[len(s.takeoverAt)-1]
			before := s.takeovers
			line.set(tc.after)
			changed := s.clock.Now()
			if tc.server == "" {
				s.run(tc.run)
			} else {
				s.waitFor(tc.run, tc.server+" serving", func() bool { return slices.Equal(s.serving(), []string{tc.server}) })
				t.Logf("%s serves %v after the change", tc.server, s.clock.Now().Sub(changed))
				s.run(time.Minute) // the alarm clears, nothing moves back
			}
			moves := s.takeoverAt[before-1:] // from the move that latched b
			if got := len(moves) - 1; got < tc.minMoves {
				t.Fatalf("%d moves in %v, want at least %d; history:\n%s", got, tc.run, tc.minMoves, strings.Join(s.history, "\n"))
			}
			if moves[0] != faultMove {
				t.Fatalf("moves from %v, want from %v", moves[0], faultMove)
			}
			for i := 1; i < len(moves); i++ {
				if gap := moves[i].Sub(moves[i-1]); gap < pstnHoldDown {
					t.Fatalf("move %d came %v after the one before, less than the hold-down %v; history:\n%s", i, gap, pstnHoldDown, strings.Join(s.history, "\n"))
				}
			}
			retries := pstnMonitor(s.mgr("a")).Retries + pstnMonitor(s.mgr("b")).Retries
			if retries != len(moves)-1 {
				t.Fatalf("%d retries counted, want %d", retries, len(moves)-1)
			}
			if tc.server == "" {
				return
			}
			if got := s.serving(); !slices.Equal(got, []string{tc.server}) {
				t.Fatalf("serving %v, want %s (%s); history:\n%s", got, tc.server, s.roles(), strings.Join(s.history, "\n"))
			}
			for _, n := range []string{"a", "b"} {
				if hasAlarm(s.mgr(n), alarmLineBoth) {
					t.Fatalf("%s still raises %q", n, alarmLineBoth)
				}
			}
			if tw := s.mgr(tc.server).Status().Twin; !tw.SharedFault {
				t.Fatalf("the new active sees its twin %+v, want the shared fault of the box that retried", tw)
			}
		})
	}
}

// pstnPair starts a simulated pair (seed) whose boxes check one line,
// each its side of the relay, and returns it with a serving, settled.
func pstnPair(t *testing.T, seed uint64) (*sim, *pstnLine) {
	t.Helper()
	return pstnPairLatches(t, seed, true)
}

// pstnPairLatches is pstnPair, its nodes with a LatchStore or not.
func pstnPairLatches(t *testing.T, seed uint64, latches bool) (*sim, *pstnLine) {
	t.Helper()
	s := newSim(t, seed, nil)
	s.w.noLatches = !latches
	line := &pstnLine{w: s.w, cut: map[relay.Side]bool{}, checks: map[relay.Side]int{}}
	s.mons["a"] = []Monitor{line.monitor(relay.A)}
	s.mons["b"] = []Monitor{line.monitor(relay.B)}
	s.boot("a")
	s.boot("b")
	s.waitFor(5*time.Second, "a active", func() bool { return s.oneActive() && slices.Equal(s.serving(), []string{"a"}) })
	s.run(10 * time.Second)
	return s, line
}

// errLatches fails to read.
type errLatches struct{}

func (errLatches) Latched() ([]string, error) { return nil, errInjected }
func (errLatches) SetLatched([]string) error  { return errInjected }

// TestRestoreLatches: kept names become shared faults from the node's
// start, for monitors that still exist and have a hold-down; a store
// that cannot be read leaves none, and the node runs on.
func TestRestoreLatches(t *testing.T) {
	s := newSim(t, 3, nil)
	line := &pstnLine{w: s.w, cut: map[relay.Side]bool{}, checks: map[relay.Side]int{}}
	disk := Monitor{Name: "disk", Check: func(context.Context) error { return nil }}
	b := &box{name: "a", world: s.w, side: relay.A, latched: []string{"disk", "gone", "pstn"}}
	s.w.mu.Lock()
	s.w.boxes["a"] = b
	s.w.mu.Unlock()
	m, err := s.w.start(b, "b", s.cfg["a"], line.monitor(relay.A), disk)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(m.st.LeftFor)); !slices.Equal(got, []string{"pstn"}) {
		t.Fatalf("shared faults %v at start, want [pstn]", got)
	}
	if at := m.st.LeftFor["pstn"]; !at.Equal(s.clock.Now()) {
		t.Fatalf("the hold-down starts at %v, want the node's start %v", at, s.clock.Now())
	}
	if !m.beat(m.st).SharedFault {
		t.Fatal("the first beats do not carry the shared fault")
	}

	cfg := s.cfg["a"]
	cfg.Node, cfg.Peer, cfg.Clock = "c", "b", s.clock
	m, err = New(cfg, Resources{
		Heartbeat: s.w.link.Attach("c"), VIP: fakeVIP{b}, Relay: fakeRelay{b}, Replica: fakeReplica{b}, Service: fakeService{b},
		Probe: fakeProbe{b}, Terms: fakeTerms{b}, Latches: errLatches{}, Monitors: []Monitor{line.monitor(relay.A)},
	})
	if err != nil {
		t.Fatalf("a store that cannot be read stopped the node: %v", err)
	}
	if len(m.st.LeftFor) != 0 {
		t.Fatalf("shared faults %v from a store that cannot be read", m.st.LeftFor)
	}
	m.keepLatches(state{LeftFor: map[string]time.Time{"pstn": s.clock.Now()}})
	if !slices.Equal(m.latched, []string{"pstn"}) {
		t.Fatalf("after a failed save the node holds %v, want [pstn] (one warning, not one a tick)", m.latched)
	}
}
