// Package cluster is the role manager of the twin pair: it turns what a box
// sees of its twin, of the LAN and of its own resources into a role (BOOT,
// SYNC, STANDBY, ACTIVE, FENCED, MAINTENANCE) following the decision table
// of docs/CLUSTER.md, drives the resources in takeover and stop order, and
// holds the lease that every SIP request checks.
//
// The manager owns small interfaces, one per concern (Heartbeat, VIP, Relay,
// Replica, Service, Probe, Fence, TermStore, and Monitor checks); the real
// implementations live elsewhere and are wired in by the caller. The
// decisions themselves are a pure function over a snapshot of inputs, so
// they are tested row by row without sockets, processes or sleeps.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twinpbx/twinpbx/hw/relay"
)

// Role is what a box does in the pair.
type Role int

// The roles of docs/CLUSTER.md.
const (
	Boot Role = iota
	Sync
	Standby
	Active
	Fenced
	Maintenance
)

var roleNames = [...]string{"BOOT", "SYNC", "STANDBY", "ACTIVE", "FENCED", "MAINTENANCE"}

func (r Role) String() string {
	if r >= 0 && int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Path is one of the two heartbeat paths.
type Path int

// The heartbeat paths: the back-to-back crossover cable and the office LAN.
const (
	Crossover Path = iota
	LAN
	// NumPaths is the number of heartbeat paths.
	NumPaths = 2
)

func (p Path) String() string {
	switch p {
	case Crossover:
		return "crossover"
	case LAN:
		return "lan"
	}
	return fmt.Sprintf("Path(%d)", int(p))
}

// Beat is what a box tells its twin in every heartbeat. The manager sets
// everything but Sent and Echo, which the heartbeat layer fills per
// datagram.
type Beat struct {
	Node string
	Role Role
	// Term is the sender's term: the one it holds while ACTIVE, its last
	// persisted one otherwise.
	Term uint64
	// StoreSeq and ConfigVersion say how new the sender's data is.
	StoreSeq      uint64
	ConfigVersion uint64
	// GatewayOK is the sender's view of the tie-breaker.
	GatewayOK bool
	// Healthy is false while one of the sender's monitors fails.
	Healthy bool
	// Goodbye: the sender is shutting down and serves nothing any more.
	Goodbye bool
	// Handover: the sender has stopped serving and dropped the VIP and
	// asks its twin to take over at once.
	Handover bool
	// Maintenance: the sender will not become active.
	Maintenance bool
	// SharedFault: a monitor with a HoldDown (the PSTN line) failed on the
	// sender: it handed service over for it within the hold-down, or it
	// stays active with the monitor failing on both boxes. Its twin,
	// failing that monitor too, does not hand service back to it.
	SharedFault bool
	// WatchdogTimeout is how long a hung sender takes to be reset.
	WatchdogTimeout time.Duration
	// Incarnation changes each time the sender's node process starts.
	Incarnation uint64

	// Sent is the sender's clock when the beat left (filled by the
	// heartbeat layer).
	Sent time.Time
	// Echo is the last beat the sender had received from its twin, as the
	// twin sent it (filled by the heartbeat layer). Echo.Sent is thus in
	// the receiver's own clock: the lease is counted from it.
	Echo Echo
}

// Echo names one beat of the receiver's, as its twin saw it last.
type Echo struct {
	// Sent is when the receiver sent that beat, in its own clock; zero if
	// the twin has received nothing yet.
	Sent time.Time
	// Term is the term that beat carried.
	Term uint64
}

// PathView is the state of one heartbeat path.
type PathView struct {
	// Up is true while a valid beat arrived on the path within dead_time.
	Up bool
	// LastHeard is when the last valid beat arrived on the path.
	LastHeard time.Time
	// Latency is the last round-trip time measured by echo.
	Latency time.Duration
}

// PeerView is what this box knows of its twin.
type PeerView struct {
	Paths [NumPaths]PathView
	// Last is the newest valid beat received on any path; Heard is when it
	// arrived (zero: nothing received since start).
	Last  Beat
	Heard time.Time
}

// Silent reports whether every path is down: the twin is not heard.
func (v PeerView) Silent() bool {
	for _, p := range v.Paths {
		if p.Up {
			return false
		}
	}
	return true
}

// Heartbeat sends this box's beats and tracks the twin's on both paths.
// All methods are safe for concurrent use and must not block for long: the
// manager calls them from its decision loop.
type Heartbeat interface {
	// SetLocal sets what the next beats carry; the manager calls it on
	// every tick. No beat is sent before the first SetLocal (the twin must
	// not elect against a box that has not yet looked at its gateway), nor
	// once the last SetLocal is older than dead_time: a box whose decision
	// loop is stuck must fall silent, so that its twin takes over instead
	// of waiting for the watchdog.
	SetLocal(Beat)
	// SendNow sends the current beat on every path at once, out of turn
	// (after a role change, so the twin need not wait an interval).
	SendNow()
	// Peer returns a snapshot of the twin as seen now.
	Peer() PeerView
	// Events signals (without blocking, coalescing) that the peer view
	// changed: a path went up or down, or the twin's role, term or flags
	// changed. Nil: the manager only ticks.
	Events() <-chan struct{}
}

// VIP is the virtual address on the LAN interface. Calls come from the
// decision loop only, one at a time.
type VIP interface {
	// Acquire adds the VIP and sends the gratuitous ARP burst (then keeps
	// refreshing it in the background).
	Acquire(ctx context.Context) error
	// Release removes the VIP and stops the refreshes.
	Release() error
	// Held reports whether the VIP is on the interface.
	Held() (bool, error)
	// Conflict reports whether another host answers for the VIP.
	Conflict(ctx context.Context) (found bool, err error)
	// RemoveStale removes a VIP left over from an earlier run.
	RemoveStale() error
}

// Relay is the PSTN failover switch (hw/relay's Relay has this shape).
// Calls come from the decision loop only.
type Relay interface {
	Select(ctx context.Context, side relay.Side) error
	Position(ctx context.Context) (side relay.Side, sensed bool, err error)
}

// Replica is this box's side of store replication. InSync, StoreSeq and
// ConfigVersion are called from the decision loop every tick and must be
// cheap and safe for concurrent use; BecomeSource and BecomeFollower are
// called from the decision loop on role changes and must not block.
type Replica interface {
	// InSync reports, on a follower, that it has caught up with the
	// source; on a source, that the follower has acknowledged everything.
	InSync() bool
	StoreSeq() uint64
	ConfigVersion() uint64
	// BecomeSource makes the local store the writable source of changes.
	BecomeSource()
	// BecomeFollower makes the local store follow the named twin's.
	BecomeFollower(peer string)
}

// Service is the PBX. Serve and Stop are called from the decision loop
// only; Healthy is a monitor check.
type Service interface {
	// Serve starts answering on the VIP under term: restore dialogs and
	// media relay sessions from the store, then serve. Every request still
	// checks Manager.LeaseValid.
	Serve(ctx context.Context, term uint64) error
	// Stop stops serving (sockets stay bound for a later Serve).
	Stop() error
	// Healthy reports whether the PBX answers SIP OPTIONS on the VIP.
	Healthy(ctx context.Context) error
}

// Probe reaches out on the LAN. Both calls come from the decision loop and
// must honour ctx.
type Probe interface {
	// VIPAnswers reports whether the twin answers SIP OPTIONS on the VIP
	// (three tries, 50 ms apart; an answer from this box itself does not
	// count).
	VIPAnswers(ctx context.Context) bool
	// GatewayOK reports whether the tie-breaker (the gateway) answers. It
	// is called on every tick; it may answer from a result kept fresh in
	// the background, at most one interval old.
	GatewayOK(ctx context.Context) bool
}

// Fence is the watchdog fence (hw/watchdog.Fence has this shape): the
// watchdog is kicked only while the func given by Manager.Healthy returns
// true, and FenceNow stops the kicks for good.
type Fence interface {
	FenceNow(reason string)
}

// TermStore persists the term. Called from the decision loop only.
type TermStore interface {
	Term() uint64
	SetTerm(uint64) error
}

// LatchStore keeps, across a restart of the node (a reboot, a watchdog
// reset), the names of the monitors with a hold-down for which this box
// carries a shared fault: it handed service over because of them, or
// latched on them (docs/CLUSTER.md, "No ping-pong"). Called from the
// decision loop only, when the set changes.
type LatchStore interface {
	Latched() ([]string, error)
	SetLatched(names []string) error
}

// ErrNoVerdict, wrapped in a check's error, says the check cannot tell
// yet: the PSTN line just after the relay switched to this box, still
// within its grace. It is neither a failure (nothing is counted or
// restarted) nor a pass (nothing is cleared).
var ErrNoVerdict = errors.New("no verdict yet")

// Monitor is one resource check: NIC carrier of the LAN interface, store
// writable, VIP present, PBX answers, PSTN layer 1.
type Monitor struct {
	Name string
	// Check returns nil while the resource is fine. It is called from the
	// decision loop, which it holds up: it must be quick (ctx ends after
	// dead_time); give a slow check an Every.
	Check func(ctx context.Context) error
	// Restart repairs the resource in place (on the active box). Nil: the
	// resource cannot be restarted, and a failure on the active hands over
	// to the twin at once.
	Restart func(ctx context.Context) error
	// ActiveOnly monitors run only on the active box (VIP present, PBX
	// answers); the others also run on a standby, where a failure makes
	// the box unhealthy (it is then not elected) and raises an alarm.
	ActiveOnly bool
	// Every is the time between checks; zero checks on every tick.
	Every time.Duration
	// HoldDown, when set, marks a resource the two boxes share through a
	// switch, such as the PSTN line behind the relay: when it fails on
	// both, moving service cannot help. A box that hands over because
	// this monitor failed tells its twin so (Beat.SharedFault) for
	// HoldDown, or until the check passes on it again. An active box whose
	// check fails past the threshold while its twin says so does not hand
	// back: it stays, keeps restarting in place, and raises BothAlarm until
	// the check passes (docs/CLUSTER.md, "No ping-pong").
	HoldDown time.Duration
	// BothAlarm is the alarm raised while a HoldDown monitor fails on both
	// boxes; empty: "monitor NAME failing on both boxes".
	BothAlarm string
}

// MarshalText writes the role's name (for JSON status).
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// MarshalText writes the path's name (for JSON status).
func (p Path) MarshalText() ([]byte, error) { return []byte(p.String()), nil }
