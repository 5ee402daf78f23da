// Package gpio opens the GPIO lines a board profile names (a relay coil, a
// relay sense contact) on top of periph.io: lines are found by name or by
// chip and offset, outputs are driven to a defined level the moment they are
// opened, and inputs wait for edges with a timeout. Levels are logical: a
// line marked active-low reads true when it is electrically low.
//
// The real lines come from the Linux GPIO character device (periph's
// gpioioctl driver, see NewHost); tests and simulated boards hand in
// periph's gpiotest pins through a Pins map.
package gpio

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// Spec names one GPIO line. Either Name alone (the line's name, searched on
// every chip), or Chip with Name or Offset.
type Spec struct {
	// Name is the line name the kernel reports (from the device tree or
	// ACPI), such as "RELAY_COIL".
	Name string `yaml:"name,omitempty"`
	// Chip is the chip's device name ("gpiochip0") or its label
	// ("AMDI0030:00").
	Chip string `yaml:"chip,omitempty"`
	// Offset is the line's number on Chip; used when Name is empty.
	Offset int `yaml:"offset,omitempty"`
	// ActiveLow inverts the line: logical true is electrically low.
	ActiveLow bool `yaml:"active_low,omitempty"`
}

// Validate reports whether the spec can name a line.
func (s Spec) Validate() error {
	switch {
	case s.Name == "" && s.Chip == "":
		return errors.New("GPIO line needs a name or a chip and offset")
	case s.Offset < 0:
		return fmt.Errorf("GPIO line offset %d is negative", s.Offset)
	}
	return nil
}

// String is the line as Pins keys it: "NAME", "CHIP/NAME" or "CHIP:OFFSET".
func (s Spec) String() string {
	switch {
	case s.Chip == "":
		return s.Name
	case s.Name != "":
		return s.Chip + "/" + s.Name
	default:
		return fmt.Sprintf("%s:%d", s.Chip, s.Offset)
	}
}

// Provider finds the pin a spec names.
type Provider interface {
	Pin(spec Spec) (gpio.PinIO, error)
}

// Pins is a Provider over pins the caller made, keyed by Spec.String();
// tests fill it with periph's gpiotest pins.
type Pins map[string]gpio.PinIO

// Pin implements Provider.
func (p Pins) Pin(spec Spec) (gpio.PinIO, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	pin, ok := p[spec.String()]
	if !ok {
		keys := make([]string, 0, len(p))
		for k := range p {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("no GPIO line %q (have %s)", spec, strings.Join(keys, ", "))
	}
	return pin, nil
}

func level(on, activeLow bool) gpio.Level { return gpio.Level(on != activeLow) }

// Output is a line driven by us.
type Output struct {
	pin  gpio.PinIO
	spec Spec
	on   bool
}

// OpenOutput finds the line and drives it to the logical level initial at
// once, so that it never floats or keeps a stale level.
func OpenOutput(p Provider, spec Spec, initial bool) (*Output, error) {
	pin, err := p.Pin(spec)
	if err != nil {
		return nil, fmt.Errorf("opening GPIO output %s: %w", spec, err)
	}
	o := &Output{pin: pin, spec: spec}
	if err := o.Set(initial); err != nil {
		return nil, err
	}
	return o, nil
}

// Set drives the line to the logical level on.
func (o *Output) Set(on bool) error {
	if err := o.pin.Out(level(on, o.spec.ActiveLow)); err != nil {
		return fmt.Errorf("setting GPIO output %s to %v: %w", o.spec, on, err)
	}
	o.on = on
	return nil
}

// Commanded is the logical level last set.
func (o *Output) Commanded() bool { return o.on }

// Spec is the line's spec.
func (o *Output) Spec() Spec { return o.spec }

// Pin is the underlying periph pin.
func (o *Output) Pin() gpio.PinIO { return o.pin }

// Input is a line we read.
type Input struct {
	pin  gpio.PinIO
	spec Spec
}

// Edge is a logical edge to wait for.
type Edge int

// Edges an Input can wait for. Rising means "becomes true", which is an
// electrical falling edge on an active-low line.
const (
	NoEdge Edge = iota
	Rising
	Falling
	BothEdges
)

func (e Edge) physical(activeLow bool) gpio.Edge {
	switch e {
	case Rising:
		if activeLow {
			return gpio.FallingEdge
		}
		return gpio.RisingEdge
	case Falling:
		if activeLow {
			return gpio.RisingEdge
		}
		return gpio.FallingEdge
	case BothEdges:
		return gpio.BothEdges
	}
	return gpio.NoEdge
}

// OpenInput finds the line and configures it as an input with the given
// pull and edge detection.
func OpenInput(p Provider, spec Spec, pull gpio.Pull, edge Edge) (*Input, error) {
	pin, err := p.Pin(spec)
	if err != nil {
		return nil, fmt.Errorf("opening GPIO input %s: %w", spec, err)
	}
	if err := pin.In(pull, edge.physical(spec.ActiveLow)); err != nil {
		return nil, fmt.Errorf("configuring GPIO input %s: %w", spec, err)
	}
	return &Input{pin: pin, spec: spec}, nil
}

// Read returns the line's logical level.
func (i *Input) Read() bool { return bool(i.pin.Read()) != i.spec.ActiveLow }

// WaitForEdge waits up to timeout for the edge the input was opened with.
// It reports whether an edge came, and the logical level after it.
func (i *Input) WaitForEdge(timeout time.Duration) (edge, level bool) {
	edge = i.pin.WaitForEdge(timeout)
	return edge, i.Read()
}

// Spec is the line's spec.
func (i *Input) Spec() Spec { return i.spec }

// Pin is the underlying periph pin.
func (i *Input) Pin() gpio.PinIO { return i.pin }
