package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// maxDead bounds the dead list; beyond it the entries closest to coming
// back are forgotten first.
const maxDead = 1024

// MarkDead makes t be tried after every live target for Config.DeadFor,
// or until MarkAlive.
func (r *Resolver) MarkDead(t Target) {
	r.MarkDeadFor(t, r.cfg.DeadFor)
}

// MarkDeadFor is MarkDead for d instead of Config.DeadFor (say, the
// Retry-After of a 503).
func (r *Resolver) MarkDeadFor(t Target, d time.Duration) {
	now := r.cfg.Now()
	t.Dead = false
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.dead[t.key()]; !ok && len(r.dead) >= maxDead {
		var first string
		var until time.Time
		for k, e := range r.dead {
			if first == "" || e.until.Before(until) {
				first, until = k, e.until
			}
		}
		delete(r.dead, first)
	}
	r.dead[t.key()] = deadEntry{t: t, until: now.Add(d)}
}

// MarkAlive forgets that t failed. It reports whether t was marked dead.
func (r *Resolver) MarkAlive(t Target) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.dead[t.key()]
	delete(r.dead, t.key())
	return ok
}

// Dead returns the targets marked dead now, with their Dead flag set.
func (r *Resolver) Dead() []Target {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Target
	for k, e := range r.dead {
		if !now.Before(e.until) {
			delete(r.dead, k)
			continue
		}
		t := e.t
		t.Dead = true
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Target) int { return strings.Compare(a.key(), b.key()) })
	return out
}

// IsDead reports whether t is marked dead now.
func (r *Resolver) IsDead(t Target) bool {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.dead[t.key()]
	return ok && now.Before(e.until)
}

// Attempt sends a request to one target. It returns nil when the target
// handled it, or the error and whether another target may handle it
// instead (a transaction timeout, a transport error, a 503).
type Attempt func(Target) (retryable bool, err error)

// Do resolves uri and calls attempt on its targets in order until one
// succeeds, returning that target. A retryable failure marks the target
// dead and moves on; a failure that is not retryable ends the walk with
// its error (the request reached a server that answered for good). When
// every target failed the error says so and wraps each failure.
func (r *Resolver) Do(ctx context.Context, uri sip.Uri, attempt Attempt) (Target, error) {
	ts, err := r.Resolve(ctx, uri)
	if err != nil {
		return Target{}, err
	}
	var errs []error
	for _, t := range ts {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		retry, err := attempt(t)
		if err == nil {
			if r.MarkAlive(t) {
				r.log.Info("SIP target answers again", "target", t.String(), "uri", uri.String())
			}
			return t, nil
		}
		if !retry {
			return t, fmt.Errorf("sending to %s: %w", t, err)
		}
		r.MarkDead(t)
		r.log.Warn("SIP target failed; trying the next", "target", t.String(), "uri", uri.String(), "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", t, err))
	}
	return Target{}, fmt.Errorf("every target of %s failed: %w", uri.String(), errors.Join(errs...))
}

// Retryable is the usual rule for an Attempt built on a sipgo client
// transaction: a final response of 503 (Service Unavailable) or 408, or
// an error that is a transaction timeout, a transport error or a network
// timeout. A nil error with a 2xx-6xx other than those is a final answer.
func Retryable(res *sip.Response, err error) bool {
	if err != nil {
		var ne net.Error
		return errors.Is(err, sip.ErrTransactionTimeout) ||
			errors.Is(err, sip.ErrTransactionTransport) ||
			errors.Is(err, context.DeadlineExceeded) ||
			(errors.As(err, &ne) && ne.Timeout())
	}
	return res != nil && (res.StatusCode == sip.StatusServiceUnavailable || res.StatusCode == sip.StatusRequestTimeout)
}

// ProbeFunc sends SIP OPTIONS (or any request) to t and returns nil when t
// answered. It must return when ctx is done.
type ProbeFunc func(ctx context.Context, t Target) error

// Prober probes the dead targets of a Resolver every ProbeInterval and
// marks those that answer alive, so that new requests use them again
// before DeadFor ends.
type Prober struct {
	r     *Resolver
	probe ProbeFunc
}

// NewProber returns a Prober that probes r's dead targets with probe.
func NewProber(r *Resolver, probe ProbeFunc) *Prober {
	return &Prober{r: r, probe: probe}
}

// Run probes every ProbeInterval until ctx is done.
func (p *Prober) Run(ctx context.Context) {
	tick := time.NewTicker(p.r.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			p.ProbeOnce(ctx)
		}
	}
}

// ProbeOnce probes every dead target at once, each within ProbeTimeout,
// and returns those it marked alive.
func (p *Prober) ProbeOnce(ctx context.Context) []Target {
	dead := p.r.Dead()
	alive := make([]bool, len(dead))
	var wg sync.WaitGroup
	for i, t := range dead {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, p.r.cfg.ProbeTimeout)
			defer cancel()
			alive[i] = p.probe(pctx, t) == nil
		})
	}
	wg.Wait()
	var out []Target
	for i, t := range dead {
		if alive[i] && p.r.MarkAlive(t) {
			t.Dead = false
			p.r.log.Info("dead SIP target answers the probe again", "target", t.String())
			out = append(out, t)
		}
	}
	return out
}
