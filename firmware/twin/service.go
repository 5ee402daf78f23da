package twin

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/config"
)

// PBX is what the twin runtime needs of the PBX (pbx.PBX has it).
type PBX interface {
	// Reload applies cfg (when not nil) and reads the location bindings
	// from the store again.
	Reload(cfg *config.Config) error
}

// CallKeeper is implemented by a PBX whose answered calls survive a
// failover (pbx.PBX has it): RestoreCalls carries on the calls saved in
// the replicated store (dialogs and media relay sessions), AbandonCalls
// leaves the calls to the twin without a BYE when this box stops serving.
type CallKeeper interface {
	RestoreCalls(ctx context.Context) (int, error)
	AbandonCalls() int
}

// service adapts the PBX to cluster.Service: it opens and closes the
// serving gate the PBX checks on every request.
type service struct {
	pbx     PBX
	serving *atomic.Bool
	// load returns the config to serve with (the newest stored one, made
	// this box's).
	load  func() (*config.Config, error)
	probe sipProber
	self  string
	log   interface {
		Info(string, ...any)
	}
	// health is the last result of the background OPTIONS check (nil:
	// fine or not checked yet); the check itself never runs in the
	// decision loop, whose ticks keep the lease.
	health atomic.Pointer[error]
}

var _ cluster.Service = (*service)(nil)

// Serve makes the PBX current with the replicated store (config and
// bindings), restores calls when the PBX can, and opens the gate.
func (s *service) Serve(ctx context.Context, term uint64) error {
	cfg, err := s.load()
	if err != nil {
		return fmt.Errorf("reading the config to serve with: %w", err)
	}
	if err := s.pbx.Reload(cfg); err != nil {
		return err
	}
	if k, ok := s.pbx.(CallKeeper); ok {
		n, err := k.RestoreCalls(ctx)
		if err != nil {
			// Some calls in progress are lost; new calls work: serve.
			s.log.Info("restoring calls failed; serving without them", "restored", n, "err", err)
		} else if n > 0 {
			s.log.Info("calls restored", "count", n)
		}
	}
	s.health.Store(nil)
	s.serving.Store(true)
	s.log.Info("serving", "term", term, "config_version", cfg.Version)
	return nil
}

// Stop closes the gate (the sockets stay bound) and leaves the calls in
// progress to the twin, which restores them when it takes over.
func (s *service) Stop() error {
	s.serving.Store(false)
	if k, ok := s.pbx.(CallKeeper); ok {
		if n := k.AbandonCalls(); n > 0 {
			s.log.Info("calls left to the twin", "count", n)
		}
	}
	return nil
}

// Healthy returns the result of the last background check.
func (s *service) Healthy(context.Context) error {
	if e := s.health.Load(); e != nil {
		return *e
	}
	return nil
}

// check asks the VIP with OPTIONS and wants this box to answer.
func (s *service) check(ctx context.Context) error {
	node, err := s.probe.ask(ctx, 2, 200*time.Millisecond)
	if err != nil {
		return err
	}
	if node != s.self {
		return fmt.Errorf("the VIP is answered by %q, not by this box", node)
	}
	return nil
}

// watch checks the PBX every period while it serves, until ctx ends.
func (s *service) watch(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.serving.Load() {
			s.health.Store(nil)
			continue
		}
		err := s.check(ctx)
		if err != nil && (ctx.Err() != nil || !s.serving.Load()) {
			continue // stopped meanwhile
		}
		s.health.Store(&err)
	}
}

// Localize makes a config of the pair this box's: the shared part
// (extensions, SIP settings) comes from shared, which may have been
// replicated from the twin, and the node name and cluster section, which
// differ between the twins, from local (the box's own config file).
// An unset realm, which would default to the node name and so differ
// between the twins, becomes the lower of the two node names, so phones'
// credentials stay valid across a failover.
func Localize(shared, local *config.Config) *config.Config {
	c := *shared
	c.Node = local.Node
	if local.Cluster != nil {
		cl := *local.Cluster
		c.Cluster = &cl
		if c.SIP.Realm == "" {
			c.SIP.Realm = min(local.Node.Name, cl.Peer)
		}
	}
	return &c
}

// SameShared reports whether a and b hold the same shared settings: all
// but the version, the node name and the cluster section.
func SameShared(a, b *config.Config) bool {
	strip := func(c *config.Config) *config.Config {
		x := *c
		x.Version, x.Node, x.Cluster = 0, config.Node{}, nil
		return &x
	}
	return strip(a).Equal(strip(b))
}

// NonceKey is the digest nonce key of the pair, derived from the pairing
// key so that a nonce the twin issued stays valid after a failover.
func NonceKey(pairingKey string) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, []byte(pairingKey), nil, "twinpbx digest nonces v1", 32)
	if err != nil {
		return nil, fmt.Errorf("deriving the nonce key: %w", err)
	}
	return k, nil
}
