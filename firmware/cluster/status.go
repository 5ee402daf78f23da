package cluster

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/twinpbx/twinpbx/hw/relay"
)

// Status is what `twinpbx status` and the console show of the pair.
type Status struct {
	Node, Peer string
	Role       Role
	// Since is when Role was entered, Reason why.
	Since  time.Time
	Reason string
	Term   uint64
	Lease  LeaseStatus
	Twin   TwinStatus
	Paths  [NumPaths]PathStatus
	// VIPHeld is whether the VIP is on the LAN interface (refreshed every
	// second and at each role change); VIPError why it could not be read.
	VIPHeld  bool
	VIPError string
	Relay    RelayStatus
	// Transitions are the last role changes, oldest first.
	Transitions []Transition
	Alarms      []Alarm
	Monitors    []MonitorStatus
	Maintenance bool
}

// LeaseStatus is the lease as of the last tick.
type LeaseStatus struct {
	Valid  bool
	Expiry time.Time
	// ByGateway: last renewed by the gateway alone (the twin is silent).
	ByGateway bool
}

// TwinStatus is the twin as seen in its last beat.
type TwinStatus struct {
	Heard     bool
	LastHeard time.Time
	Role      Role
	Term      uint64
	StoreSeq  uint64
	GatewayOK bool
	Healthy   bool
	// SharedFault: the twin's PSTN line failed (it left for it within its
	// hold-down, or it is stuck with it): it is not handed the line back.
	SharedFault bool
}

// PathStatus is one heartbeat path.
type PathStatus struct {
	Path      Path
	Up        bool
	LastHeard time.Time
	Latency   time.Duration
}

// RelayStatus is the relay's position as last read.
type RelayStatus struct {
	Known  bool
	Side   relay.Side
	Sensed bool
	Error  string
}

// Transition is one role change.
type Transition struct {
	At       time.Time
	From, To Role
	Term     uint64
	Reason   string
}

// Alarm is a condition that needs attention, raised at Since.
type Alarm struct {
	Text  string
	Since time.Time
}

// MonitorStatus is one resource monitor.
type MonitorStatus struct {
	Name  string
	OK    bool
	Error string
	// Fails counts failures within the failure window (on the active);
	// Restarts counts restarts in place since start; Retries the
	// handovers since start that gave the twin's side of a resource
	// latched here another try (docs/CLUSTER.md, "No ping-pong").
	Fails    int
	Restarts int
	Retries  int
}

// statusRefresh is how often the VIP and relay are read for Status.
const statusRefresh = time.Second

// Status returns a snapshot of the pair as this box sees it.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	s := Status{
		Node: m.cfg.Node, Peer: m.cfg.Peer,
		Role: st.Role, Since: st.Since, Reason: st.Reason, Term: st.Term,
		Lease:       LeaseStatus{Valid: m.LeaseValid(), Expiry: st.LeaseExpiry, ByGateway: st.LeaseByGateway},
		VIPHeld:     m.vipHeld,
		VIPError:    m.vipErr,
		Relay:       m.relayStatus,
		Transitions: slices.Clone(m.transitions),
		Maintenance: m.maint,
	}
	p := m.peer
	if !p.Heard.IsZero() {
		s.Twin = TwinStatus{Heard: !p.Silent(), LastHeard: p.Heard, Role: p.Last.Role, Term: p.Last.Term,
			StoreSeq: p.Last.StoreSeq, GatewayOK: p.Last.GatewayOK, Healthy: p.Last.Healthy, SharedFault: p.Last.SharedFault}
	}
	for i, pv := range p.Paths {
		s.Paths[i] = PathStatus{Path: Path(i), Up: pv.Up, LastHeard: pv.LastHeard, Latency: pv.Latency}
	}
	for _, text := range slices.Sorted(maps.Keys(m.alarmSince)) {
		s.Alarms = append(s.Alarms, Alarm{Text: text, Since: m.alarmSince[text]})
	}
	for _, text := range slices.Sorted(maps.Keys(m.events)) {
		s.Alarms = append(s.Alarms, Alarm{Text: text, Since: m.events[text]})
	}
	for _, mon := range m.r.Monitors {
		ms := *m.monitors[mon.Name]
		ms.Fails = len(st.Fails[mon.Name])
		ms.Retries = st.Retries[mon.Name]
		s.Monitors = append(s.Monitors, ms)
	}
	return s
}

// publish stores the tick's outcome for Status and logs role changes.
func (m *Manager) publish(ctx context.Context, now time.Time, prev, next state, in inputs, sw bool) {
	changed := next.Role != prev.Role || next.Since != prev.Since // a failed takeover keeps the role
	var vipHeld bool
	var vipErr, relayErr string
	var rs RelayStatus
	refresh := changed || now.Sub(m.lastRefresh) >= statusRefresh
	if refresh {
		m.lastRefresh = now
		held, err := m.r.VIP.Held()
		vipHeld = held
		if err != nil {
			vipErr = err.Error()
		}
		side, sensed, err := m.r.Relay.Position(ctx)
		rs = RelayStatus{Known: err == nil, Side: side, Sensed: sensed}
		if err != nil {
			relayErr = err.Error()
			rs.Error = relayErr
		}
	}
	if changed {
		m.log.Info("role changed", "from", prev.Role, "to", next.Role, "term", next.Term, "reason", next.Reason)
	}
	for name, n := range next.Retries {
		if n > prev.Retries[name] {
			m.log.Warn("latched for the hold-down on a fault of both boxes: handed over to retry the twin's side", "monitor", name, "retries", n)
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = next
	m.peer = in.Peer
	if refresh {
		m.vipHeld, m.vipErr, m.relayStatus = vipHeld, vipErr, rs
	}
	if changed {
		m.transitions = append(m.transitions, Transition{At: next.Since, From: prev.Role, To: next.Role, Term: next.Term, Reason: next.Reason})
		if len(m.transitions) > maxTransitions {
			m.transitions = slices.Delete(m.transitions, 0, len(m.transitions)-maxTransitions)
		}
	}
	for text := range m.alarmSince {
		if !slices.Contains(next.Alarms, text) {
			delete(m.alarmSince, text)
		}
	}
	for _, text := range next.Alarms {
		if _, ok := m.alarmSince[text]; !ok {
			m.alarmSince[text] = now
			m.log.Warn("alarm", "alarm", text)
		}
	}
	for name, err := range in.Monitors {
		ms := m.monitors[name]
		ms.OK, ms.Error = err == nil || errors.Is(err, ErrNoVerdict), ""
		if err != nil {
			ms.Error = err.Error()
		}
	}
	if sw {
		var err error
		switch {
		case prev.Role != Active:
			err = ErrNotActive
		case next.Role == Active:
			err = errNoHandover
		}
		for _, w := range m.switchWaiters {
			w <- err
		}
		m.switchWaiters = nil
		m.switchReq = false
	}
}
