package appliance

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/twinpbx/twinpbx/board"
	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
)

// ConfigError marks an error in what the box was told to run (its config
// file, its own box file, its board profile): starting again would fail
// the same way, so `twinpbx run` exits with supervisor.ExitConfigError and
// its supervisor does not restart it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// configErr wraps err as a ConfigError (nil stays nil).
func configErr(err error) error {
	if err == nil {
		return nil
	}
	return &ConfigError{Err: err}
}

// IsConfigError reports whether err (or one it wraps) is a ConfigError or
// a config file's problems.
func IsConfigError(err error) bool {
	var ce *ConfigError
	var pe *config.Error
	return errors.As(err, &ce) || errors.As(err, &pe)
}

// Supervision is what the supervisor parent of `twinpbx run` needs to know
// of the box before its worker starts.
type Supervision struct {
	// Twin is set when the box runs as one of a pair.
	Twin bool
	// LANInterface and VIP are where the VIP lives (twin only): the
	// supervisor removes it the moment the worker dies.
	LANInterface string
	VIP          netip.Prefix
	// WatchdogTimeout > 0 asks the supervisor to host the watchdog (a
	// twin on the simulated board): the worker kicks it over
	// supervisor.ChildWatchdog, and a hung worker is reset from outside.
	WatchdogTimeout time.Duration
}

// PlanSupervision reads, without changing anything, the config the worker
// will run (o.ConfigPath, else this box's own file in the data folder)
// and the board profile. A standalone box gets the zero Supervision.
func PlanSupervision(o Options) (Supervision, error) {
	var cfg *config.Config
	var err error
	switch path := o.ConfigPath; {
	case path != "":
		cfg, err = config.Load(path)
	default:
		cfg, err = config.Load(filepath.Join(o.DataDir, boxconfig.FileName))
		if errors.Is(err, os.ErrNotExist) {
			return Supervision{}, nil
		}
	}
	if err != nil {
		return Supervision{}, configErr(err)
	}
	if err := cfg.Validate(); err != nil {
		return Supervision{}, configErr(err)
	}
	if cfg.Cluster == nil {
		return Supervision{}, nil
	}
	cl := cfg.WithDefaults().Cluster
	vipPrefix, err := netip.ParsePrefix(cl.VIP)
	if err != nil {
		return Supervision{}, configErr(fmt.Errorf("cluster.vip %q: %w", cl.VIP, err))
	}
	prof, err := loadBoard(o.Board)
	if err != nil {
		return Supervision{}, configErr(fmt.Errorf("board %q: %w", o.Board, err))
	}
	s := Supervision{Twin: true, LANInterface: cl.LANInterface, VIP: vipPrefix}
	if prof.Watchdog.Device == board.WatchdogSim {
		s.WatchdogTimeout = cl.WatchdogTimeout.D()
	}
	return s, nil
}
