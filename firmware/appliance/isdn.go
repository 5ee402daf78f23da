package appliance

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/twinpbx/twinpbx/board"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
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
type isdnSpans struct {
	mu    sync.Mutex
	spans []SpanStatus
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, idx, span, gcfg)
		}()
	}
}

// run keeps one span's gateway running until ctx ends, starting it
// again 5 s after it fails.
func (s *isdnSpans) run(ctx context.Context, idx int, span board.ISDNSpan, cfg isdngw.Config) {
	for {
		err := isdngw.RunSpan(ctx, span.Serial, cfg, nil)
		if ctx.Err() != nil {
			return
		}
		s.setError(idx, err)
		cfg.Log.Error("ISDN gateway stopped; starting it again in 5 s", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

func (s *isdnSpans) add(st SpanStatus) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spans = append(s.spans, st)
	return len(s.spans) - 1
}

func (s *isdnSpans) setError(i int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.spans[i].Error = err.Error()
	}
	s.spans[i].LineUp = false
}

func (s *isdnSpans) setLayer1(i int, l1 card.L1) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spans[i].LineUp, s.spans[i].Alarms, s.spans[i].Error = l1.Up, alarmText(l1.Alarms), ""
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
