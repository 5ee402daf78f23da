package watchdog

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// stepWatchdog wraps a watchdog and reports every kick, so a test driving a
// fake clock knows when the fence has acted on a tick.
type stepWatchdog struct {
	Watchdog
	kicks chan struct{}
}

func (w *stepWatchdog) Kick() error {
	err := w.Watchdog.Kick()
	w.kicks <- struct{}{}
	return err
}

func TestFenceResetsUnhealthyNode(t *testing.T) {
	const timeout, period = 3 * time.Second, time.Second
	for _, healthyTicks := range []int{0, 1, 5} {
		s, clock, reset := newFakeSim(t, "")
		wd := &stepWatchdog{Watchdog: s, kicks: make(chan struct{})}
		var healthy atomic.Bool
		healthy.Store(healthyTicks > 0)
		checks := make(chan bool)
		f := NewFence(wd, func() bool {
			h := healthy.Load()
			checks <- h
			return h
		}, FenceConfig{Period: period, Clock: clock, Logger: quiet})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Run(ctx) }()
		t.Cleanup(cancel)

		// The first check and kick happen at once, then one per period.
		for i := 0; ; i++ {
			if i > 0 {
				if err := clock.BlockUntilContext(ctx, 2); err != nil { // sim timer + ticker
					t.Fatal(err)
				}
				if i == healthyTicks {
					healthy.Store(false)
				}
				clock.Advance(period)
			}
			if !<-checks {
				break
			}
			<-wd.kicks
		}
		unhealthySince := clock.Now()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if !f.Fenced() {
			t.Fatal("not fenced after a failed health check")
		}
		if d := s.Deadline().Sub(unhealthySince); d > timeout+period || d < 0 {
			t.Fatalf("reset due %v after the node turned unhealthy, want within %v", d, timeout+period)
		}
		clock.Advance(s.Deadline().Sub(clock.Now()))
		<-reset
	}
}

func TestFenceNowStopsKicks(t *testing.T) {
	s, err := NewSim(SimConfig{Timeout: 50 * time.Millisecond, Logger: quiet, OnReset: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f := NewFence(s, func() bool { return true }, FenceConfig{Logger: quiet})
	if f.Period() != s.Timeout()/3 {
		t.Errorf("Period() = %v, want timeout/3", f.Period())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := f.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	f.FenceNow("lost the tie-breaker")
	waitFor(t, "simulated reset", s.Fired)
	wg.Wait()
}

func TestFenceStopsOnContext(t *testing.T) {
	clock := clockwork.NewFakeClock()
	s, err := NewSim(SimConfig{Timeout: 3 * time.Second, Clock: clock, Logger: quiet, OnReset: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f := NewFence(s, func() bool { return true }, FenceConfig{Clock: clock, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if f.Fenced() {
		t.Error("a cancelled fence reports itself fenced")
	}
}
