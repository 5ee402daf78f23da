package dispatch

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestNonInviteFailover: a request outside a dialog other than INVITE
// goes on to the next backend when the one it was sent to refuses it with
// 503 or 500 or leaves it unanswered for tx_timeout, never after another
// final answer; the phone sees one final answer, nothing is ACKed, and a
// method the dispatcher Record-Routes carries the entry of the backend
// that took it.
func TestNonInviteFailover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method sip.RequestMethod
		// first and second are the backends' answers (0: 200; -1:
		// none).
		first, second int
		attempts      int
		want          int  // the phone's final answer
		moved         bool // the second backend got the request
	}{
		{name: "REGISTER 503", method: sip.REGISTER, first: 503, want: 200, moved: true},
		{name: "REGISTER 500", method: sip.REGISTER, first: 500, want: 200, moved: true},
		{name: "REGISTER silent", method: sip.REGISTER, first: -1, want: 200, moved: true},
		{name: "MESSAGE 503", method: sip.MESSAGE, first: 503, want: 200, moved: true},
		{name: "OPTIONS silent", method: sip.OPTIONS, first: -1, want: 200, moved: true},
		{name: "SUBSCRIBE 503", method: sip.SUBSCRIBE, first: 503, want: 200, moved: true},
		{name: "REGISTER 403 stays", method: sip.REGISTER, first: 403, want: 403},
		{name: "MESSAGE 404 stays", method: sip.MESSAGE, first: 404, want: 404},
		{name: "SUBSCRIBE 489 stays", method: sip.SUBSCRIBE, first: 489, want: 489},
		{name: "REGISTER 502 stays", method: sip.REGISTER, first: 502, want: 502},
		{name: "both refuse", method: sip.REGISTER, first: 503, second: 500, want: 500, moved: true},
		{name: "both silent", method: sip.REGISTER, first: -1, second: -1, want: 503, moved: true},
		{name: "attempts 1", method: sip.REGISTER, first: 503, attempts: 1, want: 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := []*fakeBackend{newFakeBackend(t), newFakeBackend(t)}
			for i, st := range []int{tc.first, tc.second} {
				switch {
				case st < 0:
					bs[i].dropOthers.Store(true)
				case st > 0:
					bs[i].otherStatus.Store(int32(st))
				}
			}
			_, at := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour, TxTimeout: 300 * time.Millisecond, Attempts: tc.attempts}, bs...)
			ph := newPhone(t)
			c := &call{id: "other-" + strings.ReplaceAll(tc.name, " ", "-")}
			raw := ph.request(at, c, tc.method, "o"+c.id, "Expires: 300", "Event: message-summary")
			ph.send(at, raw)
			res := ph.final(c.id, tc.method)
			if res.StatusCode != tc.want {
				t.Fatalf("the phone got %d %s, want %d", res.StatusCode, res.Reason, tc.want)
			}
			if bs[0].last(tc.method, c.id) == nil {
				t.Fatal("round robin did not send it to the first backend")
			}
			second := bs[1].last(tc.method, c.id)
			if (second != nil) != tc.moved {
				t.Fatalf("the second backend got it: %v, want %v", second != nil, tc.moved)
			}
			if second != nil {
				rr := routes(second)
				switch {
				case recordRoutes(tc.method) && (len(rr) != 1 || !strings.Contains(rr[0], routeParam+"="+backendTag(bs[1].addr.String()))):
					t.Errorf("Record-Route at the second backend %q, want its own entry", rr)
				case !recordRoutes(tc.method) && len(rr) != 0:
					t.Errorf("Record-Route at the second backend %q, want none", rr)
				}
				if n := len(second.GetHeaders("Via")); n != 2 {
					t.Errorf("%d Via at the second backend, want the dispatcher's and the phone's", n)
				}
			}
			for i, b := range bs {
				if b.last(sip.ACK, c.id) != nil {
					t.Errorf("backend %d got an ACK for a %s", i, tc.method)
				}
			}
			// No other final answer follows the one the phone took (a
			// refusal absorbed, the dispatcher's own 503).
			for _, r := range ph.drain(200 * time.Millisecond) {
				if r.StatusCode >= 200 && r.CallID().Value() == c.id {
					t.Errorf("a second final answer %d after %d", r.StatusCode, res.StatusCode)
				}
			}
			if tc.want == 503 && tc.second < 0 {
				// The phone repeats its request: it gets the same
				// answer again, and no backend gets it once more.
				before := len(bs[0].requests(time.Time{})) + len(bs[1].requests(time.Time{}))
				ph.send(at, raw)
				if again := ph.final(c.id, tc.method); again.StatusCode != 503 {
					t.Fatalf("the repeated request got %d", again.StatusCode)
				}
				if after := len(bs[0].requests(time.Time{})) + len(bs[1].requests(time.Time{})); after != before {
					t.Errorf("the repeated request reached a backend (%d requests, were %d)", after, before)
				}
			}
		})
	}
}

// TestNonInviteRetransmission: a phone repeating a REGISTER its first
// backend refused with 503 reaches the backend that took it, with the
// branch of that attempt, and gets that backend's answer.
func TestNonInviteRetransmission(t *testing.T) {
	bs := []*fakeBackend{newFakeBackend(t), newFakeBackend(t)}
	bs[0].otherStatus.Store(503)
	_, at := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour}, bs...)
	ph := newPhone(t)
	c := &call{id: "reg-retrans"}
	raw := ph.request(at, c, sip.REGISTER, "r1", "Expires: 300")
	ph.send(at, raw)
	if res := ph.final(c.id, sip.REGISTER); res.StatusCode != 200 {
		t.Fatalf("REGISTER: %d", res.StatusCode)
	}
	ph.send(at, raw)
	if res := ph.final(c.id, sip.REGISTER); res.StatusCode != 200 {
		t.Fatalf("the repeated REGISTER: %d", res.StatusCode)
	}
	got := bs[1].requests(time.Time{})
	if len(got) != 2 {
		t.Fatalf("the second backend got %v, want the REGISTER twice", got)
	}
	if n := len(bs[0].requests(time.Time{})); n != 1 {
		t.Fatalf("the refusing backend got the REGISTER %d times, want once", n)
	}
	b1, _ := bs[1].got[0].Via().Params.Get("branch")
	b2, _ := bs[1].got[1].Via().Params.Get("branch")
	if b1 != b2 || !strings.HasSuffix(b1, ".1") {
		t.Fatalf("branches %q and %q at the second backend, want the second attempt's twice", b1, b2)
	}
}

// TestNonInviteLateAnswer: a backend that answers a MESSAGE only after
// the dispatcher sent it on has its late answer dropped (a 2xx only while
// the phone has none): the phone gets exactly one final answer.
func TestNonInviteLateAnswer(t *testing.T) {
	p := newPending()
	t0 := time.Now()
	rt := &retry{raw: []byte("x"), key: "k", tried: []int{0}, max: 3}
	p.add("b", 0, "MESSAGE", t0, rt)
	pick := func(string, func(int) bool) int { return 1 }
	if o := p.response("b", 0, "MESSAGE", 503, t0, pick); o.verdict != resend || o.next.backend != 1 || o.failed != 0 {
		t.Fatalf("503: %+v, want resend to backend 1", o)
	}
	for _, tc := range []struct {
		attempt, status int
		want            verdict
	}{
		{0, 100, drop},    // the old backend's provisional answer
		{0, 500, drop},    // its error: nothing to ACK
		{1, 100, forward}, // the new backend's
		{0, 200, forward}, // the old backend's 200 while the phone has no final: passes
		{1, 200, drop},    // the new one's 200 after it: the phone has one
		{0, 200, forward}, // that backend repeating its 200: passes again
		{1, 503, drop},    // too late to move on
	} {
		o := p.response("b", tc.attempt, "MESSAGE", tc.status, t0, pick)
		if o.verdict != tc.want {
			t.Errorf("attempt %d answering %d: verdict %d, want %d", tc.attempt, tc.status, o.verdict, tc.want)
		}
	}
	// The entry lingers for retransmissions, then goes.
	if f := p.find("b", false); f.backend != 1 {
		t.Fatalf("after the final answer: %+v", f)
	}
	p.sweep(t0.Add(lingerAfterFinal+time.Second), time.Second, nil)
	if f := p.find("b", false); f.backend != -1 {
		t.Fatalf("the entry outlived its linger: %+v", f)
	}
}

// TestNonInviteRepeatedForStreamPhone: a REGISTER from a phone over TCP,
// which the phone sends once, lost on the way to a UDP backend, is repeated
// by the dispatcher (as RFC 3261's timer E would): the phone gets its 200,
// and the backend stays up. A phone over UDP repeats its own.
func TestNonInviteRepeatedForStreamPhone(t *testing.T) {
	be := newFakeBackend(t)
	be.loseOthers.Store(1)
	d, addrs := startDispatcherAll(t, streamConfig(), be)
	p := dialPhone(t, "", strings.TrimPrefix(addrs[1], "tcp:"))
	p.send(p.request("REGISTER", "sip:example.com", "tcpreg", 1, "", nil, "Expires: 300"))
	if res, ok := p.next().(*sip.Response); !ok || res.StatusCode != 200 {
		t.Fatalf("REGISTER: %v", res)
	}
	if got := be.requests(time.Time{}); len(got) != 1 {
		t.Fatalf("the backend got %v, want the repeated REGISTER once", got)
	}
	if !d.Status().Backends[0].Up {
		t.Error("the backend was marked down for a lost REGISTER")
	}
}
