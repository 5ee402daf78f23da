package watchdog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// FenceConfig tunes a Fence.
type FenceConfig struct {
	// Period between kicks; zero is a third of the watchdog's timeout.
	Period time.Duration
	// Clock drives the kicker; nil is the real clock.
	Clock clockwork.Clock
	// Logger; nil is slog.Default().
	Logger *slog.Logger
}

// Fence kicks a watchdog only while the node is healthy. Once the node is
// unhealthy, or FenceNow was called, it stops kicking for good ("fences"
// the node) and the watchdog resets the node within its timeout of the last
// kick. A fenced node never resumes kicking: the twin counts on the reset
// once it has waited out the timeout.
type Fence struct {
	wd      Watchdog
	healthy func() bool
	period  time.Duration
	clock   clockwork.Clock
	log     *slog.Logger

	once   sync.Once
	fenceC chan struct{}
	// kickMu is held across a health check and its kick, so that no kick
	// follows a FenceNow that has returned.
	kickMu sync.Mutex
	mu     sync.Mutex
	fenced bool
	reason string
}

// NewFence returns a fence over wd. healthy is called once per period from
// the goroutine running Run; it must not block for long.
func NewFence(wd Watchdog, healthy func() bool, cfg FenceConfig) *Fence {
	if cfg.Period <= 0 {
		cfg.Period = wd.Timeout() / 3
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Fence{wd: wd, healthy: healthy, period: cfg.Period, clock: cfg.Clock, log: cfg.Logger, fenceC: make(chan struct{})}
}

// Period is the interval between kicks.
func (f *Fence) Period() time.Duration { return f.period }

// Fenced reports whether the fence has stopped kicking.
func (f *Fence) Fenced() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fenced
}

// FenceNow stops kicking at once, whatever the health check says. Once it
// returns, the watchdog is not kicked again.
func (f *Fence) FenceNow(reason string) {
	f.kickMu.Lock()
	defer f.kickMu.Unlock()
	f.fence(reason)
}

func (f *Fence) fence(reason string) {
	f.mu.Lock()
	first := !f.fenced
	if first {
		f.fenced = true
		f.reason = reason
	}
	f.mu.Unlock()
	if first {
		f.log.Warn("fencing: watchdog no longer kicked", "reason", reason, "timeout", f.wd.Timeout())
		f.once.Do(func() { close(f.fenceC) })
	}
}

// Run kicks the watchdog every period while healthy reports true, until ctx
// ends or the node is fenced. It returns nil when ctx ends; the watchdog
// stays armed (Close it on a deliberate shutdown). After fencing it returns
// nil too: the watchdog will reset the node. A kick that fails for good
// (the watchdog closed or already fired) ends Run with that error.
func (f *Fence) Run(ctx context.Context) error {
	if f.period <= 0 {
		return fmt.Errorf("running fence: period %v is not above zero", f.period)
	}
	t := f.clock.NewTicker(f.period)
	defer t.Stop()
	for {
		if err := f.step(); err != nil {
			return err
		}
		if f.Fenced() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-f.fenceC:
			return nil
		case <-t.Chan():
		}
	}
}

func (f *Fence) step() error {
	f.kickMu.Lock()
	defer f.kickMu.Unlock()
	if f.Fenced() {
		return nil
	}
	if !f.healthy() {
		f.fence("health check failed")
		return nil
	}
	if err := f.wd.Kick(); err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrReset) {
			return fmt.Errorf("kicking watchdog: %w", err)
		}
		// A transient failure: the next period tries again; if it
		// persists, the watchdog resets the node, which is right.
		f.log.Error("kicking watchdog", "err", err)
	}
	return nil
}
