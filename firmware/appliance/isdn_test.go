package appliance

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/board"
	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/serial"
	"github.com/twinpbx/twinpbx/internal/syncbuf"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/isdngw"
)

// fakePair stands in for the twin runtime.
type fakePair struct {
	active   time.Time
	selected int
	selErr   error
}

func (f *fakePair) ActiveSince() time.Time { return f.active }
func (f *fakePair) SelectRelay(context.Context) error {
	f.selected++
	return f.selErr
}

// spansAt builds spans as start leaves them: each watched span's line
// went down at start.
func spansAt(start time.Time, names ...string) *isdnSpans {
	s := &isdnSpans{}
	for _, n := range names {
		i := s.add(SpanStatus{Name: n})
		s.watch(i)
		s.lines[i].downSince = start
	}
	return s
}

func TestLayer1Fault(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	const grace = 10 * time.Second
	los := card.L1{Alarms: card.LOS}
	tests := []struct {
		name   string
		active time.Duration // since t0; <0: not active
		events func(s *isdnSpans)
		at     time.Duration // when checked, since t0
		want   string        // substring of the failure; empty: none
		wait   bool          // no verdict yet (cluster.ErrNoVerdict)
	}{
		{name: "not active: never counts", active: -1, at: time.Hour},
		{name: "line up", active: 0, events: func(s *isdnSpans) { s.setUpAt(0, true, t0.Add(time.Second)) }, at: time.Hour},
		{name: "never activated, within the grace of the takeover", active: 0, at: 9 * time.Second, wait: true},
		{name: "never activated, past the grace", active: 0, at: 10 * time.Second, want: "span bri0: layer 1 down (not activated) for 10s"},
		{name: "down long before the takeover: grace from the takeover", active: 30 * time.Minute, at: 30*time.Minute + 5*time.Second, wait: true},
		{name: "down long before the takeover, past the grace", active: 30 * time.Minute, at: 30*time.Minute + 11*time.Second, want: "layer 1 down"},
		{name: "LOS while active: grace from the loss", active: 0, events: func(s *isdnSpans) {
			s.setUpAt(0, true, t0.Add(time.Second))
			s.setLayer1At(0, los, t0.Add(time.Hour))
		}, at: time.Hour + 9*time.Second, wait: true},
		{name: "LOS while active, past the grace", active: 0, events: func(s *isdnSpans) {
			s.setUpAt(0, true, t0.Add(time.Second))
			s.setLayer1At(0, los, t0.Add(time.Hour))
		}, at: time.Hour + 10*time.Second, want: "layer 1 down (LOS) for 10s"},
		{name: "restart in place gives the grace again", active: 0, events: func(s *isdnSpans) {
			s.reactivate(t0.Add(time.Minute))
		}, at: time.Minute + 5*time.Second, wait: true},
		{name: "restart in place, still down past the grace", active: 0, events: func(s *isdnSpans) {
			s.reactivate(t0.Add(time.Minute))
		}, at: time.Minute + 10*time.Second, want: "for 1m10s"},
		{name: "line back before the grace ran out", active: 0, events: func(s *isdnSpans) {
			s.setUpAt(0, true, t0.Add(5*time.Second))
		}, at: time.Minute},
		{name: "line back for less than the grace: no verdict", active: 0, events: func(s *isdnSpans) {
			s.setUpAt(0, true, t0.Add(time.Second))
			s.setLayer1At(0, los, t0.Add(time.Hour))
			s.setLayer1At(0, card.L1{Up: true}, t0.Add(time.Hour+time.Minute))
		}, at: time.Hour + time.Minute + 9*time.Second, wait: true},
		{name: "line back for the grace: up", active: 0, events: func(s *isdnSpans) {
			s.setLayer1At(0, los, t0.Add(time.Hour))
			s.setLayer1At(0, card.L1{Up: true}, t0.Add(time.Hour+time.Minute))
		}, at: time.Hour + time.Minute + 10*time.Second},
		{name: "reports of a line that stays up do not start the grace again", active: 0, events: func(s *isdnSpans) {
			s.setUpAt(0, true, t0.Add(time.Second))
			s.setLayer1At(0, card.L1{Up: true}, t0.Add(time.Hour))
		}, at: time.Hour + time.Second},
		{name: "a span down past the grace fails beside one just back", active: 0, events: func(s *isdnSpans) {
			s.add(SpanStatus{Name: "bri1"})
			s.watch(1)
			s.setUpAt(1, true, t0.Add(time.Hour))
		}, at: time.Hour, want: "span bri0: layer 1 down"},
		{name: "a gateway that stopped counts as down", active: 0, events: func(s *isdnSpans) {
			s.setUpAt(0, true, t0.Add(time.Second))
			s.setErrorAt(0, errors.New("card gone"), t0.Add(time.Minute))
		}, at: 2 * time.Minute, want: "down (card gone)"},
		{name: "a span not watched is not counted", active: 0, events: func(s *isdnSpans) {
			s.add(SpanStatus{Name: "bri1", Error: "the board sim has no ISDN span for trunk x"})
			s.setUpAt(0, true, t0)
		}, at: time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := spansAt(t0, "bri0")
			if tc.events != nil {
				tc.events(s)
			}
			var active time.Time
			if tc.active >= 0 {
				active = t0.Add(tc.active)
			}
			err := s.layer1Fault(t0.Add(tc.at), active, grace)
			if got := errors.Is(err, cluster.ErrNoVerdict); got != tc.wait {
				t.Fatalf("no verdict = %v (%v), want %v", got, err, tc.wait)
			}
			if tc.wait {
				return
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("failure %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("failure %v, want one with %q", err, tc.want)
			}
		})
	}
}

func TestPSTNMonitor(t *testing.T) {
	if _, ok := (&isdnSpans{}).monitor(nil, &fakePair{}); ok {
		t.Fatal("a monitor without a watched span")
	}
	s := spansAt(time.Now().Add(-time.Hour), "bri0", "bri1")
	s.setUp(1, true, time.Now())
	pair := &fakePair{active: time.Now().Add(-time.Minute)}
	m, ok := s.monitor(&config.PSTN{Layer1Grace: config.Duration(time.Second)}, pair)
	if !ok {
		t.Fatal("no monitor for watched spans")
	}
	if m.Name != "pstn" || !m.ActiveOnly || m.HoldDown != config.DefaultPSTNHoldDown || m.BothAlarm != PSTNBothAlarm || m.Restart == nil {
		t.Fatalf("monitor %+v", m)
	}
	err := m.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bri0") || strings.Contains(err.Error(), "bri1") {
		t.Fatalf("check: %v, want bri0 down only", err)
	}
	pair.selErr = errors.New("relay stuck")
	if err := m.Restart(context.Background()); err == nil || pair.selected != 1 {
		t.Fatalf("restart: %v after %d relay selections, want the relay's error after one", err, pair.selected)
	}
	select {
	case <-s.lines[0].restart:
	default:
		t.Fatal("the down span's gateway was not restarted")
	}
	select {
	case <-s.lines[1].restart:
		t.Fatal("the span that is up was restarted")
	default:
	}
	if err := m.Check(context.Background()); !errors.Is(err, cluster.ErrNoVerdict) {
		t.Fatalf("check right after the restart: %v, want no verdict within the grace", err)
	}
}

// TestSpanRunReported: each run of a span's gateway gets a channel that
// its first layer-1 report closes (the simulated line's driver waits for
// it), and later reports leave it be.
func TestSpanRunReported(t *testing.T) {
	s := &isdnSpans{}
	idx := s.add(SpanStatus{Name: "bri0"})
	s.watch(idx)
	s.newRun(idx)
	first := s.runReported(idx)
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	if closed(first) {
		t.Fatal("reported before any report")
	}
	s.setLayer1(idx, card.L1{Up: true})
	s.setLayer1(idx, card.L1{Alarms: card.LOS})
	if !closed(first) {
		t.Fatal("the first report did not close the run's channel")
	}
	s.newRun(idx)
	if closed(s.runReported(idx)) {
		t.Fatal("the next run starts reported")
	}
}

// setUpAt sets span i's layer 1 at a given time.
func (s *isdnSpans) setUpAt(i int, up bool, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setUp(i, up, at)
}

// TestSpanRestart: a restart from the PSTN monitor starts the span's
// gateway again at once, as a restart, not as a gateway that failed; the
// span's run ends with ctx.
func TestSpanRestart(t *testing.T) {
	var logs syncbuf.Buffer
	s := &isdnSpans{}
	idx := s.add(SpanStatus{Name: "bri0"})
	restart := s.watch(idx)
	var ups atomic.Int32
	cfg := isdngw.Config{
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), PBX: netip.MustParseAddrPort("127.0.0.1:9"), Type: isdn.BRIPointToMultipoint,
		OnLayer1: func(l1 card.L1) {
			if l1.Up {
				ups.Add(1)
			}
			s.setLayer1(idx, l1)
		},
		Log: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	span := board.ISDNSpan{Name: "bri0", Serial: serial.Config{Device: isdngw.SimDevice}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx, idx, span, cfg, nil, restart) }()
	t.Cleanup(func() { cancel(); <-done })

	waitfor.Cond(t, 20*time.Second, "the span's layer 1 up", func() bool { return ups.Load() >= 1 })
	s.lines[idx].restart <- struct{}{}
	waitfor.Cond(t, 20*time.Second, "layer 1 up again from the restarted gateway", func() bool { return ups.Load() >= 2 })
	if out := logs.String(); !strings.Contains(out, "restarted to re-activate layer 1") || strings.Contains(out, "ISDN gateway stopped") {
		t.Errorf("the restart was not logged as a restart:\n%s", out)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the span's run did not end with its context")
	}
}

// The PBX learns each span's B channels from the board profile: a BRI's
// on the built-in boards, a PRI's on a board with a pri-e1 span, none of a
// board that cannot be read.
func TestSpanChannels(t *testing.T) {
	for _, tc := range []struct {
		board string
		want  []int
	}{
		{"sim", []int{config.BRIChannels}},
		{"apu2", []int{config.BRIChannels}},
		{"../../board/testdata/custom.yaml", []int{config.PRIChannels}},
		{"no-such-board", nil},
	} {
		if got := spanChannels(tc.board); !slices.Equal(got, tc.want) {
			t.Errorf("board %s: span channels %v, want %v", tc.board, got, tc.want)
		}
	}
}
