package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/hw/relay"
)

// Config tunes a Manager. Zero durations and counts take the defaults of
// docs/CLUSTER.md (see WithDefaults).
type Config struct {
	// Node is this box's name, Peer its twin's.
	Node, Peer string
	// Side is the relay side that connects the PSTN line to this box.
	Side relay.Side
	// Preferred names the box elected when both start with the same data;
	// with Failback, service moves back to it once it has been a healthy
	// standby for FailbackDelay.
	Preferred     string
	Failback      bool
	FailbackDelay time.Duration
	// Interval is the decision loop's tick (the heartbeat interval).
	Interval time.Duration
	// DeadTime without a beat marks a path down (the heartbeat layer
	// applies it; the manager uses it for hold-offs).
	DeadTime time.Duration
	// Lease is how long an acknowledged beat keeps this box serving; it
	// must not exceed DeadTime.
	Lease time.Duration
	// ProbeSpan is how long the VIP probe lasts from its first try to its
	// last (3 tries 50 ms apart: 100 ms). A lease renewed by the gateway
	// alone lasts ProbeSpan from the decision that renewed it (the end of
	// the VIP probe, when one ran; else the tick's start), so that a hung
	// active's lease has run out by the time a standby's probe has gone
	// unanswered.
	ProbeSpan time.Duration
	// BootWait is how long BOOT waits to hear the twin.
	BootWait time.Duration
	// HandoverTimeout clears this box's handover flag if the twin has not
	// taken over by then.
	HandoverTimeout time.Duration
	// MigrationThreshold failures of a monitor within FailureTimeout are
	// restarted in place; one more hands over to the twin.
	MigrationThreshold int
	FailureTimeout     time.Duration
	// WatchdogTimeout is announced to the twin in beats.
	WatchdogTimeout time.Duration

	// Clock drives the loop and the lease; nil is the real clock.
	Clock clockwork.Clock
	// Logger; nil is slog.Default().
	Logger *slog.Logger
}

// Defaults of docs/CLUSTER.md.
const (
	DefaultInterval           = 50 * time.Millisecond
	DefaultDeadTime           = 300 * time.Millisecond
	DefaultProbeSpan          = 100 * time.Millisecond
	DefaultBootWait           = 2 * time.Second
	DefaultHandoverTimeout    = 2 * time.Second
	DefaultMigrationThreshold = 3
	DefaultFailureTimeout     = 10 * time.Minute
	DefaultWatchdogTimeout    = 5 * time.Second
	DefaultFailbackDelay      = 60 * time.Second
)

// FromConfig builds the manager's Config for node from the cluster section
// of the box's configuration. Zero fields take the defaults; timing presets
// are expected to have been applied to c already.
func FromConfig(node string, side relay.Side, c config.Cluster) Config {
	return Config{
		Node:               node,
		Peer:               c.Peer,
		Side:               side,
		Preferred:          c.Preferred,
		Failback:           c.Failback,
		FailbackDelay:      c.FailbackDelay.D(),
		Interval:           c.Interval.D(),
		DeadTime:           c.DeadTime.D(),
		Lease:              c.Lease.D(),
		BootWait:           c.BootWait.D(),
		MigrationThreshold: c.MigrationThreshold,
		FailureTimeout:     c.FailureTimeout.D(),
		WatchdogTimeout:    c.WatchdogTimeout.D(),
		ProbeSpan:          ProbeSpanFor(c.Interval.D()),
	}.WithDefaults()
}

// ProbeSpanFor is the VIP probe's span for a heartbeat interval: 100 ms,
// or two intervals when that is longer, since a lease renewed by the
// gateway alone must outlast a tick (Validate). The probe's three tries
// are spread over the whole span (see the twin's probe), which keeps the
// timing argument of docs/CLUSTER.md: a lease the old active renewed by
// the gateway has run out by the time the standby's probe has gone
// unanswered.
func ProbeSpanFor(interval time.Duration) time.Duration {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return max(DefaultProbeSpan, 2*interval)
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Interval, DefaultInterval)
	def(&c.DeadTime, DefaultDeadTime)
	def(&c.Lease, c.DeadTime)
	def(&c.ProbeSpan, DefaultProbeSpan)
	def(&c.BootWait, DefaultBootWait)
	def(&c.HandoverTimeout, DefaultHandoverTimeout)
	def(&c.FailureTimeout, DefaultFailureTimeout)
	def(&c.WatchdogTimeout, DefaultWatchdogTimeout)
	def(&c.FailbackDelay, DefaultFailbackDelay)
	if c.MigrationThreshold == 0 {
		c.MigrationThreshold = DefaultMigrationThreshold
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports settings the decisions cannot work with.
func (c Config) Validate() error {
	var errs []error
	if c.Node == "" || c.Peer == "" {
		errs = append(errs, errors.New("node and peer names are required"))
	} else if c.Node == c.Peer {
		errs = append(errs, fmt.Errorf("node and peer are both named %q", c.Node))
	}
	if c.Preferred != "" && c.Preferred != c.Node && c.Preferred != c.Peer {
		errs = append(errs, fmt.Errorf("preferred %q names neither %q nor %q", c.Preferred, c.Node, c.Peer))
	}
	if c.Failback && c.Preferred == "" {
		errs = append(errs, errors.New("failback needs a preferred node"))
	}
	if !c.Side.Valid() {
		errs = append(errs, fmt.Errorf("relay side %v is neither A nor B", c.Side))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", c.Interval}, {"dead_time", c.DeadTime}, {"lease", c.Lease}, {"probe span", c.ProbeSpan}, {"boot_wait", c.BootWait}, {"failure_timeout", c.FailureTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, not %v", d.name, d.v))
		}
	}
	if c.Lease > c.DeadTime {
		errs = append(errs, fmt.Errorf("lease %v exceeds dead_time %v: a silent active could still serve when its twin takes over", c.Lease, c.DeadTime))
	}
	if c.Interval > 0 && c.DeadTime < 2*c.Interval {
		errs = append(errs, fmt.Errorf("dead_time %v is less than two intervals of %v", c.DeadTime, c.Interval))
	}
	if c.ProbeSpan <= c.Interval {
		errs = append(errs, fmt.Errorf("probe span %v must exceed the interval %v, or a gateway lease lapses between ticks", c.ProbeSpan, c.Interval))
	}
	if c.ProbeSpan > c.Lease {
		errs = append(errs, fmt.Errorf("probe span %v exceeds lease %v", c.ProbeSpan, c.Lease))
	}
	if c.MigrationThreshold < 0 {
		errs = append(errs, fmt.Errorf("migration_threshold must not be negative, not %d", c.MigrationThreshold))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("checking cluster settings: %w", err)
	}
	return nil
}
