package cluster

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/twinpbx/twinpbx/hw/relay"
)

var simSeeds = flag.Int("sim.seeds", 300, "seeds of the randomized partition test")

// simStep is the resolution of simulated time.
const simStep = 10 * time.Millisecond

// sim runs two boxes, "a" and "b", over a Link on a fake clock. Every
// simStep it lets each running box send its beat and run its decision
// loop when their (per-box) phase comes, and checks that at most one box
// serves.
type sim struct {
	t     testing.TB
	w     *simWorld
	clock *clockwork.FakeClock
	rng   *rand.Rand
	cfg   map[string]Config
	mons  map[string][]Monitor
	// phases of the heartbeat sender and of the decision loop, in steps.
	sendPhase, stepPhase map[string]int
	hungSince            map[string]time.Time
	fencedAt             map[string]time.Time
	downUntil            map[string]time.Time // crashed, restarts then
	resumeAt             map[string]time.Time // hung, resumes then
	stuckUntil           map[string]time.Time // decision loop stuck (the rest runs)
	takeovers            int
	takeoverAt           []time.Time // when each takeover happened
	history              []string
}

func newSim(t testing.TB, seed uint64, tweak func(*Config)) *sim {
	clock := clockwork.NewFakeClockAt(t0)
	s := &sim{t: t, clock: clock, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		cfg: map[string]Config{}, mons: map[string][]Monitor{},
		sendPhase: map[string]int{}, stepPhase: map[string]int{},
		hungSince: map[string]time.Time{}, fencedAt: map[string]time.Time{}, downUntil: map[string]time.Time{},
		resumeAt: map[string]time.Time{}, stuckUntil: map[string]time.Time{}}
	base := Config{Interval: 50 * time.Millisecond, DeadTime: 300 * time.Millisecond, BootWait: 2 * time.Second,
		WatchdogTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	s.w = newSimWorld(clock, base.DeadTime)
	for _, n := range []string{"a", "b"} {
		cfg := base
		cfg.Side = relay.A
		if n == "b" {
			cfg.Side = relay.B
		}
		if tweak != nil {
			cfg.Node = n
			tweak(&cfg)
		}
		s.cfg[n] = cfg
		steps := int(cfg.Interval / simStep)
		s.sendPhase[n], s.stepPhase[n] = s.rng.IntN(steps), s.rng.IntN(steps)
	}
	return s
}

func (s *sim) peer(n string) string {
	if n == "a" {
		return "b"
	}
	return "a"
}

// boot starts the node process on box n.
func (s *sim) boot(n string) *Manager {
	s.t.Helper()
	var m *Manager
	var err error
	if b := s.w.boxes[n]; b != nil {
		m, err = s.w.start(b, s.peer(n), s.cfg[n], s.mons[n]...)
	} else {
		_, m, err = s.w.addBox(n, s.peer(n), s.cfg[n], s.mons[n]...)
	}
	if err != nil {
		s.t.Fatalf("starting %s: %v", n, err)
	}
	delete(s.fencedAt, n)
	delete(s.hungSince, n)
	return m
}

func (s *sim) mgr(n string) *Manager {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return s.w.mgrs[n]
}

// run advances simulated time by d.
func (s *sim) run(d time.Duration) {
	s.t.Helper()
	for end := s.clock.Now().Add(d); s.clock.Now().Before(end); {
		s.clock.Advance(simStep)
		s.check("before the tick")
		s.w.observe()
		s.tick()
		s.check("after the tick")
		s.w.observe()
	}
}

func (s *sim) tick() {
	now := s.clock.Now()
	k := int(now.Sub(t0) / simStep)
	names := []string{"a", "b"}
	if s.rng.IntN(2) == 0 {
		names[0], names[1] = names[1], names[0]
	}
	for _, n := range names {
		if at, ok := s.resumeAt[n]; ok && !now.Before(at) {
			delete(s.resumeAt, n)
			if _, hung := s.hungSince[n]; hung {
				s.note("resume %s", n)
				s.w.hang(n, false)
				delete(s.hungSince, n)
			}
		}
		if until, ok := s.downUntil[n]; ok && !now.Before(until) {
			delete(s.downUntil, n)
			s.boot(n)
		}
		// The watchdog resets a box that stopped kicking it.
		if at, ok := s.fencedAt[n]; ok && now.Sub(at) >= s.cfg[n].WatchdogTimeout {
			s.note("%s reset by its watchdog", n)
			s.w.crash(n)
			s.boot(n)
			continue
		}
		if at, ok := s.hungSince[n]; ok && now.Sub(at) >= s.cfg[n].WatchdogTimeout {
			s.note("%s reset by its watchdog after a hang", n)
			s.w.crash(n)
			s.boot(n)
			continue
		}
		m := s.live(n)
		if m == nil {
			continue
		}
		steps := int(s.cfg[n].Interval / simStep)
		if k%steps == s.sendPhase[n] {
			s.w.link.Send(n)
		}
		if until, ok := s.stuckUntil[n]; ok {
			if now.Before(until) {
				continue // beats go out until they are too old (see Link)
			}
			delete(s.stuckUntil, n)
		}
		if k%steps == s.stepPhase[n] {
			before := m.Role()
			m.Step(context.Background())
			after := m.Role()
			if after != before {
				st := m.Status()
				s.note("%s %v→%v term %d: %s", n, before, after, st.Term, st.Reason)
				if after == Active {
					s.takeovers++
					s.takeoverAt = append(s.takeoverAt, now)
				}
				if after == Fenced {
					s.fencedAt[n] = now
				}
			}
		}
	}
}

func (s *sim) live(n string) *Manager { return s.w.live()[n] }

func (s *sim) note(format string, args ...any) {
	s.history = append(s.history, fmt.Sprintf("%8v ", s.clock.Now().Sub(t0))+fmt.Sprintf(format, args...))
}

// check is the safety invariant: never two boxes serving at once.
func (s *sim) check(when string) {
	s.t.Helper()
	if s.w.serving("a") && s.w.serving("b") {
		tail := s.history[max(0, len(s.history)-25):]
		s.t.Fatalf("at %v (%s) both boxes serve with a valid lease; history:\n%s", s.clock.Now().Sub(t0), when, strings.Join(tail, "\n"))
	}
}

func (s *sim) serving() []string {
	var out []string
	for _, n := range []string{"a", "b"} {
		if s.w.serving(n) {
			out = append(out, n)
		}
	}
	return out
}

// waitFor runs the simulation until cond holds, failing after limit.
func (s *sim) waitFor(limit time.Duration, what string, cond func() bool) {
	s.t.Helper()
	for end := s.clock.Now().Add(limit); !cond(); {
		if !s.clock.Now().Before(end) {
			s.t.Fatalf("after %v: %s never happened; history:\n%s", limit, what, strings.Join(s.history, "\n"))
		}
		s.run(simStep)
	}
}

func (s *sim) roles() string {
	var out []string
	for _, n := range []string{"a", "b"} {
		if m := s.mgr(n); m != nil {
			out = append(out, n+"="+m.Role().String())
		} else {
			out = append(out, n+"=down")
		}
	}
	return strings.Join(out, " ")
}

// oneActive reports whether exactly one box serves and the other is a
// standby.
func (s *sim) oneActive() bool {
	srv := s.serving()
	if len(srv) != 1 {
		return false
	}
	other := s.mgr(s.peer(srv[0]))
	return other != nil && other.Role() == Standby
}

func TestSimBothBootAtOnce(t *testing.T) {
	tests := []struct {
		name   string
		tweak  func(*Config)
		seqA   uint64
		seqB   uint64
		winner string
	}{
		{name: "newer store wins", seqA: 1, seqB: 7, winner: "b"},
		{name: "preferred wins a tie", tweak: func(c *Config) { c.Preferred = "b" }, winner: "b"},
		{name: "lower name wins the last tie", winner: "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, 1, tc.tweak)
			s.boot("a")
			s.boot("b")
			s.w.boxes["a"].seq, s.w.boxes["b"].seq = tc.seqA, tc.seqB
			s.waitFor(time.Second, "one active", s.oneActive)
			if got := s.serving(); !slices.Equal(got, []string{tc.winner}) {
				t.Fatalf("serving %v, want %s (%s)", got, tc.winner, s.roles())
			}
			s.run(5 * time.Second)
			if !s.oneActive() || s.takeovers != 1 {
				t.Fatalf("after 5s: %s, %d takeovers, want one stable takeover", s.roles(), s.takeovers)
			}
		})
	}
}

// TestSimFailoverCases plays the decision table's rows on two connected
// managers and checks who serves afterwards.
func TestSimFailoverCases(t *testing.T) {
	tests := []struct {
		name  string
		fault func(s *sim)
		// after the fault: who serves, and the longest outage allowed.
		serving string
		outage  time.Duration
	}{
		{name: "active power loss", fault: func(s *sim) { s.w.crash("a"); s.downUntil["a"] = t0.Add(time.Hour) }, serving: "b", outage: 500 * time.Millisecond},
		{name: "active hang", fault: func(s *sim) { s.w.hang("a", true); s.hungSince["a"] = s.clock.Now() }, serving: "b", outage: 500 * time.Millisecond},
		{name: "active decision loop stuck", fault: func(s *sim) { s.stuckUntil["a"] = s.clock.Now().Add(2 * time.Second) }, serving: "b", outage: 700 * time.Millisecond},
		{name: "crossover cut", fault: func(s *sim) { s.w.link.Cut(Crossover) }, serving: "a"},
		{name: "both heartbeat paths cut", fault: func(s *sim) { s.w.link.Cut(Crossover); s.w.link.Cut(LAN) }, serving: "a"},
		{name: "LAN cut on the active", fault: func(s *sim) { s.w.link.SetLAN("a", false) }, serving: "b", outage: time.Second},
		{name: "LAN cut on the standby", fault: func(s *sim) { s.w.link.SetLAN("b", false) }, serving: "a"},
		{name: "LAN and crossover cut on the active", fault: func(s *sim) { s.w.link.SetLAN("a", false); s.w.link.Cut(Crossover) }, serving: "b", outage: time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, 7, nil)
			s.boot("a")
			s.boot("b")
			s.waitFor(3*time.Second, "a active, b standby", func() bool { return s.oneActive() && s.serving()[0] == "a" })
			s.run(time.Second)
			tc.fault(s)
			var gap, longest time.Duration
			for range 300 { // 3 s
				s.run(simStep)
				if len(s.serving()) == 0 {
					gap += simStep
					longest = max(longest, gap)
				} else {
					gap = 0
				}
			}
			if got := s.serving(); !slices.Equal(got, []string{tc.serving}) {
				t.Fatalf("serving %v, want %s (%s); history:\n%s", got, tc.serving, s.roles(), strings.Join(s.history, "\n"))
			}
			if longest > tc.outage {
				t.Errorf("outage %v, want at most %v; history:\n%s", longest, tc.outage, strings.Join(s.history, "\n"))
			}
		})
	}
}

// TestSimHungActiveResumes: the active hangs for less than its watchdog
// timeout, the standby takes over, the old active resumes, never serves
// again and becomes the standby.
func TestSimHungActiveResumes(t *testing.T) {
	s := newSim(t, 3, nil)
	s.boot("a")
	s.boot("b")
	s.waitFor(3*time.Second, "a active", func() bool { return s.oneActive() && s.serving()[0] == "a" })
	s.w.hang("a", true)
	s.waitFor(time.Second, "b serving", func() bool { return slices.Equal(s.serving(), []string{"b"}) })
	s.run(time.Second)
	s.w.hang("a", false)
	if s.w.serving("a") {
		t.Fatal("a serves the moment it resumes")
	}
	s.waitFor(time.Second, "a standby", s.oneActive)
	if got := s.serving(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("serving %v, want b", got)
	}
}

// TestSimRejoinSticky: the old active returns as standby; with failback
// it takes service back after the delay.
func TestSimRejoin(t *testing.T) {
	for _, failback := range []bool{false, true} {
		t.Run(fmt.Sprintf("failback=%v", failback), func(t *testing.T) {
			s := newSim(t, 5, func(c *Config) {
				c.Preferred, c.Failback, c.FailbackDelay = "a", failback, 10*time.Second
			})
			s.boot("a")
			s.boot("b")
			s.waitFor(3*time.Second, "a active", func() bool { return s.oneActive() && s.serving()[0] == "a" })
			s.w.crash("a")
			s.downUntil["a"] = s.clock.Now().Add(2 * time.Second)
			s.waitFor(time.Second, "b serving", func() bool { return slices.Equal(s.serving(), []string{"b"}) })
			s.waitFor(5*time.Second, "a back as standby", s.oneActive)
			s.run(8 * time.Second)
			if got := s.serving(); !slices.Equal(got, []string{"b"}) {
				t.Fatalf("serving %v before the failback delay, want b", got)
			}
			s.run(5 * time.Second)
			want := "b"
			if failback {
				want = "a"
			}
			if got := s.serving(); !slices.Equal(got, []string{want}) || !s.oneActive() {
				t.Fatalf("serving %v (%s), want %s; history:\n%s", got, s.roles(), want, strings.Join(s.history, "\n"))
			}
		})
	}
}

// TestSimPartitions is the randomized partition test: many seeds, each
// a random schedule of silent path cuts, LAN unplugs, hangs and crashes;
// the checker fails the test the moment both boxes serve with a valid
// lease. Once every fault is healed, exactly one box must serve again.
func TestSimPartitions(t *testing.T) {
	seeds := *simSeeds
	if testing.Short() {
		seeds = min(seeds, 30)
	}
	total := 0
	for seed := range uint64(seeds) {
		s := newSim(t, seed, nil)
		s.boot("a")
		s.boot("b")
		for end := s.clock.Now().Add(40 * time.Second); s.clock.Now().Before(end); {
			s.randomFault()
			s.run(time.Duration(s.rng.IntN(150)+5) * simStep)
		}
		// Heal everything; the pair must settle on one active.
		s.note("heal all")
		for _, n := range []string{"a", "b"} {
			if m := s.mgr(n); m != nil {
				m.SetMaintenance(false)
			}
		}
		s.w.link.Heal(Crossover)
		s.w.link.Heal(LAN)
		for _, n := range []string{"a", "b"} {
			s.w.link.SetLAN(n, true)
			if _, hung := s.hungSince[n]; hung {
				s.w.hang(n, false)
				delete(s.hungSince, n)
			}
		}
		s.waitFor(20*time.Second, fmt.Sprintf("seed %d: one active after healing", seed), s.oneActive)
		total += s.takeovers
	}
	if total < seeds {
		t.Fatalf("only %d takeovers over %d seeds: the faults do not bite", total, seeds)
	}
	t.Logf("%d takeovers over %d seeds", total, seeds)
}

func (s *sim) randomFault() {
	n := []string{"a", "b"}[s.rng.IntN(2)]
	switch s.rng.IntN(13) {
	case 12:
		if m := s.live(n); m != nil {
			d := time.Duration(s.rng.IntN(3000)) * time.Millisecond
			s.note("%s's decision loop stuck for %v", n, d)
			s.stuckUntil[n] = s.clock.Now().Add(d)
		}
	case 10:
		if m := s.live(n); m != nil && m.Role() == Active {
			s.note("switchover on %s", n)
			m.mu.Lock()
			m.switchReq = true
			m.mu.Unlock()
		}
	case 11:
		if m := s.live(n); m != nil {
			on := s.rng.IntN(3) == 0
			s.note("maintenance %v on %s", on, n)
			m.SetMaintenance(on)
		}
	case 0:
		p := Path(s.rng.IntN(NumPaths))
		s.note("cut %v", p)
		s.w.link.Cut(p)
	case 1, 2:
		p := Path(s.rng.IntN(NumPaths))
		s.note("heal %v", p)
		s.w.link.Heal(p)
	case 3:
		s.note("unplug %s's LAN", n)
		s.w.link.SetLAN(n, false)
	case 4:
		s.note("plug %s's LAN", n)
		s.w.link.SetLAN(n, true)
	case 5:
		if _, hung := s.hungSince[n]; !hung && s.mgr(n) != nil {
			d := time.Duration(s.rng.IntN(40)+1) * simStep // a stall
			if s.rng.IntN(2) == 0 {
				d = time.Duration(s.rng.IntN(8000)) * time.Millisecond // SIGSTOP
			}
			s.note("hang %s for %v", n, d)
			s.w.hang(n, true)
			s.hungSince[n] = s.clock.Now()
			s.resumeAt[n] = s.clock.Now().Add(d)
		}
	case 6:
		if _, hung := s.hungSince[n]; hung && s.rng.IntN(4) == 0 {
			s.note("resume %s", n)
			s.w.hang(n, false)
			delete(s.hungSince, n)
		}
	case 7:
		if _, down := s.downUntil[n]; !down && s.mgr(n) != nil {
			s.note("crash %s", n)
			delete(s.hungSince, n)
			s.w.crash(n)
			s.downUntil[n] = s.clock.Now().Add(time.Duration(s.rng.IntN(3000)) * time.Millisecond)
		}
	case 9:
		s.note("cut both paths")
		s.w.link.Cut(Crossover)
		s.w.link.Cut(LAN)
	case 8:
		s.note("heal all paths")
		s.w.link.Heal(Crossover)
		s.w.link.Heal(LAN)
	}
}
