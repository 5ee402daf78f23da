package auth

import (
	"sync"
	"time"
)

// brake counts failed authentications per source address. After max
// failures within window the source is refused (403) for blockFor; a
// success does not clear the count, so a scanner cannot reset it by
// interleaving a known account. The table is bounded: when full, entries
// whose window has passed are swept, and if it is still full the new
// source is not tracked (it is then only challenged, never blocked).
type brake struct {
	mu       sync.Mutex
	max      int
	window   time.Duration
	blockFor time.Duration
	limit    int
	sources  map[string]*failures
}

type failures struct {
	start        time.Time
	n            int
	blockedUntil time.Time
}

func newBrake(limit int, window, blockFor time.Duration, max int) *brake {
	return &brake{max: max, window: window, blockFor: blockFor, limit: limit, sources: map[string]*failures{}}
}

// blocked reports whether src is refused at t.
func (b *brake) blocked(src string, t time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.sources[src]
	return ok && t.Before(f.blockedUntil)
}

// fail records a failure of src at t and reports whether src is now blocked.
func (b *brake) fail(src string, t time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.sources[src]
	if !ok {
		if len(b.sources) >= b.max {
			b.sweep(t)
			if len(b.sources) >= b.max {
				return false
			}
		}
		f = &failures{start: t}
		b.sources[src] = f
	}
	if t.Sub(f.start) > b.window {
		f.start, f.n = t, 0
	}
	f.n++
	if f.n >= b.limit {
		f.blockedUntil = t.Add(b.blockFor)
		f.start, f.n = t, 0
		return true
	}
	return false
}

func (b *brake) sweep(t time.Time) {
	for k, f := range b.sources {
		if t.Sub(f.start) > b.window && !t.Before(f.blockedUntil) {
			delete(b.sources, k)
		}
	}
}
