package watchdog

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"
)

// Files the simulator keeps in its data folder.
const (
	simResetFile = "watchdog-reset"
	simLockFile  = "watchdog.lock"
)

// SimConfig configures a simulated watchdog.
type SimConfig struct {
	// Timeout is the countdown; it must be above zero.
	Timeout time.Duration
	// Dir is the node's data folder. When set, the simulator records a
	// reset there, so the next start reports it in BootStatus, and holds a
	// lock there, so only one process at a time holds the watchdog (as
	// with /dev/watchdog). Empty: no record, no lock.
	Dir string
	// OnReset "resets the node". It is called once, from its own
	// goroutine, when the watchdog was not kicked in time. Nil: log and
	// exit the process with ExitCodeReset (see ExitOnReset).
	OnReset func()
	// Clock drives the countdown; nil is the real clock. Tests pass a fake.
	Clock clockwork.Clock
	// Logger receives the reset message; nil is slog.Default().
	Logger *slog.Logger
}

// ExitOnReset returns the reset action of a simulated node: log
// "watchdog reset" and end the process with ExitCodeReset.
func ExitOnReset(logger *slog.Logger) func() {
	if logger == nil {
		logger = slog.Default()
	}
	return func() {
		logger.Error("watchdog reset", "exit_code", ExitCodeReset)
		os.Exit(ExitCodeReset)
	}
}

// Sim is a simulated watchdog: a timer that calls OnReset when it is not
// kicked within its timeout. It stands in for /dev/watchdog on the simulated
// board and in tests.
type Sim struct {
	cfg  SimConfig
	boot BootStatus
	lock *os.File

	mu       sync.Mutex
	timer    clockwork.Timer
	deadline time.Time
	fired    bool
	closed   bool
}

var _ Watchdog = (*Sim)(nil)

// NewSim arms a simulated watchdog. It reads, and clears, the record of a
// previous simulated reset in cfg.Dir.
func NewSim(cfg SimConfig) (*Sim, error) {
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("starting simulated watchdog: timeout %v is not above zero", cfg.Timeout)
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OnReset == nil {
		cfg.OnReset = ExitOnReset(cfg.Logger)
	}
	s := &Sim{cfg: cfg}
	if cfg.Dir != "" {
		lock, err := lockFile(filepath.Join(cfg.Dir, simLockFile))
		if err != nil {
			return nil, fmt.Errorf("starting simulated watchdog: %w", err)
		}
		s.lock = lock
		boot, err := readResetRecord(cfg.Dir)
		if err != nil {
			_ = lock.Close()
			return nil, fmt.Errorf("starting simulated watchdog: %w", err)
		}
		s.boot = boot
	}
	s.mu.Lock()
	s.deadline = cfg.Clock.Now().Add(cfg.Timeout)
	s.timer = cfg.Clock.AfterFunc(cfg.Timeout, s.fire)
	s.mu.Unlock()
	return s, nil
}

// lockFile takes an exclusive flock, released by the kernel when the
// process ends, so a crashed node does not keep the next one out.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking %s: held by another process: %w", path, unix.EBUSY)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return f, nil
}

func readResetRecord(dir string) (BootStatus, error) {
	path := filepath.Join(dir, simResetFile)
	_, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return BootStatus{}, nil
	case err != nil:
		return BootStatus{}, fmt.Errorf("reading reset record: %w", err)
	}
	// Like the hardware's boot status, the record speaks of the last boot
	// only: consume it.
	if err := os.Remove(path); err != nil {
		return BootStatus{}, fmt.Errorf("clearing reset record: %w", err)
	}
	return BootStatus{WatchdogReset: true}, nil
}

func (s *Sim) writeResetRecord(at time.Time) error {
	path := filepath.Join(s.cfg.Dir, simResetFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "watchdog reset at %s\n", at.UTC().Format(time.RFC3339Nano))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Sim) fire() {
	s.mu.Lock()
	if s.fired || s.closed {
		s.mu.Unlock()
		return
	}
	s.fired = true
	deadline := s.deadline
	s.mu.Unlock()
	if s.cfg.Dir != "" {
		if err := s.writeResetRecord(deadline); err != nil {
			s.cfg.Logger.Error("recording simulated watchdog reset", "err", err)
		}
	}
	s.cfg.Logger.Warn("simulated watchdog expired", "timeout", s.cfg.Timeout)
	s.cfg.OnReset()
}

// Kick restarts the countdown.
func (s *Sim) Kick() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.fired:
		return ErrReset
	}
	s.timer.Reset(s.cfg.Timeout)
	s.deadline = s.cfg.Clock.Now().Add(s.cfg.Timeout)
	return nil
}

// Deadline is when the watchdog fires unless kicked before.
func (s *Sim) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

// Fired reports whether the watchdog has reset the node.
func (s *Sim) Fired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fired
}

// Timeout is the configured countdown.
func (s *Sim) Timeout() time.Duration { return s.cfg.Timeout }

// Identity is "sim".
func (s *Sim) Identity() string { return "sim" }

// BootStatus reports whether the previous run in the same data folder ended
// with a simulated watchdog reset.
func (s *Sim) BootStatus() (BootStatus, error) { return s.boot, nil }

// Close disarms the simulated watchdog and releases its lock.
func (s *Sim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.timer.Stop()
	if s.lock != nil {
		if err := s.lock.Close(); err != nil {
			return fmt.Errorf("releasing simulated watchdog lock: %w", err)
		}
	}
	return nil
}
