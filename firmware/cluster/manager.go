package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

// Resources are what the manager drives and watches. All but Fence are
// required.
type Resources struct {
	Heartbeat Heartbeat
	VIP       VIP
	Relay     Relay
	Replica   Replica
	Service   Service
	Probe     Probe
	Terms     TermStore
	// Latches keeps the monitors this box carries a shared fault for
	// across a restart of its node; nil: in memory only.
	Latches LatchStore
	// Fence stops the watchdog kicks at once when the box fences itself;
	// nil: only Healthy turning false stops them.
	Fence    Fence
	Monitors []Monitor
}

// ErrNotActive is returned by Switchover on a box that is not active.
var ErrNotActive = errors.New("this box is not active")

// maxTransitions is how many role changes Status keeps.
const maxTransitions = 32

// Manager runs the decision loop of one box. LeaseValid, Healthy, Status,
// Switchover and SetMaintenance are safe for concurrent use; Run (or Step,
// in tests) runs in one goroutine.
type Manager struct {
	cfg   Config
	d     decider
	r     Resources
	clock clockwork.Clock
	log   *slog.Logger
	wake  chan struct{}

	// lease is the lease expiry in Unix nanoseconds while ACTIVE, else 0.
	lease atomic.Int64
	// alive is when the loop last completed a step, in Unix nanoseconds.
	alive  atomic.Int64
	fenced atomic.Bool

	// incarnation tells the twin this node process from earlier ones.
	incarnation uint64

	// loop-only state
	lastCheck   map[string]time.Time
	lastRefresh time.Time
	// latched is what Resources.Latches holds (latch.go).
	latched []string

	mu            sync.Mutex
	st            state
	maint         bool
	switchReq     bool
	switchWaiters []chan error
	transitions   []Transition
	alarmSince    map[string]time.Time
	events        map[string]time.Time // alarms raised by execution
	peer          PeerView
	vipHeld       bool
	vipErr        string
	relayStatus   RelayStatus
	monitors      map[string]*MonitorStatus
}

// New returns a manager in BOOT, its term read from r.Terms.
func New(cfg Config, r Resources) (*Manager, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if r.Heartbeat == nil || r.VIP == nil || r.Relay == nil || r.Replica == nil || r.Service == nil || r.Probe == nil || r.Terms == nil {
		return nil, errors.New("creating the cluster manager: a resource is missing")
	}
	m := &Manager{
		cfg:        cfg,
		d:          decider{cfg: cfg, monitors: map[string]monitorSpec{}},
		r:          r,
		clock:      cfg.Clock,
		log:        cfg.Logger.With("node", cfg.Node),
		wake:       make(chan struct{}, 1),
		lastCheck:  map[string]time.Time{},
		alarmSince: map[string]time.Time{},
		events:     map[string]time.Time{},
		monitors:   map[string]*MonitorStatus{},
	}
	for _, mon := range r.Monitors {
		if mon.Name == "" || mon.Check == nil {
			return nil, errors.New("creating the cluster manager: a monitor lacks a name or a check")
		}
		if _, dup := m.d.monitors[mon.Name]; dup {
			return nil, fmt.Errorf("creating the cluster manager: monitor %q given twice", mon.Name)
		}
		if mon.HoldDown < 0 {
			return nil, fmt.Errorf("creating the cluster manager: monitor %q has a negative hold-down", mon.Name)
		}
		m.d.monitors[mon.Name] = monitorSpec{Restartable: mon.Restart != nil, ActiveOnly: mon.ActiveOnly, HoldDown: mon.HoldDown, BothAlarm: mon.BothAlarm}
		m.monitors[mon.Name] = &MonitorStatus{Name: mon.Name, OK: true}
	}
	now := m.clock.Now()
	m.incarnation = uint64(now.UnixNano())
	m.st = state{Role: Boot, Since: now, Reason: "started", Term: r.Terms.Term()}
	m.restoreLatches(now)
	m.alive.Store(now.UnixNano())
	return m, nil
}

// LeaseValid reports whether this box may serve SIP and RTP on the VIP
// now: it is ACTIVE and its lease has not run out. The PBX calls it on
// every request.
func (m *Manager) LeaseValid() bool {
	exp := m.lease.Load()
	return exp != 0 && m.clock.Now().UnixNano() < exp
}

// Healthy is the watchdog fence's health check: true while the decision
// loop has completed a step within half the watchdog timeout and the box
// is not FENCED.
func (m *Manager) Healthy() bool {
	if m.fenced.Load() {
		return false
	}
	return m.clock.Now().UnixNano()-m.alive.Load() < int64(m.cfg.WatchdogTimeout/2)
}

// Role returns the current role.
func (m *Manager) Role() Role {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Role
}

// ActiveSince is when this box last became ACTIVE, zero while it is not
// active. A monitor that needs time after a takeover (the PSTN line, whose
// relay has just switched) counts its grace from it.
func (m *Manager) ActiveSince() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st.Role != Active {
		return time.Time{}
	}
	return m.st.Since
}

// SetMaintenance asks for (or ends) maintenance: the box never becomes
// active; an active box first hands over to its twin (and stays active,
// with an alarm, while the twin cannot take over).
func (m *Manager) SetMaintenance(on bool) {
	m.mu.Lock()
	m.maint = on
	m.mu.Unlock()
	m.poke()
}

// Switchover hands service over to the twin gracefully: it waits until
// the twin has acknowledged every change, then stops serving, drops the
// VIP and sends the handover request; the twin takes over at once. It
// returns once this box is no longer active, or why it could not hand
// over.
func (m *Manager) Switchover(ctx context.Context) error {
	if m.Role() != Active {
		return ErrNotActive
	}
	for !m.r.Replica.InSync() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("switchover: waiting for the twin to catch up: %w", ctx.Err())
		case <-m.clock.After(m.cfg.Interval):
		}
	}
	done := make(chan error, 1)
	m.mu.Lock()
	m.switchReq = true
	m.switchWaiters = append(m.switchWaiters, done)
	m.mu.Unlock()
	m.poke()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("switchover: %w", ctx.Err())
	}
}

// switchPending reports whether a switchover waits for the loop.
func (m *Manager) switchPending() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.switchReq
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run ticks every interval and on heartbeat events until ctx ends, then
// stops serving, drops the VIP and says goodbye to the twin.
func (m *Manager) Run(ctx context.Context) error {
	ticker := m.clock.NewTicker(m.cfg.Interval)
	defer ticker.Stop()
	events := m.r.Heartbeat.Events()
	for {
		m.Step(ctx)
		select {
		case <-ctx.Done():
			m.shutdown()
			return nil
		case <-ticker.Chan():
		case <-events:
		case <-m.wake:
		}
	}
}

// shutdown leaves the pair: stop order, then a goodbye beat.
func (m *Manager) shutdown() {
	m.mu.Lock()
	st := m.st
	m.mu.Unlock()
	m.lease.Store(0)
	if st.Role == Active {
		if err := m.r.Service.Stop(); err != nil {
			m.log.Error("stopping the PBX at shutdown", "err", err)
		}
		if err := m.r.VIP.Release(); err != nil {
			m.log.Error("releasing the VIP at shutdown", "err", err)
		}
		st.Role = Standby
	}
	b := m.beat(st)
	b.Goodbye = true
	m.r.Heartbeat.SetLocal(b)
	m.r.Heartbeat.SendNow()
	m.log.Info("left the pair", "role", st.Role)
}

// Step runs one tick: gather the inputs, decide, carry out the actions,
// publish the beat and the status.
func (m *Manager) Step(ctx context.Context) {
	now := m.clock.Now()
	m.mu.Lock()
	prev, maint, sw := m.st, m.maint, m.switchReq
	m.mu.Unlock()

	in := m.gather(ctx, now, prev, maint, sw)
	res := m.d.decide(prev, in)
	if res.Probe {
		in.VIP = probeUnanswered
		if m.r.Probe.VIPAnswers(ctx) {
			in.VIP = probeAnswered
		}
		in.ProbeEnd = m.clock.Now()
		res = m.d.decide(prev, in)
	}
	next := res.Next
	if next.Role != Active {
		m.lease.Store(0) // before the stop order runs
	}
	next = m.execute(ctx, prev, next, res.Actions)
	m.keepLatches(next)
	if next.Role == Active && !next.LeaseExpiry.IsZero() {
		m.lease.Store(next.LeaseExpiry.UnixNano())
	} else {
		m.lease.Store(0)
	}

	b := m.beat(next)
	b.Maintenance = b.Maintenance || maint
	m.r.Heartbeat.SetLocal(b)
	if next.Role != prev.Role || next.Handover != prev.Handover || next.Term != prev.Term {
		m.r.Heartbeat.SendNow()
	}
	m.publish(ctx, now, prev, next, in, sw)
	m.alive.Store(m.clock.Now().UnixNano())
}

// gather takes this tick's snapshot of the inputs.
func (m *Manager) gather(ctx context.Context, now time.Time, st state, maint, sw bool) inputs {
	in := inputs{
		Now:           now,
		Peer:          m.r.Heartbeat.Peer(),
		GatewayOK:     m.r.Probe.GatewayOK(ctx),
		InSync:        m.r.Replica.InSync(),
		StoreSeq:      m.r.Replica.StoreSeq(),
		ConfigVersion: m.r.Replica.ConfigVersion(),
		Maintenance:   maint,
		Switchover:    sw,
	}
	for _, mon := range m.r.Monitors {
		if mon.ActiveOnly && st.Role != Active {
			continue
		}
		if last, ok := m.lastCheck[mon.Name]; ok && mon.Every > 0 && now.Sub(last) < mon.Every {
			continue
		}
		m.lastCheck[mon.Name] = now
		cctx, cancel := context.WithTimeout(ctx, m.cfg.DeadTime)
		err := mon.Check(cctx)
		cancel()
		if in.Monitors == nil {
			in.Monitors = map[string]error{}
		}
		in.Monitors[mon.Name] = err
	}
	return in
}

// beat is what the twin is told of st.
func (m *Manager) beat(st state) Beat {
	return Beat{
		Node:            m.cfg.Node,
		Role:            st.Role,
		Term:            st.Term,
		StoreSeq:        m.r.Replica.StoreSeq(),
		ConfigVersion:   m.r.Replica.ConfigVersion(),
		GatewayOK:       !slices.Contains(st.Alarms, AlarmIsolated),
		Healthy:         st.healthy(),
		Handover:        st.Handover,
		Maintenance:     st.Role == Maintenance,
		SharedFault:     st.sharedFault(),
		WatchdogTimeout: m.cfg.WatchdogTimeout,
		Incarnation:     m.incarnation,
	}
}

// execute carries out the actions in order. A takeover that cannot
// persist its term, add the VIP or start serving is rolled back to
// STANDBY and held off for dead_time.
func (m *Manager) execute(ctx context.Context, prev, next state, acts []action) state {
	for i, a := range acts {
		var err error
		switch a.Kind {
		case actRemoveStaleVIP:
			if err = m.r.VIP.RemoveStale(); err != nil {
				m.raise("removing a stale VIP failed", err)
			}
		case actSetTerm:
			if err = m.r.Terms.SetTerm(a.Term); err != nil {
				next.Term = prev.Term
				return m.abortTakeover(next, acts[:i], fmt.Errorf("persisting term %d: %w", a.Term, err))
			}
		case actSelectRelay:
			m.selectRelay(ctx)
		case actAcquireVIP:
			if err = m.r.VIP.Acquire(ctx); err != nil {
				return m.abortTakeover(next, acts[:i], fmt.Errorf("adding the VIP: %w", err))
			}
		case actBecomeSource:
			m.r.Replica.BecomeSource()
		case actServe:
			if err = m.r.Service.Serve(ctx, a.Term); err != nil {
				return m.abortTakeover(next, acts[:i], fmt.Errorf("starting to serve: %w", err))
			}
			m.clear("takeover failed")
		case actStop:
			if err = m.r.Service.Stop(); err != nil {
				m.raise("stopping the PBX failed", err)
			}
		case actReleaseVIP:
			if err = m.r.VIP.Release(); err != nil {
				m.raise("releasing the VIP failed", err)
			}
		case actBecomeFollower:
			m.r.Replica.BecomeFollower(m.cfg.Peer)
		case actRestart:
			err = m.restart(ctx, a.Name)
		case actFence:
			m.fenced.Store(true)
			if m.r.Fence != nil {
				m.r.Fence.FenceNow(a.Reason)
			}
		}
		if err != nil {
			m.log.Error("cluster action failed", "action", a.String(), "err", err)
		}
	}
	return next
}

// selectRelay connects the PSTN line to this box and reads it back; a
// failure is an alarm only, since calls over SIP carry on.
func (m *Manager) selectRelay(ctx context.Context) {
	const alarm = "relay did not follow"
	if err := m.r.Relay.Select(ctx, m.cfg.Side); err != nil {
		m.raise(alarm, err)
		return
	}
	side, sensed, err := m.r.Relay.Position(ctx)
	m.mu.Lock()
	m.relayStatus = RelayStatus{Side: side, Sensed: sensed, Known: err == nil}
	if err != nil {
		m.relayStatus.Error = err.Error()
	}
	m.mu.Unlock()
	if err != nil || side != m.cfg.Side {
		m.raise(alarm, fmt.Errorf("reads %v, want %v (err %v)", side, m.cfg.Side, err))
		return
	}
	m.clear(alarm)
}

// restart repairs a monitored resource in place.
func (m *Manager) restart(ctx context.Context, name string) error {
	for _, mon := range m.r.Monitors {
		if mon.Name != name || mon.Restart == nil {
			continue
		}
		m.mu.Lock()
		m.monitors[name].Restarts++
		m.mu.Unlock()
		m.log.Warn("restarting a failed resource in place", "monitor", name)
		if err := mon.Restart(ctx); err != nil {
			return fmt.Errorf("restarting %s: %w", name, err)
		}
	}
	return nil
}

// abortTakeover undoes the steps done, in stop order, and falls back to
// STANDBY.
func (m *Manager) abortTakeover(next state, done []action, cause error) state {
	m.raise("takeover failed", cause)
	m.log.Error("takeover failed", "err", cause)
	for _, a := range slices.Backward(done) {
		switch a.Kind {
		case actServe:
			if err := m.r.Service.Stop(); err != nil {
				m.log.Error("stopping the PBX after a failed takeover", "err", err)
			}
		case actAcquireVIP:
			if err := m.r.VIP.Release(); err != nil {
				m.log.Error("releasing the VIP after a failed takeover", "err", err)
			}
		}
	}
	m.r.Replica.BecomeFollower(m.cfg.Peer)
	now := m.clock.Now()
	next.Role = Standby
	next.Since = now
	next.Reason = "takeover failed: " + cause.Error()
	next.Following = true
	next.LeaseExpiry = time.Time{}
	next.HoldUntil = now.Add(m.cfg.DeadTime)
	return next
}

// raise records an alarm raised while carrying out actions.
func (m *Manager) raise(name string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.events[name]; !ok {
		m.events[name] = m.clock.Now()
		m.log.Warn("alarm", "alarm", name, "err", err)
	}
}

func (m *Manager) clear(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.events, name)
}

// errNoHandover is returned by Switchover when the twin cannot take over.
var errNoHandover = errors.New("switchover: " + AlarmNoHandover)
