package rollout

import (
	"context"
	"log/slog"
	"time"
)

// StickConfig configures WatchStick.
type StickConfig struct {
	// Find returns the device of an update stick in the box, or ""
	// (update.BoxDisk.Stick).
	Find func() string
	// Active says whether this box is the active one now.
	Active func() bool
	Box    Box
	Roll   *Rollout
	// Every is how often the box looks for a stick (0: 2 s).
	Every time.Duration
	// Retry is how long after a roll that stopped on the pair's roles
	// (Status.Retryable: no standby in sync, this box no longer active)
	// the stick is tried again (0: 30 s).
	Retry  time.Duration
	Logger *slog.Logger
}

// WatchStick starts a rolling update of the pair when an update stick is
// plugged into the active box and holds a version this box does not run
// (and whose trial has not failed here). A stick is acted on once while
// it stays in; in the standby it is only reported. It returns when ctx
// ends.
func WatchStick(ctx context.Context, c StickConfig) {
	if c.Every <= 0 {
		c.Every = 2 * time.Second
	}
	if c.Retry <= 0 {
		c.Retry = 30 * time.Second
	}
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("part", "rollout")
	t := time.NewTicker(c.Every)
	defer t.Stop()
	var seen, said string // the stick acted on; the last thing said about it
	var checked struct {  // the last stick checked: checked once while it stays in
		dev string
		b   Bundle
		err error
	}
	say := func(what string, args ...any) {
		if what != said {
			log.Info(what, args...)
			said = what
		}
	}
	for {
		dev := c.Find()
		if dev != checked.dev {
			checked.dev, checked.b, checked.err = dev, Bundle{}, nil
			if dev != "" {
				checked.b, checked.err = c.Box.Check(dev)
			}
		}
		b, err := checked.b, checked.err
		switch {
		case dev == "":
			seen, said = "", ""
		case dev == seen:
			if st := c.Roll.Status(); st.State == Failed && st.Retryable && time.Since(st.Updated) > c.Retry && !c.Roll.busy() {
				// The roll stopped on the pair's roles, nothing written
				// here: try again (a box already on the version is
				// skipped).
				seen = ""
			}
		case err != nil:
			say("update stick: not a bundle for this box", "device", dev, "err", err)
			seen = dev
		case b.Version == c.Box.Firmware():
			say("update stick: this box already runs its version", "device", dev, "version", b.Version)
			seen = dev
		case b.Version == c.Box.LastFailed():
			say("update stick: its version failed its trial on this box before; not trying it again", "device", dev, "version", b.Version)
			seen = dev
		case !c.Active():
			say("update stick in the standby: plug it into the active box to roll the pair, or start the roll here (the dashboard's key u): this box updates itself first", "device", dev, "version", b.Version)
		default:
			if err := c.Roll.Start(ctx, dev); err != nil {
				say("update stick: the rolling update did not start", "device", dev, "version", b.Version, "err", err)
				break
			}
			log.Info("update stick: rolling the pair to its version", "device", dev, "version", b.Version)
			seen = dev
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
