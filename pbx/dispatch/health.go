package dispatch

import (
	"log/slog"
	"sync"
	"sync/atomic"
)

// health keeps the up/down state of every backend. A backend starts up.
// downAfter failed probes in a row mark it down, upAfter answered probes
// in a row mark it up again; a request it left unanswered (a transaction
// timeout) marks it down at once, since calls are being lost.
type health struct {
	log       *slog.Logger
	name      func(int) string
	downAfter int
	upAfter   int
	// keepUp: no backend is ever marked down (Config.KeepUp).
	keepUp bool

	up []atomic.Bool // read on every new call without the lock

	mu    sync.Mutex
	fails []int // consecutive failed probes
	oks   []int // consecutive answered probes
}

// newHealth keeps the state of n backends; name(i) names backend i in
// the log.
func newHealth(log *slog.Logger, n int, name func(int) string, downAfter, upAfter int) *health {
	h := &health{
		log: log, name: name, downAfter: downAfter, upAfter: upAfter,
		up:    make([]atomic.Bool, n),
		fails: make([]int, n),
		oks:   make([]int, n),
	}
	for i := range h.up {
		h.up[i].Store(true)
	}
	return h
}

func (h *health) isUp(i int) bool { return h.up[i].Load() }

// probed records the outcome of one probe of backend i.
func (h *health) probed(i int, answered bool) {
	if h.keepUp {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if answered {
		h.fails[i] = 0
		h.oks[i]++
		if !h.up[i].Load() && h.oks[i] >= h.upAfter {
			h.up[i].Store(true)
			h.log.Info("dispatcher backend up: it answers OPTIONS again", "backend", h.name(i), "answered", h.oks[i])
		}
		return
	}
	h.oks[i] = 0
	h.fails[i]++
	if h.up[i].Load() && h.fails[i] >= h.downAfter {
		h.up[i].Store(false)
		h.log.Warn("dispatcher backend down: it does not answer OPTIONS", "backend", h.name(i), "unanswered", h.fails[i])
	}
}

// timedOut records a request that backend i never answered.
func (h *health) timedOut(i int, method string) {
	if h.keepUp {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.oks[i] = 0
	if h.up[i].Load() {
		h.up[i].Store(false)
		h.log.Warn("dispatcher backend down: a request got no answer", "backend", h.name(i), "method", method)
	}
}
