package relay

import (
	"context"
	"fmt"
	"sync"
	"time"

	hwgpio "github.com/twinpbx/twinpbx/hw/gpio"
)

// DefaultSettle bounds how long a relay's contacts may take to follow the
// coil. Signal relays switch in under 10 ms; 200 ms leaves room for a
// power relay and the sense line's debounce.
const DefaultSettle = 200 * time.Millisecond

// GPIO is a relay whose coil hangs on a GPIO output (true = energised =
// side B) and whose second pole, when wired, drives a GPIO input (true =
// contacts on side B).
type GPIO struct {
	coil   *hwgpio.Output
	sense  *hwgpio.Input // nil: no sense line
	settle time.Duration
	poll   time.Duration

	mu sync.Mutex
}

var _ Relay = (*GPIO)(nil)

// NewGPIO drives a relay through coil, reading its contacts back through
// sense when sense is not nil. settle bounds the time the contacts may
// take to follow (zero: DefaultSettle).
func NewGPIO(coil *hwgpio.Output, sense *hwgpio.Input, settle time.Duration) *GPIO {
	if settle <= 0 {
		settle = DefaultSettle
	}
	return &GPIO{coil: coil, sense: sense, settle: settle, poll: time.Millisecond}
}

// Select energises (B) or de-energises (A) the coil and, with a sense line,
// waits until the contacts follow.
func (r *GPIO) Select(ctx context.Context, side Side) error {
	if err := checkSide(side); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.coil.Set(side.energised()); err != nil {
		return fmt.Errorf("selecting relay side %v: %w", side, err)
	}
	return r.verify(ctx, side)
}

func (r *GPIO) verify(ctx context.Context, side Side) error {
	if r.sense == nil {
		return nil
	}
	return waitSense(ctx, r.sense, side, r.settle, r.poll)
}

// waitSense waits until the sense line shows side, for at most settle.
func waitSense(ctx context.Context, sense *hwgpio.Input, side Side, settle, poll time.Duration) error {
	deadline := time.Now().Add(settle)
	for {
		if sideOf(sense.Read()) == side {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for relay side %v: %w", side, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("relay commanded to side %v, sense line %s still shows %v after %v: %w",
				side, sense.Spec(), side.Other(), settle, ErrNotFollowing)
		}
		// Wake on an edge if the line was opened with edge detection,
		// else after a short poll interval.
		sense.WaitForEdge(min(left, poll))
	}
}

// Position reads the sense line, or reports the commanded coil state when
// there is none.
func (r *GPIO) Position(ctx context.Context) (Side, bool, error) {
	if r.sense != nil {
		return sideOf(r.sense.Read()), true, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return sideOf(r.coil.Commanded()), false, nil
}

// Halt de-energises the coil (side A) without waiting for the contacts.
func (r *GPIO) Halt() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.coil.Set(false); err != nil {
		return fmt.Errorf("halting relay: %w", err)
	}
	return nil
}

// Sensed adds a sense line to a relay whose own read-back is only the
// commanded coil (a Numato board): a second pole of the relay wired to a
// GPIO input, true when the contacts are on side B.
type Sensed struct {
	inner  Relay
	sense  *hwgpio.Input
	settle time.Duration
}

var _ Relay = (*Sensed)(nil)

// WithSense reads the contacts of inner through sense. settle bounds the
// time the contacts may take to follow (zero: DefaultSettle).
func WithSense(inner Relay, sense *hwgpio.Input, settle time.Duration) *Sensed {
	if settle <= 0 {
		settle = DefaultSettle
	}
	return &Sensed{inner: inner, sense: sense, settle: settle}
}

// Select switches the inner relay and waits until the contacts follow.
func (r *Sensed) Select(ctx context.Context, side Side) error {
	if err := r.inner.Select(ctx, side); err != nil {
		return err
	}
	return waitSense(ctx, r.sense, side, r.settle, time.Millisecond)
}

// Position reads the contacts.
func (r *Sensed) Position(ctx context.Context) (Side, bool, error) {
	return sideOf(r.sense.Read()), true, nil
}

// Halt halts the inner relay.
func (r *Sensed) Halt() error { return r.inner.Halt() }
