package dispatch

import (
	"slices"
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

// TestPendingResponse: what the table makes of a backend's answers to an
// initial INVITE that may fail over.
func TestPendingResponse(t *testing.T) {
	t0 := time.Unix(1000, 0)
	pickOne := func(string, func(int) bool) int { return 1 }
	pickNone := func(string, func(int) bool) int { return -1 }
	tests := []struct {
		name     string
		before   []int // statuses of attempt 0 first
		cancel   bool
		max      int
		n        int // attempt the answer is for
		status   int
		pick     pickFunc
		verdict  verdict
		failed   int
		attempts int // e.attempt after
	}{
		{"503 fails over", nil, false, 3, 0, 503, pickOne, failover, 0, 1},
		{"500 fails over", []int{100}, false, 3, 0, 500, pickOne, failover, 0, 1},
		{"503 with none left", nil, false, 3, 0, 503, pickNone, forward, 0, 0},
		{"503 at the limit", nil, false, 1, 0, 503, pickOne, forward, 0, 0},
		{"503 after cancel", nil, true, 3, 0, 503, pickOne, forward, 0, 0},
		{"503 after 180", []int{180}, false, 3, 0, 503, pickOne, forward, -1, 0},
		{"486", nil, false, 3, 0, 486, pickOne, forward, -1, 0},
		{"408", nil, false, 3, 0, 408, pickOne, forward, -1, 0},
		{"200", nil, false, 3, 0, 200, pickOne, forward, -1, 0},
		{"stale 180", nil, false, 3, 5, 180, pickOne, drop, -1, 0},
		{"stale 503", nil, false, 3, 5, 503, pickOne, ackDrop, -1, 0},
		{"stale 200", nil, false, 3, 5, 200, pickOne, forward, -1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPending()
			p.add("b", 0, "INVITE", t0, &retry{raw: []byte("x"), key: "k", tried: []int{0}, max: tc.max})
			for _, st := range tc.before {
				p.response("b", 0, "INVITE", st, t0, tc.pick)
			}
			if tc.cancel {
				p.find("b", true)
			}
			o := p.response("b", tc.n, "INVITE", tc.status, t0, tc.pick)
			if o.verdict != tc.verdict || o.failed != tc.failed {
				t.Errorf("verdict %d failed %d, want %d %d", o.verdict, o.failed, tc.verdict, tc.failed)
			}
			f := p.find("b", false)
			if f.branch != attemptBranch("b", tc.attempts) {
				t.Errorf("branch now %q, want attempt %d", f.branch, tc.attempts)
			}
			if o.verdict == failover && (o.next.backend != 1 || o.next.branch != "b.1" || string(o.next.raw) != "x" || f.backend != 1) {
				t.Errorf("failover to %+v, table says backend %d", o.next, f.backend)
			}
		})
	}
}

// TestPendingSweepRetry: an unanswered initial INVITE is repeated on
// Timer A's schedule, moves on at the timeout, and is given up (the
// dispatcher's own 503) when no backend is left.
func TestPendingSweepRetry(t *testing.T) {
	t0 := time.Unix(1000, 0)
	raw := []byte("INVITE sip:200@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.100:5060;branch=z9hG4bK-d-x\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.50:5062;branch=z9hG4bKc;rport=5062\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:200@y>\r\n" +
		"Call-ID: sweep\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	p := newPending()
	p.add("b", 0, "INVITE", t0, &retry{raw: raw, key: "k", tried: []int{0}, max: 2})
	left := []int{1}
	pick := func(_ string, ok func(int) bool) int {
		for _, i := range left {
			if ok(i) {
				return i
			}
		}
		return -1
	}
	var repeats []time.Duration
	for ms := 100; ms <= 4000; ms += 100 {
		at := time.Duration(ms) * time.Millisecond
		if r := p.sweep(t0.Add(at), 4*time.Second, pick); len(r.repeat) > 0 {
			repeats = append(repeats, at)
		}
	}
	want := []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond, 3500 * time.Millisecond}
	if !slices.Equal(repeats, want) {
		t.Errorf("repeated at %v, want %v", repeats, want)
	}
	r := p.sweep(t0.Add(4100*time.Millisecond), 4*time.Second, pick)
	if len(r.timedOut) != 1 || len(r.moved) != 1 || r.moved[0].backend != 1 || r.moved[0].branch != "b.1" {
		t.Fatalf("at the timeout: %+v", r)
	}
	r = p.sweep(t0.Add(8200*time.Millisecond), 4*time.Second, pick)
	if len(r.gaveUp) != 1 || r.gaveUp[0].res.StatusCode != 503 || r.gaveUp[0].res.Via().Host != "10.0.0.50" {
		t.Fatalf("with no backend left: %+v", r)
	}
	if f := p.find("b", false); f.local == nil {
		t.Error("the dispatcher's own answer is not kept for the ACK and retransmissions")
	}
	if r := p.sweep(t0.Add(9*time.Second), 4*time.Second, pick); len(r.timedOut) != 0 {
		t.Errorf("a given-up INVITE timed out again: %+v", r)
	}
}

// backend returns the backend of branch, or -1.
func (p *pending) backend(branch string) int {
	return p.find(branch, false).backend
}

// lookup returns the backend of branch (-1: none) and whether it has
// answered the request only provisionally so far.
func (p *pending) lookup(branch string) (backend int, provisional bool) {
	f := p.find(branch, false)
	return f.backend, f.provisional
}

// answered records a response to branch's request (method from CSeq) from
// its current backend.
func (p *pending) answered(branch, method string, status int, now time.Time) {
	p.response(branch, 0, method, status, now, nil)
}
