package appliance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twinpbx/twinpbx/board"
	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/isdn/exchange"
	"github.com/twinpbx/twinpbx/hw/relay"
	"github.com/twinpbx/twinpbx/pbx"
	"github.com/twinpbx/twinpbx/pbx/isdngw"
)

// SpanStatus is one ISDN span as `twinpbx status` shows it.
type SpanStatus struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Trunk  string `json:"trunk"`
	Device string `json:"device"`
	// Gateway is where the span's ISDN gateway takes SIP from the PBX.
	Gateway string `json:"gateway"`
	// LineUp and Alarms are layer 1 as the card last reported it.
	LineUp bool   `json:"line_up"`
	Alarms string `json:"alarms,omitempty"`
	// Error is why the gateway is not running, if it is not.
	Error string `json:"error,omitempty"`
}

// isdnSpans runs an ISDN gateway for each of the board's spans that an
// isdn trunk of the config points at (the i-th isdn trunk is the i-th
// span): the gateway listens at the trunk's host:port and sends the
// line's calls to the PBX's UDP listener. On the simulated board a span's
// device is "sim" and the exchange emulator stands in for the line, so a
// box on a laptop has a telephone network to call and be called from.
//
// On a twin pair the spans also feed the PSTN layer-1 monitor (monitor).
type isdnSpans struct {
	// dataDir and side are set on a twin: on the simulated board the
	// span's line then follows the shared relay (exchange.SimLine).
	dataDir string
	side    relay.Side

	mu    sync.Mutex
	spans []SpanStatus
	lines []spanLine // beside spans
}

// spanLine is what the PSTN monitor tracks of one span.
type spanLine struct {
	// watched: the span's gateway was started (a span with a config
	// problem is shown, not watched).
	watched bool
	// downSince is when layer 1 went down, zero while it is up; upSince
	// when it came up, zero while it is down.
	downSince, upSince time.Time
	// restarted is the last restart in place; restart asks the span's
	// gateway to start again at once.
	restarted time.Time
	restart   chan struct{}
	// reported is closed by the first layer-1 report of the gateway's
	// current run (made anew before each run).
	reported chan struct{}
}

// spanChannels returns the B channels of each ISDN span of the board
// named boardName, in order (0 for a span of unknown type), for the PBX's
// isdn trunks that do not give theirs (pbx.Options.SpanChannels). A board
// that cannot be read has none known: start logs why.
func spanChannels(boardName string) []int {
	prof, err := loadBoard(boardName)
	if err != nil {
		return nil
	}
	out := make([]int, len(prof.ISDN))
	for i, span := range prof.ISDN {
		switch typ, err := isdn.ParseSpanType(span.Type); {
		case err != nil:
		case typ == isdn.PRI:
			out[i] = config.PRIChannels
		default:
			out[i] = config.BRIChannels
		}
	}
	return out
}

// start launches the gateways; they end with ctx. Problems are logged and
// shown in the status: the PBX runs on without the line.
func (s *isdnSpans) start(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger, boardName string, cfg *config.Config, ls []pbx.Listener) {
	trunks, _ := cfg.TrunksAndRoutes()
	var isdnTrunks []config.TrunkLine
	for _, t := range trunks {
		if t.Type == config.LineISDN {
			isdnTrunks = append(isdnTrunks, t)
		}
	}
	if len(isdnTrunks) == 0 {
		return
	}
	prof, err := loadBoard(boardName)
	if err != nil {
		log.Error("ISDN trunks configured, but the board profile cannot be read", "err", err)
		return
	}
	pbxAddr, ok := udpListener(ls)
	if !ok {
		log.Error("ISDN trunks configured, but the PBX has no UDP listener for the gateway")
		return
	}
	for i, t := range isdnTrunks {
		st := SpanStatus{Trunk: t.Name, Gateway: t.Host}
		if i >= len(prof.ISDN) {
			st.Error = fmt.Sprintf("the board %s has no ISDN span for trunk %s", prof.Name, t.Name)
			log.Error("no ISDN span for an isdn trunk", "trunk", t.Name, "board", prof.Name)
			s.add(st)
			continue
		}
		span := prof.ISDN[i]
		st.Name, st.Type, st.Device = span.Name, span.Type, span.Serial.Device
		idx := s.add(st)
		typ, err := isdn.ParseSpanType(span.Type)
		if err == nil && typ == 0 {
			err = fmt.Errorf("span %s: no type", span.Name)
		}
		listen, perr := netip.ParseAddrPort(t.Host)
		if err == nil && perr != nil {
			err = fmt.Errorf("trunk %s: the ISDN gateway's host:port %q: %w", t.Name, t.Host, perr)
		}
		if err != nil {
			s.setError(idx, err)
			log.Error("ISDN span not started", "span", span.Name, "err", err)
			continue
		}
		gcfg := isdngw.Config{
			Listen: listen, PBX: pbxAddr, Type: typ,
			OnLayer1: func(l1 card.L1) { s.setLayer1(idx, l1) },
			Log:      log.With("component", "isdn", "span", span.Name),
		}
		sim := s.simLine(idx, prof, span, gcfg.Log)
		restart := s.watch(idx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, idx, span, gcfg, sim, restart)
		}()
	}
}

// run keeps one span's gateway running until ctx ends, starting it
// again 5 s after it fails, or at once when the PSTN monitor restarts it.
func (s *isdnSpans) run(ctx context.Context, idx int, span board.ISDNSpan, cfg isdngw.Config, sim func(*exchange.Exchange), restart <-chan struct{}) {
	for {
		runCtx, cancel := context.WithCancel(ctx)
		s.newRun(idx)
		done := make(chan error, 1)
		go func() { done <- isdngw.RunSpan(runCtx, span.Serial, cfg, sim) }()
		var err error
		restarted := false
		select {
		case err = <-done:
		case <-restart:
			cancel()
			<-done
			restarted = true
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if restarted {
			cfg.Log.Warn("ISDN gateway restarted to re-activate layer 1")
			continue
		}
		s.setError(idx, err)
		cfg.Log.Error("ISDN gateway stopped; starting it again in 5 s", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-restart:
		case <-time.After(5 * time.Second):
		}
	}
}

// simLine is the simulated line's driver for span i of a twin on the
// simulated board: the span's layer 1 follows the shared relay and the
// faults of exchange.SimLine. Nil elsewhere: a standalone box's emulator
// keeps its line up.
func (s *isdnSpans) simLine(i int, prof board.Profile, span board.ISDNSpan, log *slog.Logger) func(*exchange.Exchange) {
	if s.dataDir == "" || span.Serial.Device != isdngw.SimDevice || prof.Relay.Driver != board.RelaySim {
		return nil
	}
	state := prof.Relay.StateFile
	if !filepath.IsAbs(state) {
		state = filepath.Join(s.dataDir, state)
	}
	line := exchange.SimLine{State: state, Side: s.side, Log: log}
	return func(x *exchange.Exchange) {
		reported := s.runReported(i)
		// The driver ends with the emulator, when RunSpan returns. It
		// starts once the gateway has heard the emulator's own first
		// report (the line up, as it starts): started before, its first
		// report could come first and the emulator's would leave the line
		// up until the driver's next one, seconds later.
		go func() {
			select {
			case <-reported:
			case <-x.Done():
				return
			}
			line.Drive(context.Background(), x, 100*time.Millisecond)
		}()
	}
}

// newRun readies span i for a new run of its gateway.
func (s *isdnSpans) newRun(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines[i].reported = make(chan struct{})
}

// runReported is closed once the current run of span i's gateway has
// reported layer 1.
func (s *isdnSpans) runReported(i int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines[i].reported
}

func (s *isdnSpans) add(st SpanStatus) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spans = append(s.spans, st)
	s.lines = append(s.lines, spanLine{})
	return len(s.spans) - 1
}

// watch marks span i watched by the PSTN monitor, its line down until
// layer 1 reports up, and returns the channel that restarts its gateway.
func (s *isdnSpans) watch(i int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.lines[i]
	l.watched, l.downSince, l.restart = true, time.Now(), make(chan struct{}, 1)
	return l.restart
}

func (s *isdnSpans) setError(i int, err error) { s.setErrorAt(i, err, time.Now()) }

func (s *isdnSpans) setErrorAt(i int, err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.spans[i].Error = err.Error()
	}
	s.setUp(i, false, now)
}

func (s *isdnSpans) setLayer1(i int, l1 card.L1) { s.setLayer1At(i, l1, time.Now()) }

func (s *isdnSpans) setLayer1At(i int, l1 card.L1, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spans[i].Alarms, s.spans[i].Error = alarmText(l1.Alarms), ""
	s.setUp(i, l1.Up, now)
	if l := &s.lines[i]; l.reported != nil {
		select {
		case <-l.reported:
		default:
			close(l.reported)
		}
	}
}

// setUp records layer 1 of span i (s.mu held).
func (s *isdnSpans) setUp(i int, up bool, now time.Time) {
	s.spans[i].LineUp = up
	l := &s.lines[i]
	switch {
	case up && (!l.downSince.IsZero() || l.upSince.IsZero()):
		l.downSince, l.upSince = time.Time{}, now
	case !up && l.downSince.IsZero():
		l.downSince, l.upSince = now, time.Time{}
	}
}

// PSTNBothAlarm is the alarm of a twin whose PSTN line is down on both
// boxes (docs/CLUSTER.md, "No ping-pong").
const PSTNBothAlarm = "PSTN line down on both boxes"

// pstnBox is what the PSTN monitor needs of the twin runtime
// (*twin.Node).
type pstnBox interface {
	ActiveSince() time.Time
	SelectRelay(ctx context.Context) error
}

// monitor is the twin pair's PSTN layer-1 monitor over the watched spans
// (docs/ISDN.md, "The layer-1 monitor"); false when no span is watched.
// It runs on the active box only: the standby's relay side is off, so its
// spans see LOS by design. A span counts as failed once its layer 1 has
// been down for the grace, counted from the latest of: the line going
// down, this box becoming active (the relay has just switched), the last
// restart; and as up once its layer 1 has stayed up for the grace. The
// restart selects the relay to this box again and restarts the down
// spans' gateways, which re-activates their layer 1.
func (s *isdnSpans) monitor(p *config.PSTN, box pstnBox) (cluster.Monitor, bool) {
	s.mu.Lock()
	watched := slices.ContainsFunc(s.lines, func(l spanLine) bool { return l.watched })
	s.mu.Unlock()
	if !watched {
		return cluster.Monitor{}, false
	}
	grace := p.Grace()
	return cluster.Monitor{
		Name: "pstn", ActiveOnly: true, Every: time.Second,
		HoldDown: p.HoldDownTime(), BothAlarm: PSTNBothAlarm,
		Check: func(context.Context) error {
			return s.layer1Fault(time.Now(), box.ActiveSince(), grace)
		},
		Restart: func(ctx context.Context) error {
			err := box.SelectRelay(ctx)
			s.reactivate(time.Now())
			return err
		},
	}, true
}

// pstnPair is the twin runtime as the PSTN monitor is wired to it
// (*twin.Node).
type pstnPair interface {
	pstnBox
	AddMonitor(cluster.Monitor) error
}

// watchPSTN gives the twin runtime the PSTN layer-1 monitor, when a span
// is watched. Call it before the runtime starts.
func (s *isdnSpans) watchPSTN(log *slog.Logger, p *config.PSTN, pair pstnPair) {
	m, ok := s.monitor(p, pair)
	if !ok {
		return
	}
	if err := pair.AddMonitor(m); err != nil {
		log.Error("the PSTN layer-1 monitor is not running", "err", err)
		return
	}
	log.Info("PSTN layer-1 monitor on", "grace", p.Grace(), "hold_down", p.HoldDownTime())
}

// layer1Fault reports the watched spans whose layer 1 has been down for
// grace at now, on a box active since active (zero: not active, nothing
// counts). A span down for less than its grace is no verdict yet
// (cluster.ErrNoVerdict), not a pass: a box that has just taken over must
// not forget that its line failed before. A span up for less than its
// grace is no verdict either: a line that comes up for a moment (a flap,
// a card's report as it is opened again) is not back, and its pass would
// clear what the pair remembers of a line down on both boxes.
func (s *isdnSpans) layer1Fault(now, active time.Time, grace time.Duration) error {
	if active.IsZero() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var down, pending []string
	for i, l := range s.lines {
		if !l.watched {
			continue
		}
		st := s.spans[i]
		if l.downSince.IsZero() {
			if up := now.Sub(l.upSince); !l.upSince.IsZero() && up < grace {
				pending = append(pending, fmt.Sprintf("span %s: layer 1 up for %v", st.Name, up.Round(time.Second)))
			}
			continue
		}
		why := cmp.Or(st.Alarms, "not activated")
		if st.Error != "" {
			why = st.Error
		}
		text := fmt.Sprintf("span %s: layer 1 down (%s) for %v", st.Name, why, now.Sub(l.downSince).Round(time.Second))
		if now.Sub(latest(l.downSince, active, l.restarted)) >= grace {
			down = append(down, text)
		} else {
			pending = append(pending, text)
		}
	}
	switch {
	case len(down) > 0:
		return errors.New(strings.Join(down, "; "))
	case len(pending) > 0:
		return fmt.Errorf("%w: %s, within the %v grace", cluster.ErrNoVerdict, strings.Join(pending, "; "), grace)
	}
	return nil
}

func latest(ts ...time.Time) time.Time {
	return slices.MaxFunc(ts, time.Time.Compare)
}

// reactivate restarts the gateways of the watched spans whose layer 1 is
// down; each gets the grace again.
func (s *isdnSpans) reactivate(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.lines {
		l := &s.lines[i]
		if !l.watched || l.downSince.IsZero() {
			continue
		}
		l.restarted = now
		select {
		case l.restart <- struct{}{}:
		default:
		}
	}
}

func alarmText(a card.Alarm) string {
	if a == 0 {
		return ""
	}
	return fmt.Sprint(a)
}

// Status returns the spans; nil when no ISDN trunk is configured.
func (s *isdnSpans) Status() []SpanStatus {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SpanStatus(nil), s.spans...)
}

// udpListener is where the gateway sends the line's calls: the PBX's UDP
// listener, on loopback when it listens on every address.
func udpListener(ls []pbx.Listener) (netip.AddrPort, bool) {
	for _, l := range ls {
		if l.Transport != "udp" {
			continue
		}
		ap, err := netip.ParseAddrPort(l.Addr)
		if err != nil {
			continue
		}
		if ap.Addr().IsUnspecified() {
			ap = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port())
		}
		return ap, true
	}
	return netip.AddrPort{}, false
}
