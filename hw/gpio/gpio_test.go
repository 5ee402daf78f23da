package gpio

import (
	"errors"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

type fakeChip struct {
	name, label string
	lines       []*gpiotest.Pin
}

func (c *fakeChip) Name() string   { return c.name }
func (c *fakeChip) Label() string  { return c.label }
func (c *fakeChip) LineCount() int { return len(c.lines) }
func (c *fakeChip) lineByOffset(o int) gpio.PinIO {
	if o < 0 || o >= len(c.lines) {
		return nil
	}
	return c.lines[o]
}
func (c *fakeChip) lineByName(n string) gpio.PinIO {
	for _, l := range c.lines {
		if l.N == n {
			return l
		}
	}
	return nil
}

func newChip(name, label string, lines ...string) *fakeChip {
	c := &fakeChip{name: name, label: label}
	for i, n := range lines {
		c.lines = append(c.lines, &gpiotest.Pin{N: n, Num: i})
	}
	return c
}

func TestLookup(t *testing.T) {
	chips := []chip{
		newChip("gpiochip0", "AMDI0030:00", "", "RELAY_COIL", "RELAY_SENSE", "LED1"),
		newChip("gpiochip1", "it87", "GP10", "LED1"),
	}
	tests := []struct {
		spec    Spec
		want    string
		wantErr string
	}{
		{spec: Spec{Name: "RELAY_COIL"}, want: "RELAY_COIL"},
		{spec: Spec{Chip: "gpiochip0", Offset: 2}, want: "RELAY_SENSE"},
		{spec: Spec{Chip: "AMDI0030:00", Offset: 2}, want: "RELAY_SENSE"},
		{spec: Spec{Chip: "it87", Name: "LED1"}, want: "LED1"},
		{spec: Spec{Name: "LED1"}, wantErr: "several chips"},
		{spec: Spec{Name: "NOPE"}, wantErr: "no GPIO line named"},
		{spec: Spec{Chip: "gpiochip0", Offset: 9}, wantErr: "no offset 9"},
		{spec: Spec{Chip: "gpiochip0", Name: "GP10"}, wantErr: "on chip gpiochip0"},
		{spec: Spec{Chip: "gpiochip7"}, wantErr: "no GPIO chip"},
		{spec: Spec{}, wantErr: "needs a name"},
		{spec: Spec{Chip: "gpiochip0", Offset: -1}, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.spec.String(), func(t *testing.T) {
			pin, err := lookup(chips, tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("lookup(%+v) err = %v, want %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pin.Name() != tt.want {
				t.Errorf("lookup(%+v) = %s, want %s", tt.spec, pin.Name(), tt.want)
			}
		})
	}
}

func TestSpecString(t *testing.T) {
	for spec, want := range map[Spec]string{
		{Name: "A"}:                    "A",
		{Chip: "gpiochip0", Name: "A"}: "gpiochip0/A",
		{Chip: "gpiochip0", Offset: 3}: "gpiochip0:3",
	} {
		if got := spec.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", spec, got, want)
		}
	}
}

func TestOutputStartsAtDefinedLevel(t *testing.T) {
	tests := []struct {
		name      string
		activeLow bool
		initial   bool
		start     gpio.Level
		want      gpio.Level
	}{
		{"off", false, false, gpio.High, gpio.Low},
		{"on", false, true, gpio.Low, gpio.High},
		{"active-low off", true, false, gpio.Low, gpio.High},
		{"active-low on", true, true, gpio.High, gpio.Low},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pin := &gpiotest.Pin{N: "COIL", L: tt.start}
			o, err := OpenOutput(Pins{"COIL": pin}, Spec{Name: "COIL", ActiveLow: tt.activeLow}, tt.initial)
			if err != nil {
				t.Fatal(err)
			}
			if got := pin.Read(); got != tt.want {
				t.Errorf("line at %v after open, want %v", got, tt.want)
			}
			if err := o.Set(!tt.initial); err != nil {
				t.Fatal(err)
			}
			if got := pin.Read(); got == tt.want {
				t.Errorf("line still at %v after Set(%v)", got, !tt.initial)
			}
			if o.Commanded() != !tt.initial {
				t.Errorf("Commanded() = %v", o.Commanded())
			}
		})
	}
}

func TestInputEdges(t *testing.T) {
	pin := &gpiotest.Pin{N: "SENSE", EdgesChan: make(chan gpio.Level, 1)}
	in, err := OpenInput(Pins{"SENSE": pin}, Spec{Name: "SENSE", ActiveLow: true}, gpio.PullUp, BothEdges)
	if err != nil {
		t.Fatal(err)
	}
	if in.Read() {
		t.Error("active-low input pulled up reads true")
	}
	if edge, _ := in.WaitForEdge(time.Millisecond); edge {
		t.Error("edge reported without one")
	}
	pin.EdgesChan <- gpio.Low
	edge, level := in.WaitForEdge(time.Minute)
	if !edge || !level {
		t.Errorf("WaitForEdge = %v, %v; want an edge to logical true", edge, level)
	}
}

func TestInputConfigError(t *testing.T) {
	// gpiotest refuses edge detection without an edge channel: the error
	// must come back, not be lost.
	pin := &gpiotest.Pin{N: "SENSE"}
	if _, err := OpenInput(Pins{"SENSE": pin}, Spec{Name: "SENSE"}, gpio.Float, Rising); err == nil {
		t.Fatal("OpenInput hid the pin's configuration error")
	}
}

func TestEdgePhysical(t *testing.T) {
	tests := []struct {
		e         Edge
		activeLow bool
		want      gpio.Edge
	}{
		{Rising, false, gpio.RisingEdge}, {Rising, true, gpio.FallingEdge},
		{Falling, false, gpio.FallingEdge}, {Falling, true, gpio.RisingEdge},
		{BothEdges, true, gpio.BothEdges}, {NoEdge, true, gpio.NoEdge},
	}
	for _, tt := range tests {
		if got := tt.e.physical(tt.activeLow); got != tt.want {
			t.Errorf("%v.physical(%v) = %v, want %v", tt.e, tt.activeLow, got, tt.want)
		}
	}
}

func TestPinsMissing(t *testing.T) {
	_, err := Pins{"A": &gpiotest.Pin{}}.Pin(Spec{Name: "B"})
	if err == nil || !strings.Contains(err.Error(), `have A`) {
		t.Errorf("err = %v", err)
	}
}

// TestNewHostWithoutChips runs where there is no GPIO (the build machine):
// the driver must say so rather than fail obscurely.
func TestNewHostWithoutChips(t *testing.T) {
	h, err := NewHost()
	if err == nil {
		if _, err := h.Pin(Spec{Name: "twinpbx-no-such-line"}); err == nil {
			t.Error("found a line that does not exist")
		}
		t.Skip("this machine has GPIO chips")
	}
	if !errors.Is(err, ErrNoChips) {
		t.Fatalf("NewHost() = %v, want ErrNoChips", err)
	}
}
