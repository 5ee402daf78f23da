package location

import (
	"fmt"
	"testing"
	"time"
)

// TestWriteBackCrashBetweenFlushes: as TestWriteBackCrash, but the
// refreshes arrive between the flushes (which come every second at a
// moment of their own) and the box may crash after any refresh is
// answered and before the next flush writes it. A phone whose every gap
// between refreshes is at most half its expiry still finds the stored copy
// alive when it next refreshes, also when a gap ends just after the stored
// copy's half-life.
func TestWriteBackCrashBetweenFlushes(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	const step = 100 * time.Millisecond
	tests := []struct {
		expires time.Duration
		offset  time.Duration // of the flushes within each second
		gaps    []time.Duration
	}{
		{time.Hour, 700 * time.Millisecond, []time.Duration{time.Second, 30*time.Minute - 500*time.Millisecond, 30 * time.Minute}},
		{time.Hour, 100 * time.Millisecond, []time.Duration{20 * time.Second, 30*time.Minute - 19*time.Second - 200*time.Millisecond, 30 * time.Minute}},
		{time.Hour, 900 * time.Millisecond, []time.Duration{30*time.Minute - 300*time.Millisecond}},
		{time.Hour, 500 * time.Millisecond, []time.Duration{10 * time.Minute, 25 * time.Minute, 30 * time.Minute}},
		{2 * time.Minute, 300 * time.Millisecond, []time.Duration{time.Second, 50*time.Second + 400*time.Millisecond, time.Minute}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("expires %v gaps %v flushes at +%v", tt.expires, tt.gaps, tt.offset), func(t *testing.T) {
			s, m, now := newWriteBackService(t, t0, wb)
			b := Binding{AOR: "100", Contact: "sip:100@192.0.2.5", Source: "udp:192.0.2.5:5060", CallID: "c"}
			next, gap := t0, 0
			// A crash now: the phone's next refresh must find the stored
			// copy alive.
			crash := func(when string) {
				t.Helper()
				if st, ok := m.stored(b.AOR, b.Contact); !ok || !st.Expires.After(next) {
					t.Fatalf("a crash at %v %s leaves the binding stored until %v, but the phone refreshes at %v",
						now.Sub(t0), when, st.Expires.Sub(t0), next.Sub(t0))
				}
			}
			for *now = t0; now.Before(t0.Add(4 * tt.expires)); *now = now.Add(step) {
				if !now.Before(next) {
					b.CSeq++
					b.Expires, b.Updated = now.Add(tt.expires), *now
					if err := s.Put(b, 5); err != nil {
						t.Fatal(err)
					}
					next = now.Add(tt.gaps[gap%len(tt.gaps)])
					gap++
					crash("after a refresh")
				}
				if now.Sub(t0)%time.Second == tt.offset {
					if err := s.FlushDue(); err != nil {
						t.Fatal(err)
					}
					crash("after a flush")
				}
			}
		})
	}
}
