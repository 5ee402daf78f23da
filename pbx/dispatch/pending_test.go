package dispatch

import (
	"testing"
	"time"
)

// TestPending: an entry stays for its transaction's ACK and CANCEL, and
// only as long as needed; an unanswered request is reported once.
func TestPending(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name     string
		method   string
		status   int // 0: no answer
		at       time.Duration
		kept     bool // still there at sweep time
		timedOut bool
	}{
		{"invite answered, ACK window", "INVITE", 486, 2 * time.Second, true, false},
		{"invite answered long ago", "INVITE", 200, lingerAfterFinal + 2*time.Second, false, false},
		{"invite ringing", "INVITE", 180, time.Minute, true, false},
		{"invite ringing too long", "INVITE", 180, lingerProvisional + time.Second, false, false},
		{"invite unanswered", "INVITE", 0, 5 * time.Second, false, true},
		{"invite not yet late", "INVITE", 0, time.Second, true, false},
		{"register answered", "REGISTER", 200, 0, false, false},
		{"bye trying", "BYE", 100, time.Second, true, false},
		{"bye unanswered", "BYE", 0, 5 * time.Second, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPending()
			p.add("b1", 2, tc.method, t0, nil)
			p.add("b1", 0, tc.method, t0.Add(time.Millisecond), nil) // a retransmission keeps the first
			if tc.status > 0 {
				p.answered("b1", "CANCEL", 200, t0) // another method's answer on the same branch
				p.answered("b1", tc.method, tc.status, t0)
			}
			out := p.sweep(t0.Add(tc.at), 4*time.Second, nil).timedOut
			if got := p.backend("b1") >= 0; got != tc.kept {
				t.Errorf("kept %v, want %v", got, tc.kept)
			}
			if tc.kept && p.backend("b1") != 2 {
				t.Errorf("backend %d, want 2", p.backend("b1"))
			}
			if got := len(out) == 1 && out[0] == (timedOut{2, tc.method}); got != tc.timedOut || len(out) > 1 {
				t.Errorf("timed out %v, want %v", out, tc.timedOut)
			}
		})
	}
}

func (p *pending) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

// TestPendingLookup: an INVITE counts as ringing (its retransmissions
// absorbed) only between its first provisional and its final answer.
func TestPendingLookup(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newPending()
	p.add("b", 1, "INVITE", t0, nil)
	for _, step := range []struct {
		status  int // answer before the lookup; 0: none
		ringing bool
	}{
		{0, false},
		{100, true},
		{180, true},
		{200, false},
		{180, false}, // a late provisional does not reopen it
	} {
		if step.status > 0 {
			p.answered("b", "INVITE", step.status, t0)
		}
		if be, ringing := p.lookup("b"); be != 1 || ringing != step.ringing {
			t.Errorf("after %d: backend %d ringing %v, want 1 %v", step.status, be, ringing, step.ringing)
		}
	}
	if be, _ := p.lookup("other"); be != -1 {
		t.Errorf("unknown branch: backend %d", be)
	}
}
