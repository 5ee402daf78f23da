package cluster

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/hw/relay"
)

// startPair boots a and b and waits for a to serve and b to stand by.
func startPair(t *testing.T, tweak func(*Config)) *sim {
	t.Helper()
	s := newSim(t, 11, tweak)
	s.boot("a")
	s.boot("b")
	s.waitFor(3*time.Second, "a active, b standby", func() bool { return s.oneActive() && s.serving()[0] == "a" })
	s.run(time.Second)
	s.w.boxes["a"].calls()
	s.w.boxes["b"].calls()
	return s
}

// waitReal polls cond in real time (for work done by another goroutine).
func waitReal(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never happened", what)
		}
	}
}

func TestManagerTakeoverOrder(t *testing.T) {
	s := startPair(t, nil)
	s.w.crash("a")
	s.downUntil["a"] = s.clock.Now().Add(time.Hour)
	s.waitFor(time.Second, "b serving", func() bool { return slices.Equal(s.serving(), []string{"b"}) })
	want := []string{"term 2", "relay B", "vip acquire", "source", "serve 2"}
	if got := s.w.boxes["b"].calls(); !slices.Equal(got, want) {
		t.Fatalf("takeover calls %q, want %q", got, want)
	}
	st := s.mgr("b").Status()
	if st.Role != Active || st.Term != 2 || !st.Lease.Valid || !st.Lease.ByGateway || !st.VIPHeld || !st.Relay.Known || st.Relay.Side != relay.B {
		t.Fatalf("status after takeover: %+v", st)
	}
	last := st.Transitions[len(st.Transitions)-1]
	if last.From != Standby || last.To != Active || last.Reason != "twin silent on both paths" {
		t.Fatalf("last transition %+v", last)
	}
	if !slices.ContainsFunc(st.Alarms, func(a Alarm) bool { return a.Text == AlarmTwinSilent }) {
		t.Fatalf("alarms %+v lack %q", st.Alarms, AlarmTwinSilent)
	}
	for _, p := range st.Paths {
		if p.Up {
			t.Fatalf("path %v up with the twin down", p.Path)
		}
	}
}

func TestManagerSwitchover(t *testing.T) {
	s := startPair(t, nil)
	a := s.mgr("a")
	if err := s.mgr("b").Switchover(context.Background()); !errors.Is(err, ErrNotActive) {
		t.Fatalf("switchover on the standby: %v, want ErrNotActive", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Switchover(context.Background()) }()
	waitReal(t, "switchover request", a.switchPending)
	var outage time.Duration
	s.waitFor(time.Second, "b serving", func() bool {
		if len(s.serving()) == 0 {
			outage += simStep
		}
		return slices.Equal(s.serving(), []string{"b"})
	})
	if err := <-done; err != nil {
		t.Fatalf("switchover: %v", err)
	}
	if outage > 200*time.Millisecond {
		t.Errorf("switchover left no one serving for %v", outage)
	}
	if got, want := s.w.boxes["a"].calls(), []string{"stop", "vip release", "follow b"}; !slices.Equal(got, want) {
		t.Fatalf("a's calls %q, want %q", got, want)
	}
	s.run(5 * time.Second)
	if !s.oneActive() || s.mgr("a").Role() != Standby {
		t.Fatalf("after switchover: %s", s.roles())
	}

	// Back again: the twin in maintenance cannot take over.
	s.mgr("a").SetMaintenance(true)
	s.run(time.Second)
	go func() { done <- s.mgr("b").Switchover(context.Background()) }()
	waitReal(t, "switchover request", s.mgr("b").switchPending)
	s.run(100 * time.Millisecond)
	if err := <-done; err == nil || !strings.Contains(err.Error(), AlarmNoHandover) {
		t.Fatalf("switchover to a twin in maintenance: %v, want %q", err, AlarmNoHandover)
	}
	if got := s.serving(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("serving %v after a refused switchover, want b", got)
	}
}

func TestManagerMaintenance(t *testing.T) {
	s := startPair(t, nil)
	s.mgr("a").SetMaintenance(true)
	s.waitFor(time.Second, "b serving", func() bool { return slices.Equal(s.serving(), []string{"b"}) })
	if r := s.mgr("a").Role(); r != Maintenance {
		t.Fatalf("a is %v, want MAINTENANCE", r)
	}
	if !s.mgr("a").Status().Maintenance {
		t.Fatal("status does not show maintenance")
	}
	s.w.crash("b")
	s.downUntil["b"] = s.clock.Now().Add(time.Hour)
	s.run(5 * time.Second)
	if r := s.mgr("a").Role(); r != Maintenance || len(s.serving()) != 0 {
		t.Fatalf("a is %v (serving %v) with its twin gone, want MAINTENANCE and no one serving", r, s.serving())
	}
	s.mgr("a").SetMaintenance(false)
	s.waitFor(time.Second, "a serving", func() bool { return slices.Equal(s.serving(), []string{"a"}) })
}

func TestManagerMonitorRestartThenMigrate(t *testing.T) {
	var failing atomic.Bool
	var restarts atomic.Int32
	pbx := Monitor{Name: "pbx", ActiveOnly: true,
		Check: func(context.Context) error {
			if failing.Load() {
				return errors.New("no answer to OPTIONS")
			}
			return nil
		},
		Restart: func(context.Context) error { restarts.Add(1); return nil },
	}
	s := newSim(t, 13, nil)
	s.mons["a"], s.mons["b"] = []Monitor{pbx}, []Monitor{pbx}
	s.boot("a")
	s.boot("b")
	s.waitFor(3*time.Second, "a active", func() bool { return s.oneActive() && s.serving()[0] == "a" })
	s.run(time.Second)
	failing.Store(true)
	s.waitFor(time.Second, "a standby", func() bool { return s.mgr("a").Role() != Active })
	failing.Store(false)
	if n := restarts.Load(); n != DefaultMigrationThreshold {
		t.Fatalf("%d restarts in place before moving, want %d", n, DefaultMigrationThreshold)
	}
	ms := s.mgr("a").Status().Monitors
	if len(ms) != 1 || ms[0].Restarts != DefaultMigrationThreshold {
		t.Fatalf("monitor status %+v", ms)
	}
	s.waitFor(time.Second, "b serving", func() bool { return slices.Equal(s.serving(), []string{"b"}) })
	if tr := s.mgr("a").Status().Transitions; !strings.Contains(tr[len(tr)-1].Reason, "monitor pbx failed 4 times") {
		t.Fatalf("transition reason %q", tr[len(tr)-1].Reason)
	}
}

func TestManagerTakeoverFailures(t *testing.T) {
	tests := []struct {
		name   string
		inject func(b *box, w *simWorld)
		want   []string // b's calls at the failed takeover
	}{
		{name: "term not persisted", inject: func(b *box, _ *simWorld) { b.setTermErr = errInjected },
			want: []string{"term 2", "follow a"}},
		{name: "VIP not added", inject: func(b *box, _ *simWorld) { b.acquireErr = errInjected },
			want: []string{"term 2", "relay B", "vip acquire", "follow a"}},
		{name: "PBX does not start", inject: func(b *box, _ *simWorld) { b.serveErr = errInjected },
			want: []string{"term 2", "relay B", "vip acquire", "source", "serve 2", "vip release", "follow a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startPair(t, nil)
			b := s.w.boxes["b"]
			b.mu.Lock()
			tc.inject(b, s.w)
			b.mu.Unlock()
			s.w.crash("a")
			s.downUntil["a"] = s.clock.Now().Add(time.Hour)
			s.waitFor(time.Second, "a takeover attempt", func() bool { return len(s.mgr("b").Status().Transitions) > 2 })
			if got := b.calls(); !slices.Equal(got, tc.want) {
				t.Fatalf("calls %q, want %q", got, tc.want)
			}
			st := s.mgr("b").Status()
			if st.Role != Standby || st.Lease.Valid || !slices.ContainsFunc(st.Alarms, func(a Alarm) bool { return a.Text == "takeover failed" }) {
				t.Fatalf("after a failed takeover: %+v", st)
			}
			b.mu.Lock()
			b.setTermErr, b.acquireErr, b.serveErr = nil, nil, nil
			b.mu.Unlock()
			s.waitFor(time.Second, "b serving", func() bool { return slices.Equal(s.serving(), []string{"b"}) })
			if st := s.mgr("b").Status(); slices.ContainsFunc(st.Alarms, func(a Alarm) bool { return a.Text == "takeover failed" }) {
				t.Fatalf("alarm kept after a good takeover: %+v", st.Alarms)
			}
		})
	}
}

func TestManagerRelayMismatchIsAnAlarm(t *testing.T) {
	s := startPair(t, nil)
	s.w.mu.Lock()
	s.w.relErr = relay.ErrNotFollowing
	s.w.mu.Unlock()
	s.w.crash("a")
	s.downUntil["a"] = s.clock.Now().Add(time.Hour)
	s.waitFor(time.Second, "b serving", func() bool { return slices.Equal(s.serving(), []string{"b"}) })
	st := s.mgr("b").Status()
	if !slices.ContainsFunc(st.Alarms, func(a Alarm) bool { return a.Text == "relay did not follow" }) {
		t.Fatalf("alarms %+v lack the relay", st.Alarms)
	}
}

func TestManagerHealthyForTheWatchdog(t *testing.T) {
	s := startPair(t, nil)
	a := s.mgr("a")
	if !a.Healthy() {
		t.Fatal("a running loop is not healthy")
	}
	s.w.hang("a", true)
	s.run(s.cfg["a"].WatchdogTimeout / 2)
	if a.Healthy() {
		t.Fatal("a loop stalled for half the watchdog timeout is still healthy")
	}
	s.w.hang("a", false)
	s.run(100 * time.Millisecond)
	if !a.Healthy() {
		t.Fatal("resumed loop not healthy")
	}
	// The active (b took over during the stall) loses the twin and the
	// gateway: FENCED, the fence is told, no more kicks.
	s.waitFor(time.Second, "one active", s.oneActive)
	n := s.serving()[0]
	act := s.mgr(n)
	s.w.link.Cut(Crossover)
	s.w.link.Cut(LAN)
	s.run(time.Second)
	if act.Role() != Active {
		t.Fatalf("active with both paths cut is %v, want ACTIVE", act.Role())
	}
	s.w.link.SetLAN(n, false)
	s.waitFor(time.Second, "fenced", func() bool { return act.Role() == Fenced })
	if act.Healthy() || s.w.boxes[n].fenced == "" {
		t.Fatalf("fenced box healthy=%v, fence told %q", act.Healthy(), s.w.boxes[n].fenced)
	}
}

func TestManagerConfig(t *testing.T) {
	good := testConfig("a", "b")
	tests := []struct {
		name  string
		tweak func(*Config)
		want  string
	}{
		{name: "same names", tweak: func(c *Config) { c.Peer = "a" }, want: "both named"},
		{name: "stranger preferred", tweak: func(c *Config) { c.Preferred = "c" }, want: "names neither"},
		{name: "failback without preferred", tweak: func(c *Config) { c.Failback = true }, want: "failback needs"},
		{name: "lease beyond dead time", tweak: func(c *Config) { c.Lease = time.Second }, want: "exceeds dead_time"},
		{name: "probe span within a tick", tweak: func(c *Config) { c.ProbeSpan = c.Interval }, want: "must exceed the interval"},
		{name: "bad side", tweak: func(c *Config) { c.Side = 7 }, want: "relay side"},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.tweak(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			if _, err := New(c, Resources{}); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
	if _, err := New(good, Resources{}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("New without resources: %v", err)
	}
}

func TestFromConfig(t *testing.T) {
	c := FromConfig("a", relay.A, config.Cluster{Peer: "b", Preferred: "a", Failback: true,
		DeadTime: config.Duration(600 * time.Millisecond), MigrationThreshold: 5})
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Node != "a" || c.Peer != "b" || c.Preferred != "a" || !c.Failback || c.MigrationThreshold != 5 {
		t.Fatalf("fields not carried over: %+v", c)
	}
	if c.DeadTime != 600*time.Millisecond || c.Lease != c.DeadTime || c.Interval != DefaultInterval || c.FailbackDelay != DefaultFailbackDelay {
		t.Fatalf("defaults: dead %v lease %v interval %v failback delay %v", c.DeadTime, c.Lease, c.Interval, c.FailbackDelay)
	}
}

// TestManagerRun runs the real loop on the real clock: a lone box takes
// over after boot_wait, and on shutdown stops serving, drops the VIP and
// says goodbye.
func TestManagerRun(t *testing.T) {
	clock := clockwork.NewRealClock()
	w := newSimWorld(clock, 60*time.Millisecond)
	cfg := Config{Side: relay.A, Interval: 10 * time.Millisecond, DeadTime: 60 * time.Millisecond, ProbeSpan: 20 * time.Millisecond,
		BootWait: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	b, m, err := w.addBox("a", "b", cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	waitReal(t, "a serving", func() bool { return m.Role() == Active && m.LeaseValid() })
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	b.mu.Lock()
	held, serving := b.vipHeld, b.serving
	b.mu.Unlock()
	if held || serving || m.LeaseValid() {
		t.Fatalf("after shutdown: vip held %v, serving %v, lease %v", held, serving, m.LeaseValid())
	}
	w.link.mu.Lock()
	last := w.link.ends["a"].local
	w.link.mu.Unlock()
	if !last.Goodbye || last.Role != Standby {
		t.Fatalf("last beat %+v, want a goodbye from a standby", last)
	}
}

// TestManagerSlowProbeStillServes: a VIP probe that outlasts ProbeSpan
// (three tries 50 ms apart) must not leave the new active's lease lapsed
// on arrival: the lease counts from the probe's end.
func TestManagerSlowProbeStillServes(t *testing.T) {
	for _, takes := range []time.Duration{0, 50 * time.Millisecond, 150 * time.Millisecond, 250 * time.Millisecond} {
		t.Run(takes.String(), func(t *testing.T) {
			s := startPair(t, nil)
			b := s.w.boxes["b"]
			b.mu.Lock()
			b.probeTakes = takes
			b.mu.Unlock()
			before := s.takeovers
			s.w.crash("a")
			s.downUntil["a"] = s.clock.Now().Add(time.Hour)
			s.waitFor(2*time.Second, "b serving", func() bool { return slices.Equal(s.serving(), []string{"b"}) })
			s.run(time.Second)
			if !slices.Equal(s.serving(), []string{"b"}) {
				t.Fatalf("b stopped serving: %s", s.roles())
			}
			if n := s.takeovers - before; n != 1 {
				t.Fatalf("%d takeovers after the crash, want 1", n)
			}
		})
	}
}
