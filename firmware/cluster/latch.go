package cluster

import (
	"maps"
	"slices"
	"time"
)

// A box that found a resource with a hold-down (the PSTN line) down and
// handed service over, or latched on it, tells its twin so in its beats
// for the hold-down (state.LeftFor, state.Stuck). The names are kept in
// Resources.Latches, so that a box restarted meanwhile (a power cut, a
// watchdog reset) still tells its twin: the twin that took over and finds
// the line down too then latches, instead of handing service back to
// this box to find the same. The times are not kept: a box's clock after
// a reset may be anywhere (no battery-backed clock on many boards), so
// the hold-down starts again when the node starts, as if it had left
// ACTIVE then, which is what it did.

// restoreLatches reads the kept names into m.st (at New).
func (m *Manager) restoreLatches(now time.Time) {
	if m.r.Latches == nil {
		return
	}
	names, err := m.r.Latches.Latched()
	if err != nil {
		m.log.Warn("reading the monitors this box left service for: the twin is not told of them", "err", err)
		return
	}
	for _, name := range names {
		if spec, ok := m.d.monitors[name]; !ok || spec.HoldDown <= 0 {
			continue // no such monitor any more, or no hold-down
		}
		if m.st.LeftFor == nil {
			m.st.LeftFor = map[string]time.Time{}
		}
		m.st.LeftFor[name] = now
		m.log.Info("carries a shared fault from before the restart, for the hold-down", "monitor", name)
	}
	m.latched = slices.Sorted(maps.Keys(m.st.LeftFor))
}

// keepLatches saves the names of next's shared faults when they changed.
func (m *Manager) keepLatches(next state) {
	if m.r.Latches == nil {
		return
	}
	names := slices.Sorted(maps.Keys(next.LeftFor))
	for name := range next.Stuck {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if slices.Equal(names, m.latched) {
		return
	}
	// Remembered even when the write fails: one warning, not one a tick.
	m.latched = names
	if err := m.r.Latches.SetLatched(names); err != nil {
		m.log.Warn("saving the monitors this box left service for: lost if the node restarts", "err", err)
	}
}
