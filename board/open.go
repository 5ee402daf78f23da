package board

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"periph.io/x/conn/v3/gpio"

	hwgpio "github.com/twinpbx/twinpbx/hw/gpio"
	"github.com/twinpbx/twinpbx/hw/relay"
	"github.com/twinpbx/twinpbx/hw/serial"
	"github.com/twinpbx/twinpbx/hw/watchdog"
)

// State is what became of one device when the board was opened, as with a
// periph driver's Init: loaded, skipped (the board has none), or failed.
type State int

// Device states.
const (
	Loaded State = iota
	Skipped
	Failed
)

func (s State) String() string {
	switch s {
	case Loaded:
		return "loaded"
	case Skipped:
		return "skipped"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// DeviceStatus reports one device.
type DeviceStatus struct {
	Device string // "watchdog", "relay"
	Driver string // "sim", "/dev/watchdog (i6300ESB timer)", "numato /dev/ttyS1", ...
	State  State
	Err    error // why it was skipped or failed
}

// Devices are the board's opened devices.
type Devices struct {
	Profile Profile
	// Watchdog is armed from the moment Open returns; nil when it failed.
	// Nothing here disarms it: call Watchdog.Close yourself on a
	// deliberate shutdown, and never otherwise.
	Watchdog watchdog.Watchdog
	// Relay is nil when the board has none or it failed.
	Relay relay.Relay
	// Status lists every device in the order opened.
	Status []DeviceStatus

	closers []func() error
}

// Close releases the relay's port and lines. It does not touch the
// watchdog (see Devices.Watchdog).
func (d *Devices) Close() error {
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	d.closers = nil
	return errors.Join(errs...)
}

// Options adjust Open.
type Options struct {
	// OnWatchdogReset is what a simulated watchdog does when it fires;
	// nil: log and exit with watchdog.ExitCodeReset.
	OnWatchdogReset func()
	// GPIO provides the lines of a gpio relay; nil: the host's GPIO
	// character devices.
	GPIO hwgpio.Provider
	// Logger; nil is slog.Default().
	Logger *slog.Logger
}

// Open opens the devices the profile names: a real driver where the
// profile names hardware, a simulator where it says "sim". Each device is
// reported in Devices.Status. A device that failed leaves its field nil
// and makes Open return an error as well as the Devices, so a caller can
// carry on degraded (a box without its relay can still serve SIP) or stop.
// An invalid profile returns only an error.
func Open(ctx context.Context, p Profile, dataDir string, opts Options) (*Devices, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Devices{Profile: p}
	var errs []error
	report := func(st DeviceStatus) {
		d.Status = append(d.Status, st)
		log := opts.Logger.With("board", p.Name, "device", st.Device, "driver", st.Driver)
		switch st.State {
		case Loaded:
			log.Info("device loaded")
		case Skipped:
			log.Info("device skipped", "reason", st.Err)
		case Failed:
			log.Error("device failed", "err", st.Err)
			errs = append(errs, fmt.Errorf("%s: %w", st.Device, st.Err))
		}
	}

	wd, st := openWatchdog(p.Watchdog, dataDir, opts)
	d.Watchdog = wd
	report(st)

	r, st, closer := openRelay(ctx, p.Relay, dataDir, opts)
	d.Relay = r
	if closer != nil {
		d.closers = append(d.closers, closer)
	}
	report(st)

	if err := errors.Join(errs...); err != nil {
		return d, fmt.Errorf("opening board %s: %w", p.Name, err)
	}
	return d, nil
}

func openWatchdog(w Watchdog, dataDir string, opts Options) (watchdog.Watchdog, DeviceStatus) {
	st := DeviceStatus{Device: "watchdog", Driver: w.Device}
	if w.Device == WatchdogSim {
		sim, err := watchdog.NewSim(watchdog.SimConfig{
			Timeout: w.Timeout, Dir: dataDir, OnReset: opts.OnWatchdogReset, Logger: opts.Logger,
		})
		if err != nil {
			st.State, st.Err = Failed, err
			return nil, st
		}
		return sim, st
	}
	dev, err := watchdog.Open(w.Device, w.Timeout)
	if err != nil {
		st.State, st.Err = Failed, err
		return nil, st
	}
	st.Driver = fmt.Sprintf("%s (%s, timeout %v)", w.Device, dev.Identity(), dev.Timeout())
	return dev, st
}

func openRelay(ctx context.Context, r Relay, dataDir string, opts Options) (relay.Relay, DeviceStatus, func() error) {
	st := DeviceStatus{Device: "relay", Driver: r.Driver}
	fail := func(err error) (relay.Relay, DeviceStatus, func() error) {
		st.State, st.Err = Failed, err
		return nil, st, nil
	}
	switch r.Driver {
	case RelayNone:
		st.State, st.Err = Skipped, errors.New("the board has no PSTN relay")
		return nil, st, nil
	case RelaySim:
		path := r.StateFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(dataDir, path)
		}
		st.Driver = "sim " + path
		s, err := relay.NewShared(path)
		if err != nil {
			return fail(err)
		}
		return s, st, nil
	case RelayNumato:
		cfg := *r.Serial
		if cfg.Baud == 0 {
			cfg.Baud = relay.NumatoBaud
		}
		st.Driver = "numato " + cfg.Device
		port, err := serial.Open(cfg)
		if err != nil {
			return fail(err)
		}
		n, err := relay.NewNumato(port, r.Number, 0)
		if err != nil {
			_ = port.Close()
			return fail(err)
		}
		// Probe the board now: a missing or mute board is a failure at
		// start, not at the first takeover.
		if _, _, err := n.Position(ctx); err != nil {
			_ = port.Close()
			return fail(fmt.Errorf("probing the board: %w", err))
		}
		if r.Sense == nil {
			return n, st, port.Close
		}
		st.Driver += " sense " + r.Sense.String()
		pr, err := gpioProvider(opts)
		if err != nil {
			_ = port.Close()
			return fail(err)
		}
		sense, err := hwgpio.OpenInput(pr, *r.Sense, gpio.PullNoChange, hwgpio.NoEdge)
		if err != nil {
			_ = port.Close()
			return fail(err)
		}
		return relay.WithSense(n, sense, r.Settle), st, func() error { return errors.Join(haltPin(sense), port.Close()) }
	case RelayGPIO:
		st.Driver = "gpio " + r.Coil.String()
		pr, err := gpioProvider(opts)
		if err != nil {
			return fail(err)
		}
		// Opening the coil line de-energises it: the relay rests on A
		// until the cluster says otherwise. The PSTN line may thus flip
		// to A when a B box restarts; the cluster selects B again when
		// it becomes active.
		coil, err := hwgpio.OpenOutput(pr, *r.Coil, false)
		if err != nil {
			return fail(err)
		}
		var sense *hwgpio.Input
		if r.Sense != nil {
			st.Driver += " sense " + r.Sense.String()
			sense, err = hwgpio.OpenInput(pr, *r.Sense, gpio.PullNoChange, hwgpio.NoEdge)
			if err != nil {
				return fail(err)
			}
		}
		rl := relay.NewGPIO(coil, sense, r.Settle)
		return rl, st, func() error { return errors.Join(coil.Pin().Halt(), haltPin(sense)) }
	}
	return fail(fmt.Errorf("unknown relay driver %q", r.Driver))
}

func gpioProvider(opts Options) (hwgpio.Provider, error) {
	if opts.GPIO != nil {
		return opts.GPIO, nil
	}
	return hwgpio.NewHost()
}

func haltPin(in *hwgpio.Input) error {
	if in == nil {
		return nil
	}
	return in.Pin().Halt()
}
