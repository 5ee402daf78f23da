package vmtest

import (
	"context"
	"fmt"
	"strings"
)

// WaitConsoleFrom waits until the console shows s at or after byte off
// and returns the offset just past it: a test that types on the console
// waits for each prompt after the previous one.
func (m *Machine) WaitConsoleFrom(ctx context.Context, off int, s string) (int, error) {
	for {
		ch := m.console.changed()
		out := m.console.String()
		if off > len(out) {
			off = len(out)
		}
		if i := strings.Index(out[off:], s); i >= 0 {
			return off + i + len(s), nil
		}
		select {
		case <-ctx.Done():
			return off, fmt.Errorf("waiting for %q on the console: %w", s, ctx.Err())
		case <-m.done:
			return off, fmt.Errorf("QEMU ended (%v) before the console showed %q", m.err, s)
		case <-ch:
		}
	}
}
