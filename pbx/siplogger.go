package pbx

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// The SIP stack logs through one process-wide logger (sip.DefaultLogger),
// read without synchronisation by its goroutines, some of which outlive
// the PBX that started them (connection readers ending, transactions
// timing out). Replacing that logger for every new PBX (a restart after a
// config change, tests) would race with them. So it is set once, to a
// handler that forwards to the handler of the newest PBX, swapped
// atomically.
var sipLogSwitch struct {
	once sync.Once
	cur  atomic.Pointer[slog.Handler]
}

// setSIPLogger makes l's handler the SIP stack's.
func setSIPLogger(l *slog.Logger) {
	h := l.Handler()
	sipLogSwitch.cur.Store(&h)
	sipLogSwitch.once.Do(func() { sip.SetDefaultLogger(slog.New(swapHandler{})) })
}

// swapHandler forwards to the current SIP log handler.
type swapHandler struct{}

func (swapHandler) cur() slog.Handler { return *sipLogSwitch.cur.Load() }

func (s swapHandler) Enabled(ctx context.Context, l slog.Level) bool { return s.cur().Enabled(ctx, l) }

func (s swapHandler) Handle(ctx context.Context, r slog.Record) error { return s.cur().Handle(ctx, r) }

func (s swapHandler) WithAttrs(a []slog.Attr) slog.Handler { return s.cur().WithAttrs(a) }

func (s swapHandler) WithGroup(n string) slog.Handler { return s.cur().WithGroup(n) }
