// Package watchdog drives the box's hardware watchdog and simulates one where
// there is none. The cluster uses it to fence itself: a node that is no longer
// healthy, or no longer allowed to be active, stops kicking and is reset.
//
// Three pieces live here: the Watchdog interface, the Linux /dev/watchdog
// driver (Open), a simulator that "resets" the node by calling a function
// (NewSim), and the Fence kicker loop that both use.
package watchdog

import (
	"errors"
	"time"
)

// ExitCodeReset is the exit status a simulated node ends with when its
// simulated watchdog fires, so that a supervisor or a test can tell a
// watchdog reset from any other exit. 75 is EX_TEMPFAIL: "try again".
const ExitCodeReset = 75

// ErrReset is returned by Kick once the watchdog has fired: kicking a
// watchdog that already reset the node does not bring it back.
var ErrReset = errors.New("watchdog has already reset the node")

// ErrClosed is returned by operations on a watchdog after Close.
var ErrClosed = errors.New("watchdog is closed")

// Watchdog is an armed watchdog timer. It is armed from the moment it is
// opened; the node is reset when Kick is not called within Timeout.
//
// Methods may be called from several goroutines.
type Watchdog interface {
	// Kick restarts the countdown.
	Kick() error
	// Timeout is the countdown actually in force (a driver may round the
	// requested value).
	Timeout() time.Duration
	// BootStatus reports why the node last booted, as far as the
	// watchdog knows.
	BootStatus() (BootStatus, error)
	// Identity names the watchdog device (driver identity or "sim").
	Identity() string
	// Close disarms the watchdog ("magic close"). Call it only on a
	// deliberate shutdown: a node that crashes or hangs must never disarm
	// its watchdog, which is why nothing in this package closes a watchdog
	// implicitly (no finalizers, no deferred closes).
	Close() error
}

// BootStatus is what the watchdog reports about the last boot.
type BootStatus struct {
	// WatchdogReset is true when the watchdog caused the last reset.
	WatchdogReset bool
	// Flags holds the raw WDIOF_* bits from WDIOC_GETBOOTSTATUS, zero for
	// the simulator.
	Flags uint32
}
