// Package board describes the boxes twinpbx runs on: which NICs a board has
// and what they are for, its watchdog, its PSTN failover relay and how that
// is wired, its ISDN spans and their serial ports, the kernel modules init
// loads and the console. Profiles are Go values (Lookup) or YAML files
// (Load); Open turns a profile into working drivers, simulators on the
// simulated board.
package board

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/twinpbx/twinpbx/hw/gpio"
	"github.com/twinpbx/twinpbx/hw/serial"
)

// Profile is one kind of board.
type Profile struct {
	// Name is how the board is chosen ("sim", "qemu", "apu2").
	Name        string `yaml:"name"`
	Description string `yaml:"description,omitempty"`
	// Tried is true once the profile has been run on its real hardware.
	Tried bool `yaml:"tried,omitempty"`
	// NICs lists the network interfaces twinpbx manages.
	NICs     []NIC    `yaml:"nics,omitempty"`
	Watchdog Watchdog `yaml:"watchdog"`
	Relay    Relay    `yaml:"relay"`
	// ISDN lists the ISDN spans (driven by the ISDN stack, not here).
	ISDN []ISDNSpan `yaml:"isdn,omitempty"`
	// Modules are the kernel modules init loads, in order.
	Modules []string `yaml:"modules,omitempty"`
	// Console is the console device, as for the kernel's console=
	// ("ttyS0,115200"); empty: the process's own terminal.
	Console string `yaml:"console,omitempty"`
}

// NIC roles.
const (
	RoleLAN       = "lan"       // office switch: phones, VIP, tie-breaker
	RoleCrossover = "crossover" // direct cable to the twin: heartbeat, replication
	RoleSpare     = "spare"     // present, unused
)

// NIC is one network interface.
type NIC struct {
	Name   string `yaml:"name"`             // kernel name, "eth0"
	Role   string `yaml:"role"`             // RoleLAN, RoleCrossover, RoleSpare
	Driver string `yaml:"driver,omitempty"` // kernel driver, for documentation and checks
}

// WatchdogSim is the Watchdog.Device of a simulated watchdog.
const WatchdogSim = "sim"

// Watchdog says which watchdog the board has.
type Watchdog struct {
	// Device is a watchdog device path (/dev/watchdog) or WatchdogSim.
	Device string `yaml:"device"`
	// Timeout to set; the driver may round it.
	Timeout time.Duration `yaml:"timeout"`
	// Driver names the kernel driver, for documentation.
	Driver string `yaml:"driver,omitempty"`
}

// Relay drivers.
const (
	RelayNone   = "none"   // no relay: the board has no PSTN line to switch
	RelaySim    = "sim"    // relay.Shared, a state file twins share
	RelayGPIO   = "gpio"   // coil (and sense) on GPIO lines
	RelayNumato = "numato" // Numato USB relay board on a serial port
)

// Relay says how the PSTN failover relay is driven.
type Relay struct {
	Driver string `yaml:"driver"`
	// Coil is the GPIO line of a gpio relay's coil. Sense is the GPIO
	// input on a second pole of a gpio or numato relay, true when the
	// contacts are on side B; optional (nil: no read-back of the
	// contacts, only of the coil).
	Coil  *gpio.Spec `yaml:"coil,omitempty"`
	Sense *gpio.Spec `yaml:"sense,omitempty"`
	// Settle bounds how long the contacts may take to follow the coil.
	Settle time.Duration `yaml:"settle,omitempty"`
	// Serial is the port of a numato board (baud defaults to 19200).
	Serial *serial.Config `yaml:"serial,omitempty"`
	// Number is the relay on a numato board (0-31).
	Number int `yaml:"number,omitempty"`
	// StateFile is the sim relay's file; a relative path is taken from
	// the data folder. Twins share the relay by naming the same file.
	StateFile string `yaml:"state_file,omitempty"`
}

// ISDN span types.
const (
	BRIPTP  = "bri-ptp"  // BRI point-to-point (NTBA, DDI/PBX connection)
	BRIPTMP = "bri-ptmp" // BRI point-to-multipoint (MSNs)
	PRIE1   = "pri-e1"   // PRI, E1 (30 B-channels)
)

// ISDNSpan is one ISDN line and the card's port it arrives on.
type ISDNSpan struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Serial is the card's port; Device "sim" is the exchange emulator.
	Serial serial.Config `yaml:"serial"`
}

// Validate checks the profile for everything that can be checked without
// the hardware.
func (p Profile) Validate() error {
	var errs []error
	if p.Name == "" {
		errs = append(errs, errors.New("board profile has no name"))
	}
	seen := map[string]bool{}
	roles := map[string]int{}
	for i, n := range p.NICs {
		switch {
		case n.Name == "":
			errs = append(errs, fmt.Errorf("NIC %d has no name", i))
		case seen[n.Name]:
			errs = append(errs, fmt.Errorf("NIC %s listed twice", n.Name))
		}
		seen[n.Name] = true
		switch n.Role {
		case RoleLAN, RoleCrossover, RoleSpare:
			roles[n.Role]++
		default:
			errs = append(errs, fmt.Errorf("NIC %s: unknown role %q", n.Name, n.Role))
		}
	}
	if len(p.NICs) > 0 && (roles[RoleLAN] != 1 || roles[RoleCrossover] > 1) {
		errs = append(errs, fmt.Errorf("NICs: want one %s and at most one %s, have %d and %d",
			RoleLAN, RoleCrossover, roles[RoleLAN], roles[RoleCrossover]))
	}
	errs = append(errs, p.Watchdog.validate(), p.Relay.validate())
	spans := map[string]bool{}
	for i, s := range p.ISDN {
		if s.Name == "" || spans[s.Name] {
			errs = append(errs, fmt.Errorf("ISDN span %d: missing or repeated name %q", i, s.Name))
		}
		spans[s.Name] = true
		switch s.Type {
		case BRIPTP, BRIPTMP, PRIE1:
		default:
			errs = append(errs, fmt.Errorf("ISDN span %s: unknown type %q (want %s, %s or %s)", s.Name, s.Type, BRIPTP, BRIPTMP, PRIE1))
		}
		if err := s.Serial.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("ISDN span %s: %w", s.Name, err))
		}
	}
	for _, m := range p.Modules {
		if m == "" || strings.ContainsAny(m, "/ \t") {
			errs = append(errs, fmt.Errorf("kernel module name %q", m))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("board profile %q: %w", p.Name, err)
	}
	return nil
}

func (w Watchdog) validate() error {
	switch {
	case w.Device == "":
		return errors.New("watchdog: no device (a path or \"sim\")")
	case w.Device != WatchdogSim && !filepath.IsAbs(w.Device):
		return fmt.Errorf("watchdog: device %q is neither a path nor \"sim\"", w.Device)
	case w.Timeout <= 0:
		return fmt.Errorf("watchdog: timeout %v is not above zero", w.Timeout)
	case w.Device != WatchdogSim && w.Timeout%time.Second != 0:
		return fmt.Errorf("watchdog: timeout %v is not whole seconds, as /dev/watchdog needs", w.Timeout)
	}
	return nil
}

func (r Relay) validate() error {
	switch r.Driver {
	case RelayNone:
	case RelaySim:
		if r.StateFile == "" {
			return errors.New("sim relay: no state_file")
		}
	case RelayGPIO:
		if r.Coil == nil {
			return errors.New("gpio relay: no coil line")
		}
		if err := r.Coil.Validate(); err != nil {
			return fmt.Errorf("gpio relay coil: %w", err)
		}
		if r.Sense != nil {
			if err := r.Sense.Validate(); err != nil {
				return fmt.Errorf("gpio relay sense: %w", err)
			}
		}
	case RelayNumato:
		if r.Serial == nil {
			return errors.New("numato relay: no serial port")
		}
		if err := r.Serial.Validate(); err != nil {
			return fmt.Errorf("numato relay: %w", err)
		}
		if r.Number < 0 || r.Number > 31 {
			return fmt.Errorf("numato relay: number %d outside 0-31", r.Number)
		}
		if r.Sense != nil {
			if err := r.Sense.Validate(); err != nil {
				return fmt.Errorf("numato relay sense: %w", err)
			}
		}
	default:
		return fmt.Errorf("relay: unknown driver %q (want %s, %s, %s or %s)", r.Driver, RelayNone, RelaySim, RelayGPIO, RelayNumato)
	}
	if r.Settle < 0 {
		return fmt.Errorf("relay: negative settle time %v", r.Settle)
	}
	return nil
}

// Parse reads a profile from YAML; unknown keys are errors, so a typo
// does not silently leave a device unconfigured.
func Parse(b []byte) (Profile, error) {
	var p Profile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return Profile{}, fmt.Errorf("parsing board profile: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Profile{}, err
	}
	return p, nil
}

// Load reads and validates a profile from a YAML file.
func Load(path string) (Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Profile{}, fmt.Errorf("reading board profile: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return Profile{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Marshal writes the profile as YAML, as Load reads it.
func (p Profile) Marshal() ([]byte, error) {
	b, err := yaml.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("writing board profile %s: %w", p.Name, err)
	}
	return b, nil
}

// Lookup returns the built-in profile name, a copy the caller may change.
func Lookup(name string) (Profile, error) {
	mk, ok := builtin[name]
	if !ok {
		return Profile{}, fmt.Errorf("no board profile %q (have %s)", name, strings.Join(Names(), ", "))
	}
	return mk(), nil
}

// Names lists the built-in profiles.
func Names() []string {
	names := make([]string, 0, len(builtin))
	for n := range builtin {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
