package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/relay"
)

// SimLine is the simulated board's PSTN line as a twin pair shares it: one
// line from the exchange, through the failover relay (the shared relay's
// state file, which both boxes name), to one box's card at a time. Each
// box runs its own exchange emulator; SimLine tells it what its card sees.
// The line's faults are files beside the relay's state file STATE, so both
// boxes and a test see one line:
//
//	STATE.line-down  the line is down on the exchange's side: LOS on both boxes
//	STATE.cut-A      the cable from the relay to box A's card is cut: LOS on A
//	STATE.cut-B      the same for box B
//	STATE.dial       a call for the exchange to place, "CALLING CALLED": the
//	                 box the line reaches takes it (the file is renamed to
//	                 STATE.dial.taken), places it, hangs up a second after
//	                 the answer, and writes how it went to STATE.dial.done
//
// The box whose side the relay does not select sees LOS, as a card whose
// line the relay gives to the twin.
type SimLine struct {
	// State is the shared relay's state file.
	State string
	// Side is this box's side of the relay.
	Side relay.Side
	Log  *slog.Logger
}

// Suffixes of the line's files (see SimLine).
const (
	simLineDown  = ".line-down"
	simCut       = ".cut-"
	simDial      = ".dial"
	simDialTaken = ".dial.taken"
	SimDialDone  = ".dial.done"
)

// Layer1 is what this box's card sees of the line now.
func (l SimLine) Layer1() card.L1 {
	los := card.L1{Alarms: card.LOS}
	if exists(l.State+simLineDown) || exists(l.State+simCut+l.Side.String()) {
		return los
	}
	if side, err := l.relaySide(); err != nil || side != l.Side {
		return los
	}
	return card.L1{Up: true}
}

// relaySide is where the shared relay connects the line now.
func (l SimLine) relaySide() (relay.Side, error) {
	r, err := relay.NewShared(l.State)
	if err != nil {
		return relay.A, err
	}
	side, _, err := r.Position(context.Background())
	return side, err
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Drive keeps x's layer 1 as the line is, checking every interval, and
// places the calls asked for in STATE.dial while the line reaches this
// box, until ctx ends or x stops.
func (l SimLine) Drive(ctx context.Context, x *Exchange, every time.Duration) {
	log := l.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var last card.L1
	sent := time.Time{}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		l1 := l.Layer1()
		// Sent again now and then: the emulator reports the line up
		// when it starts, maybe after this loop's first report.
		if l1 != last || time.Since(sent) >= 2*time.Second {
			if err := x.SetLayer1(l1); err != nil {
				log.Warn("simulated line: setting layer 1", "err", err)
			} else if l1 != last {
				log.Info("simulated line: layer 1 changed", "up", l1.Up, "alarms", l1.Alarms.String())
			}
			last, sent = l1, time.Now()
		}
		if l1.Up {
			l.dial(ctx, x, log)
		}
		select {
		case <-ctx.Done():
			return
		case <-x.Done():
			return
		case <-t.C:
		}
	}
}

// dial places the call asked for in STATE.dial, if any.
func (l SimLine) dial(ctx context.Context, x *Exchange, log *slog.Logger) {
	if err := os.Rename(l.State+simDial, l.State+simDialTaken); err != nil {
		return // none asked for, or the twin took it
	}
	b, err := os.ReadFile(l.State + simDialTaken)
	if err != nil {
		log.Warn("simulated line: reading the call asked for", "err", err)
		return
	}
	go func() {
		outcome := "connected"
		if err := l.call(ctx, x, string(b)); err != nil {
			outcome = err.Error()
		}
		log.Info("simulated line: the call asked for", "outcome", outcome)
		// Written aside and renamed: a reader polling for the outcome
		// never sees the file empty or half written.
		tmp := l.State + SimDialDone + ".tmp"
		err := os.WriteFile(tmp, []byte(l.Side.String()+" "+outcome+"\n"), 0o644)
		if err == nil {
			err = os.Rename(tmp, l.State+SimDialDone)
		}
		if err != nil {
			log.Warn("simulated line: writing the call's outcome", "err", err)
		}
	}()
}

func (l SimLine) call(ctx context.Context, x *Exchange, req string) error {
	f := strings.Fields(req)
	if len(f) != 2 {
		return fmt.Errorf("the call asked for is %q, not \"CALLING CALLED\"", strings.TrimSpace(req))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := x.WaitReady(ctx); err != nil {
		return err
	}
	c, err := x.Dial(ctx, DialParams{Calling: f[0], Called: f[1]})
	if err != nil {
		return err
	}
	if err := c.Wait(ctx, Connected); err != nil {
		return err
	}
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	return errors.Join(c.Hangup(ctx, 16), c.Wait(ctx, Released))
}

// SetSimLineDown takes the whole simulated line down (or back up) on the
// exchange's side: both boxes see LOS.
func SetSimLineDown(state string, down bool) error { return setFile(state+simLineDown, down) }

// CutSimCable cuts (or mends) the cable from the relay to box side's card.
func CutSimCable(state string, side relay.Side, cut bool) error {
	return setFile(state+simCut+side.String(), cut)
}

// AskSimCall asks the simulated exchange to place a call to the box the
// line reaches; its outcome ends up in state+SimDialDone.
func AskSimCall(state, calling, called string) error {
	if err := os.Remove(state + SimDialDone); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("simulated line: %w", err)
	}
	if err := os.WriteFile(state+simDial, []byte(calling+" "+called+"\n"), 0o644); err != nil {
		return fmt.Errorf("simulated line: asking for a call: %w", err)
	}
	return nil
}

func setFile(path string, on bool) error {
	var err error
	if on {
		err = os.WriteFile(path, nil, 0o644)
	} else if err = os.Remove(path); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("simulated line: %w", err)
	}
	return nil
}
