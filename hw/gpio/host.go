package gpio

import (
	"errors"
	"fmt"
	"strings"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/host/v3/gpioioctl"
)

// ErrNoChips means the machine exposes no GPIO character devices.
var ErrNoChips = errors.New("no GPIO chips (/dev/gpiochip*) found")

// chip is what line lookup needs of a GPIO chip; gpioioctl chips and test
// fakes provide it.
type chip interface {
	Name() string
	Label() string
	LineCount() int
	lineByOffset(offset int) gpio.PinIO
	lineByName(name string) gpio.PinIO
}

type ioctlChip struct{ *gpioioctl.GPIOChip }

func (c ioctlChip) lineByOffset(offset int) gpio.PinIO {
	if offset < 0 || offset >= c.LineCount() {
		return nil
	}
	if l := c.ByNumber(offset); l != nil {
		return l
	}
	return nil
}

func (c ioctlChip) lineByName(name string) gpio.PinIO {
	if l := c.ByName(name); l != nil {
		return l
	}
	return nil
}

// Host is the Provider of the machine's real GPIO lines, through the Linux
// GPIO character device.
type Host struct {
	chips []chip
}

// NewHost loads periph's GPIO character-device driver. It fails with
// ErrNoChips on a machine without GPIO.
func NewHost() (*Host, error) {
	if _, err := driverreg.Init(); err != nil {
		return nil, fmt.Errorf("loading GPIO drivers: %w", err)
	}
	if len(gpioioctl.Chips) == 0 {
		return nil, ErrNoChips
	}
	h := &Host{}
	for _, c := range gpioioctl.Chips {
		h.chips = append(h.chips, ioctlChip{c})
	}
	return h, nil
}

// Pin implements Provider.
func (h *Host) Pin(spec Spec) (gpio.PinIO, error) { return lookup(h.chips, spec) }

// lookup finds the line spec names among chips.
func lookup(chips []chip, spec Spec) (gpio.PinIO, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.Chip == "" {
		var found gpio.PinIO
		var where []string
		for _, c := range chips {
			if l := c.lineByName(spec.Name); l != nil {
				found = l
				where = append(where, c.Name())
			}
		}
		switch len(where) {
		case 0:
			return nil, fmt.Errorf("no GPIO line named %q on any chip", spec.Name)
		case 1:
			return found, nil
		default:
			return nil, fmt.Errorf("GPIO line name %q is on several chips (%s): name the chip", spec.Name, strings.Join(where, ", "))
		}
	}
	var names []string
	for _, c := range chips {
		names = append(names, c.Name()+" ("+c.Label()+")")
		if c.Name() != spec.Chip && c.Label() != spec.Chip {
			continue
		}
		if spec.Name != "" {
			if l := c.lineByName(spec.Name); l != nil {
				return l, nil
			}
			return nil, fmt.Errorf("no GPIO line named %q on chip %s", spec.Name, spec.Chip)
		}
		if l := c.lineByOffset(spec.Offset); l != nil {
			return l, nil
		}
		return nil, fmt.Errorf("GPIO chip %s has %d lines, no offset %d", spec.Chip, c.LineCount(), spec.Offset)
	}
	return nil, fmt.Errorf("no GPIO chip %q (have %s)", spec.Chip, strings.Join(names, ", "))
}
