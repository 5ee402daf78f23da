// Package siplog guards the log against what arrives from the network: a
// slog.Handler that truncates long attribute values (whole packets, which
// the SIP stack logs on parse errors) and lets at most a burst of records
// with the same level and message through per interval, counting the rest.
// A scanner flooding the PBX with garbage thus costs a few lines a minute,
// not the data partition.
package siplog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Options bound what passes.
type Options struct {
	// Burst is how many records with the same level and message pass per
	// Interval (default 5 per minute).
	Burst    int
	Interval time.Duration
	// MaxValue truncates string attribute values longer than this (default 300).
	MaxValue int
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

type bucket struct {
	start      time.Time
	n          int
	suppressed int
}

type state struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

// Handler wraps another handler. Create it with New.
type Handler struct {
	next slog.Handler
	o    Options
	st   *state
}

// New returns a handler that limits and truncates, then passes to next.
func New(next slog.Handler, o Options) *Handler {
	if o.Burst <= 0 {
		o.Burst = 5
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.MaxValue <= 0 {
		o.MaxValue = 300
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Handler{next: next, o: o, st: &state{buckets: map[string]*bucket{}}}
}

// Enabled reports whether next handles the level.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle passes r on unless its (level, message) exceeded the burst in the
// current interval. The first record of a new interval carries the count
// of records suppressed in the previous one.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	key := r.Level.String() + "\x00" + r.Message
	now := h.o.Now()
	h.st.mu.Lock()
	b := h.st.buckets[key]
	if b == nil {
		if len(h.st.buckets) > 1000 {
			h.st.buckets = map[string]*bucket{}
		}
		b = &bucket{start: now}
		h.st.buckets[key] = b
	}
	suppressed := 0
	if now.Sub(b.start) >= h.o.Interval {
		suppressed = b.suppressed
		b.start, b.n, b.suppressed = now, 0, 0
	}
	if b.n >= h.o.Burst {
		b.suppressed++
		h.st.mu.Unlock()
		return nil
	}
	b.n++
	h.st.mu.Unlock()

	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.truncate(a))
		return true
	})
	if suppressed > 0 {
		out.AddAttrs(slog.Int("suppressed_before", suppressed))
	}
	return h.next.Handle(ctx, out)
}

func (h *Handler) truncate(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); len(s) > h.o.MaxValue {
			return slog.String(a.Key, s[:h.o.MaxValue]+"…(truncated)")
		}
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, 0, len(g))
		for _, x := range g {
			out = append(out, h.truncate(x))
		}
		return slog.Group(a.Key, out...)
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// WithAttrs keeps the shared limiter state.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	t := make([]slog.Attr, len(as))
	for i, a := range as {
		t[i] = h.truncate(a)
	}
	return &Handler{next: h.next.WithAttrs(t), o: h.o, st: h.st}
}

// WithGroup keeps the shared limiter state.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), o: h.o, st: h.st}
}
