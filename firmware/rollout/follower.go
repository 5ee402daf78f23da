package rollout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twinpbx/twinpbx/firmware/replication"
)

// BundleFile is where the standby keeps a fetched bundle (in the data
// folder) while it writes it into its slot.
const BundleFile = "rollout.bundle"

// FollowerConfig configures the standby's side of a roll.
type FollowerConfig struct {
	Box     Box
	DataDir string
	// Fetch gets the offered bundle from the active (replication.Fetch
	// over the pair's link).
	Fetch func(ctx context.Context, o replication.Offer, consume func(io.Reader) error) error
	// Standby says whether this box is the standby now: only a standby
	// takes an offer.
	Standby func() bool
	// RetryFetch is how long the standby waits before it fetches an
	// offer again whose fetch failed (0: 10 s).
	RetryFetch time.Duration
	Logger     *slog.Logger
}

// Follower takes the bundle the active offers: it fetches it once per
// offer, writes it into the inactive slot and reboots into the trial.
type Follower struct {
	cfg FollowerConfig
	log *slog.Logger
	ctx context.Context

	// fw is the running version, read once: it changes only by a reboot.
	fw string

	mu   sync.Mutex
	seen map[string]bool
	// retry is when an offer whose fetch failed may be fetched again.
	retry map[string]time.Time
	busy  bool
	wg    sync.WaitGroup
}

// NewFollower returns a Follower whose fetches run until ctx ends.
func NewFollower(ctx context.Context, c FollowerConfig) *Follower {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RetryFetch <= 0 {
		c.RetryFetch = 10 * time.Second
	}
	return &Follower{cfg: c, log: c.Logger.With("part", "rollout"), ctx: ctx, seen: map[string]bool{}, retry: map[string]time.Time{}, fw: c.Box.Firmware()}
}

// Offered is called with every offer the active's heartbeats carry; it
// returns at once and handles a new offer in the background.
func (f *Follower) Offered(o replication.Offer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.busy || f.seen[o.ID] || f.ctx.Err() != nil || time.Now().Before(f.retry[o.ID]) {
		return
	}
	if f.fw != "" && o.Version == f.fw {
		// Already runs it (back from the trial while the offer stands).
		f.seen[o.ID] = true
		return
	}
	if f.cfg.Standby != nil && !f.cfg.Standby() {
		return
	}
	f.busy = true
	f.wg.Go(func() {
		defer func() {
			f.mu.Lock()
			f.busy = false
			f.mu.Unlock()
		}()
		f.take(o)
	})
}

// Wait waits for a fetch under way (tests).
func (f *Follower) Wait() { f.wg.Wait() }

func (f *Follower) take(o replication.Offer) {
	log := f.log.With("version", o.Version, "offer", o.ID)
	applied := false
	err := f.cfg.Fetch(f.ctx, o, func(r io.Reader) error {
		// Offered skips the version this box runs; a version that failed
		// here is refused on the link, so the active hears why.
		if o.Version == f.cfg.Box.LastFailed() {
			return fmt.Errorf("%s already failed its trial boot on this box", o.Version)
		}
		path := filepath.Join(f.cfg.DataDir, BundleFile)
		defer os.Remove(path)
		if err := receive(path, r, o); err != nil {
			return err
		}
		log.Info("rolling update: writing the bundle the active offered")
		if err := f.cfg.Box.Apply(path); err != nil {
			return fmt.Errorf("writing the bundle: %w", err)
		}
		applied = true
		return nil
	})
	f.mu.Lock()
	if err != nil {
		// The link may have broken (the active handed over): the same
		// offer is fetched again once it is made again.
		f.retry[o.ID] = time.Now().Add(f.cfg.RetryFetch)
	} else {
		f.seen[o.ID] = true
	}
	f.mu.Unlock()
	if err != nil {
		log.Error("rolling update: the offered bundle was not taken", "err", err, "retry_in", f.cfg.RetryFetch)
		return
	}
	if !applied {
		return
	}
	log.Warn("rolling update: rebooting into the trial of the new version")
	if err := f.cfg.Box.Reboot(); err != nil {
		log.Error("rolling update: rebooting", "err", err)
	}
}

// receive writes the bundle to path and checks its size and sha256
// against the offer.
func receive(path string, r io.Reader, o replication.Offer) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("receiving the bundle: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), r)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("receiving the bundle: %w", err)
	}
	if n != o.Size {
		return fmt.Errorf("received %d bytes, offered %d", n, o.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != o.SHA256 {
		return fmt.Errorf("received bundle has sha256 %s, offered %s", got, o.SHA256)
	}
	return nil
}
