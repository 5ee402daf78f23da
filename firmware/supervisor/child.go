package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/hw/watchdog"
)

// Environment variables the supervisor sets for its child. They are the
// whole contract between the two processes; see ChildWatchdog.
const (
	// EnvSupervised is "1" in a child of the supervisor: `twinpbx run`
	// checks it (Supervised) to do the real work instead of supervising
	// again.
	EnvSupervised = "TWINPBX_SUPERVISED"
	// EnvWatchdogFD is the number of the inherited socket the child kicks
	// the hosted watchdog over. Unset when the supervisor hosts none.
	EnvWatchdogFD = "TWINPBX_WATCHDOG_FD"
	// EnvWatchdogTimeout is the hosted watchdog's timeout (a Go duration).
	EnvWatchdogTimeout = "TWINPBX_WATCHDOG_TIMEOUT"
	// EnvWatchdogBoot is "reset" when the previous child was reset by the
	// hosted watchdog, empty otherwise.
	EnvWatchdogBoot = "TWINPBX_WATCHDOG_BOOT"
)

// Messages on the kick socket, one byte each.
const (
	msgOpen  = 'O' // the child armed its watchdog
	msgKick  = 'k'
	msgClose = 'V' // magic close: disarm
)

// ErrNoWatchdog is returned by ChildWatchdog when this process is not a
// supervised child, or its supervisor hosts no watchdog (a real board,
// where the child opens /dev/watchdog itself).
var ErrNoWatchdog = errors.New("no watchdog hosted by a supervisor")

// Supervised reports whether this process was started by a Supervisor.
func Supervised() bool { return os.Getenv(EnvSupervised) == "1" }

// childEnv is what the supervisor told its child about the watchdog.
type childEnv struct {
	fd      int
	timeout time.Duration
	reset   bool
}

// parseChildEnv reads the watchdog variables through getenv. It returns
// ErrNoWatchdog when they are absent.
func parseChildEnv(getenv func(string) string) (childEnv, error) {
	fdStr := getenv(EnvWatchdogFD)
	if fdStr == "" {
		return childEnv{}, ErrNoWatchdog
	}
	fd, err := strconv.Atoi(fdStr)
	if err != nil || fd < 3 {
		return childEnv{}, fmt.Errorf("reading %s=%q: not a file descriptor above 2", EnvWatchdogFD, fdStr)
	}
	toStr := getenv(EnvWatchdogTimeout)
	timeout, err := time.ParseDuration(toStr)
	if err != nil || timeout <= 0 {
		return childEnv{}, fmt.Errorf("reading %s=%q: not a duration above zero", EnvWatchdogTimeout, toStr)
	}
	var reset bool
	switch b := getenv(EnvWatchdogBoot); b {
	case "":
	case "reset":
		reset = true
	default:
		return childEnv{}, fmt.Errorf("reading %s=%q: want \"reset\" or nothing", EnvWatchdogBoot, b)
	}
	return childEnv{fd: fd, timeout: timeout, reset: reset}, nil
}

// Kicker is the child's side of the watchdog a supervisor hosts: each Kick
// is a message to the parent, which kills and restarts the child (a
// "reset") when none arrives within Timeout. It implements
// watchdog.Watchdog, so watchdog.Fence drives it like /dev/watchdog.
//
// Like /dev/watchdog it is armed from the moment it is obtained, and Close
// disarms it ("magic close"): call Close only on a deliberate shutdown.
// Exiting or crashing without Close leaves it armed, which does not matter
// since the supervisor sees the exit anyway. Methods may be called from
// several goroutines.
type Kicker struct {
	timeout time.Duration
	boot    watchdog.BootStatus

	mu     sync.Mutex
	f      *os.File
	closed bool
}

var _ watchdog.Watchdog = (*Kicker)(nil)

// ChildWatchdog returns the watchdog the supervisor hosts for this
// process, armed. It consumes the environment variables (so a program this
// process starts does not find them) and may be called only once; later
// calls return ErrNoWatchdog. It returns ErrNoWatchdog when there is no
// hosted watchdog: the caller then opens the board's own.
func ChildWatchdog() (*Kicker, error) {
	env, err := parseChildEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{EnvWatchdogFD, EnvWatchdogTimeout, EnvWatchdogBoot} {
		_ = os.Unsetenv(k)
	}
	// Not inherited by anything this process starts.
	unix.CloseOnExec(env.fd)
	k := &Kicker{
		timeout: env.timeout,
		boot:    watchdog.BootStatus{WatchdogReset: env.reset},
		f:       os.NewFile(uintptr(env.fd), "supervisor-watchdog"),
	}
	if err := k.send(msgOpen); err != nil {
		_ = k.f.Close()
		return nil, fmt.Errorf("arming the supervisor's watchdog: %w", err)
	}
	return k, nil
}

func (k *Kicker) send(msg byte) error {
	_, err := k.f.Write([]byte{msg})
	return err
}

// Kick restarts the countdown.
func (k *Kicker) Kick() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return watchdog.ErrClosed
	}
	if err := k.send(msgKick); err != nil {
		return fmt.Errorf("kicking the supervisor's watchdog: %w", err)
	}
	return nil
}

// Timeout is the countdown the supervisor enforces.
func (k *Kicker) Timeout() time.Duration { return k.timeout }

// BootStatus says whether the previous child was reset by this watchdog.
func (k *Kicker) BootStatus() (watchdog.BootStatus, error) { return k.boot, nil }

// Identity is "supervisor".
func (k *Kicker) Identity() string { return "supervisor" }

// Close disarms the watchdog. Call it only on a deliberate shutdown.
func (k *Kicker) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	err := k.send(msgClose)
	if cerr := k.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("disarming the supervisor's watchdog: %w", err)
	}
	return nil
}
