package relay

import (
	"context"
	"errors"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	hwgpio "github.com/twinpbx/twinpbx/hw/gpio"
)

func TestSide(t *testing.T) {
	tests := []struct {
		in      string
		want    Side
		wantErr bool
	}{
		{"A", A, false}, {"b", B, false}, {" B\n", B, false}, {"C", 0, true}, {"", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSide(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ParseSide(%q) = %v, %v", tt.in, got, err)
		}
	}
	if A.Other() != B || B.Other() != A {
		t.Error("Other() is wrong")
	}
	if Side(7).Valid() || Side(7).String() != "Side(7)" {
		t.Error("Side(7) taken for valid")
	}
}

// wiredCoil is a coil line whose relay drives a sense line through a
// second pole, unless the relay is stuck.
type wiredCoil struct {
	*gpiotest.Pin
	sense *gpiotest.Pin
	stuck bool
}

func (w *wiredCoil) Out(l gpio.Level) error {
	if err := w.Pin.Out(l); err != nil {
		return err
	}
	if !w.stuck {
		return w.sense.Out(l)
	}
	return nil
}

func newGPIORelay(t *testing.T, withSense, stuck, activeLow bool) (*GPIO, *wiredCoil) {
	t.Helper()
	sense := &gpiotest.Pin{N: "SENSE"}
	coil := &wiredCoil{Pin: &gpiotest.Pin{N: "COIL", L: gpio.High}, sense: sense, stuck: stuck}
	pins := hwgpio.Pins{"COIL": coil, "SENSE": sense}
	out, err := hwgpio.OpenOutput(pins, hwgpio.Spec{Name: "COIL", ActiveLow: activeLow}, false)
	if err != nil {
		t.Fatal(err)
	}
	var in *hwgpio.Input
	if withSense {
		// The sense pole is wired with the same polarity as the coil.
		in, err = hwgpio.OpenInput(pins, hwgpio.Spec{Name: "SENSE", ActiveLow: activeLow}, gpio.Float, hwgpio.NoEdge)
		if err != nil {
			t.Fatal(err)
		}
	}
	return NewGPIO(out, in, 20*time.Millisecond), coil
}

func TestGPIORelay(t *testing.T) {
	tests := []struct {
		name                    string
		sense, stuck, activeLow bool
		wantErr                 error
		wantSensed              bool
	}{
		{name: "coil only", wantSensed: false},
		{name: "with sense", sense: true, wantSensed: true},
		{name: "active-low with sense", sense: true, activeLow: true, wantSensed: true},
		{name: "stuck, sensed", sense: true, stuck: true, wantErr: ErrNotFollowing},
		{name: "stuck, not sensed", stuck: true},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, coil := newGPIORelay(t, tt.sense, tt.stuck, tt.activeLow)
			if got := coil.Read() == gpio.High; got != tt.activeLow {
				t.Fatalf("coil line high=%v after open, want de-energised", got)
			}
			err := r.Select(ctx, B)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Select(B) = %v, want %v", err, tt.wantErr)
			}
			if got := coil.Read() == gpio.High; got == tt.activeLow {
				t.Errorf("coil line high=%v after Select(B), want energised", got)
			}
			side, sensed, err := r.Position(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantSide := B
			if tt.stuck && tt.sense {
				wantSide = A // the contacts tell the truth
			}
			if side != wantSide || sensed != (tt.wantSensed || tt.sense) {
				t.Errorf("Position() = %v, %v; want %v, %v", side, sensed, wantSide, tt.sense)
			}
			if err := r.Halt(); err != nil {
				t.Fatal(err)
			}
			if side, _, _ := r.Position(ctx); side != A {
				t.Errorf("Position() after Halt = %v, want A", side)
			}
			if err := r.Select(ctx, Side(3)); err == nil {
				t.Error("Select of an invalid side succeeded")
			}
		})
	}
}

func TestGPIORelayCancelled(t *testing.T) {
	r, _ := newGPIORelay(t, true, true, false)
	r.settle = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Select(ctx, B); !errors.Is(err, context.Canceled) {
		t.Fatalf("Select with a cancelled context = %v", err)
	}
}

// coilOnly is a relay that knows only its coil, like a Numato board.
type coilOnly struct {
	coil  gpio.PinIO
	fails error
}

func (c *coilOnly) Select(ctx context.Context, side Side) error {
	if c.fails != nil {
		return c.fails
	}
	return c.coil.Out(gpio.Level(side == B))
}
func (c *coilOnly) Position(context.Context) (Side, bool, error) {
	return sideOf(bool(c.coil.Read())), false, nil
}
func (c *coilOnly) Halt() error { return c.coil.Out(gpio.Low) }

func TestWithSense(t *testing.T) {
	ctx := context.Background()
	for _, stuck := range []bool{false, true} {
		sense := &gpiotest.Pin{N: "SENSE"}
		coil := &wiredCoil{Pin: &gpiotest.Pin{N: "COIL"}, sense: sense, stuck: stuck}
		in, err := hwgpio.OpenInput(hwgpio.Pins{"SENSE": sense}, hwgpio.Spec{Name: "SENSE"}, gpio.Float, hwgpio.NoEdge)
		if err != nil {
			t.Fatal(err)
		}
		// The relay's second pole moves the sense pin unless stuck.
		r := WithSense(&coilOnly{coil: coil}, in, 10*time.Millisecond)
		err = r.Select(ctx, B)
		if stuck != errors.Is(err, ErrNotFollowing) {
			t.Fatalf("stuck=%v: Select(B) = %v", stuck, err)
		}
		side, sensed, _ := r.Position(ctx)
		if want := map[bool]Side{false: B, true: A}[stuck]; side != want || !sensed {
			t.Errorf("stuck=%v: Position() = %v, %v; want %v, sensed", stuck, side, sensed, want)
		}
		if err := r.Halt(); err != nil || coil.Read() != gpio.Low {
			t.Errorf("Halt() = %v, coil %v", err, coil.Read())
		}
	}
	failing := WithSense(&coilOnly{coil: &gpiotest.Pin{}, fails: errors.New("board gone")}, nil, 0)
	if err := failing.Select(ctx, B); err == nil || err.Error() != "board gone" {
		t.Errorf("Select over a failing relay = %v", err)
	}
}
