package site

import (
	"strconv"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/pbx/location"
)

// TestDiffSendsABurstOnceInParts: a burst larger than one command is sent
// in parts without repeating what is on its way; what the table does not
// show after resendAfter is sent again; what it shows is no longer sent.
func TestDiffSendsABurstOnceInParts(t *testing.T) {
	s := &Site{name: "me", table: NewTable(), mine: map[Key]location.Binding{}, inflight: map[Key]sent{}}
	now := t0
	for i := range maxPerCommand + 10 {
		aor := strconv.Itoa(1000 + i)
		s.mine[Key{aor, "sip:" + aor + "@h"}] = location.Binding{AOR: aor, Contact: "sip:" + aor + "@h", Expires: now.Add(time.Hour)}
	}
	// A binding of ours the table holds but we no longer have.
	s.table.apply(command{Op: opSync, Owner: "me", Put: []location.Binding{{AOR: "9", Contact: "sip:9@h", Expires: now.Add(time.Hour)}}})

	c1, n, more := s.diff(now)
	if n != maxPerCommand+11 || !more || len(c1.Put) != maxPerCommand || len(c1.Delete) != 1 {
		t.Fatalf("first pass: n=%d more=%v puts=%d deletes=%d", n, more, len(c1.Put), len(c1.Delete))
	}
	c2, n, more := s.diff(now.Add(time.Millisecond))
	if n != maxPerCommand+11 || more || len(c2.Put) != 10 || len(c2.Delete) != 0 {
		t.Fatalf("second pass: n=%d more=%v puts=%d deletes=%d", n, more, len(c2.Put), len(c2.Delete))
	}
	if c3, _, _ := s.diff(now.Add(time.Second)); len(c3.Put)+len(c3.Delete) != 0 {
		t.Fatalf("changes on their way were sent again: %d puts, %d deletes", len(c3.Put), len(c3.Delete))
	}
	// The table shows the first part; the rest got lost.
	s.table.apply(c1)
	c4, n, _ := s.diff(now.Add(resendAfter + time.Second))
	if n != 10 || len(c4.Put) != 10 || len(c4.Delete) != 0 {
		t.Fatalf("after resendAfter: n=%d puts=%d deletes=%d, want the 10 lost ones again", n, len(c4.Put), len(c4.Delete))
	}
	s.table.apply(c4)
	if _, n, _ := s.diff(now.Add(resendAfter + 2*time.Second)); n != 0 || len(s.inflight) != 0 {
		t.Fatalf("all in the table: n=%d, %d still counted as on their way", n, len(s.inflight))
	}
	// A refresh of a binding on its way is a new change: sent at once.
	k := Key{"1000", "sip:1000@h"}
	b := s.mine[k]
	b.Expires = b.Expires.Add(time.Minute)
	s.mine[k] = b
	if c, _, _ := s.diff(now.Add(resendAfter + 3*time.Second)); len(c.Put) != 1 {
		t.Fatalf("a refresh was not sent: %+v", c)
	}
}
