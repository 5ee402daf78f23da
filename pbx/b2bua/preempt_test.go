package b2bua

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/cdr"
)

// TestVictims: the call cleared for an emergency call is an ordinary one
// over the trunk, a ringing one before any answered one (the most recent
// first), else the one answered last; never an emergency call.
func TestVictims(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 1, 1, 12, 0, s, 0, time.UTC) }
	out := func(id, state string, start, answer int, emergency bool) CallState {
		st := CallState{ID: id, State: state, Start: at(start), Emergency: emergency, Trunk: "isdn",
			Legs: [2]*LegState{{Number: "100"}, {Number: "301234"}}}
		if state != StateRinging {
			st.Answer = at(answer)
			st.Legs[LegB].Trunk = "isdn"
		}
		return st
	}
	in := CallState{ID: "in", State: StateAnswered, Start: at(1), Answer: at(9), Trunk: "isdn",
		Legs: [2]*LegState{{Number: "4930555", Trunk: "isdn"}, {Number: "200"}}}
	local := CallState{ID: "local", State: StateAnswered, Start: at(1), Answer: at(30),
		Legs: [2]*LegState{{Number: "100"}, {Number: "200"}}}
	other := out("other", StateAnswered, 1, 40, false)
	other.Trunk, other.Legs[LegB].Trunk = "sip", "sip"
	for _, tc := range []struct {
		name  string
		calls []CallState
		want  string // the calls in the order they are cleared
	}{
		{"no call", nil, ""},
		{"one ordinary call", []CallState{out("a", StateAnswered, 1, 2, false)}, "a"},
		{"the one answered last", []CallState{out("a", StateAnswered, 1, 5, false), out("b", StateAnswered, 2, 7, false), out("c", StateAnswered, 3, 6, false)}, "b,c,a"},
		{"ringing before answered", []CallState{out("a", StateAnswered, 1, 20, false), out("r", StateRinging, 2, 0, false)}, "r,a"},
		{"the most recent ringing", []CallState{out("r1", StateRinging, 5, 0, false), out("r2", StateRinging, 8, 0, false), out("a", StateAnswered, 1, 9, false)}, "r2,r1,a"},
		{"every call an emergency call", []CallState{out("e1", StateAnswered, 1, 2, true), out("e2", StateRinging, 3, 0, true)}, ""},
		{"emergency calls skipped", []CallState{out("e1", StateAnswered, 1, 9, true), out("a", StateAnswered, 1, 2, false)}, "a"},
		{"an inbound call", []CallState{in, out("e", StateAnswered, 1, 20, true)}, "in"},
		{"not a call between extensions nor over another trunk", []CallState{local, other}, ""},
		{"an ended call", []CallState{out("x", StateEnded, 1, 2, false)}, ""},
		{"transferring counts as answered", []CallState{out("t", StateTransferring, 1, 3, false), out("a", StateAnswered, 1, 2, false)}, "t,a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ids []string
			for _, i := range victims(tc.calls, "isdn") {
				ids = append(ids, tc.calls[i].ID)
			}
			if got := strings.Join(ids, ","); got != tc.want {
				t.Errorf("victims = %q, want %q", got, tc.want)
			}
		})
	}
}

// withPreemptWait sets Options.PreemptWait.
func withPreemptWait(d time.Duration) envOpt {
	return func(o *Options) { o.PreemptWait = d }
}

// onBRI is an env whose one trunk, "isdn", is a BRI (two channels) that
// ends at a phone of its own (the line: number, answering every call),
// preemption waiting up to wait for a freed channel.
func onBRI(t *testing.T, number string, wait time.Duration) (*env, *phone) {
	t.Helper()
	line := newPhone(t, newEnv(t), number, "answer")
	e := newEnv(t, withPreemptWait(wait),
		withTrunks(t, config.TrunkLine{Name: "isdn", Type: config.LineISDN, Host: line.addr, Channels: 2}))
	return e, line
}

// TestPreemption: an emergency call that finds both channels of an isdn
// line busy clears an ordinary call (BYE, or 503 and CANCEL while it
// rings, with the preemption Reason to the phone and Q.850 cause 8 to the
// line; its CDR says so) and goes out on the freed channel. Emergency calls are never
// cleared, and a channel that does not come free in time leaves the
// emergency call with today's 503.
func TestPreemption(t *testing.T) {
	const phoneReason = `preemption ;cause=1 ;text="UA preemption"`
	const lineReason = `Q.850;cause=8;text="preemption"`
	for _, tc := range []struct {
		name string
		// first and second are the calls up before the emergency call:
		// "answer", "ring" (ordinary, the second still ringing) or
		// "112" (an emergency call); "" for none.
		first, second string
		// held channels are counted on the trunk besides the calls.
		held int
		code int    // the emergency call's answer
		gone string // whose call is cleared: "alice", "bob" or ""
	}{
		{"free channel", "answer", "", 0, 200, ""},
		{"the ordinary call answered last cleared", "answer", "answer", 0, 200, "bob"},
		{"a ringing call cleared first", "answer", "ring", 0, 200, "bob"},
		{"an emergency call is never cleared", "112", "answer", 0, 200, "bob"},
		{"every call an emergency call", "112", "112", 0, 503, ""},
		{"channel not freed in time", "answer", "", 2, 503, "alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Generous for a channel that comes free (a loaded machine),
			// short for the one that cannot.
			wait := 20 * time.Second
			if tc.held > 0 {
				wait = 500 * time.Millisecond
			}
			e, prov := onBRI(t, "gw", wait)
			alice := newPhone(t, e, "100", "answer")
			bob := newPhone(t, e, "200", "answer")
			carol := newPhone(t, e, "300", "answer")
			number := func(kind string) string {
				if kind == "112" {
					return "112"
				}
				return "0301234"
			}
			calls := 0
			if tc.first != "" {
				if res := alice.dial(number(tc.first), nil).result(); res.StatusCode != 200 {
					t.Fatalf("alice's call answered %d", res.StatusCode)
				}
				calls++
			}
			var bobCall *outCall
			if tc.second != "" {
				prov.mu.Lock()
				prov.mode = map[bool]string{true: "ring", false: "answer"}[tc.second == "ring"]
				prov.mu.Unlock()
				bobCall = bob.dial(number(tc.second), nil)
				if tc.second == "ring" {
					bobCall.waitProvisional(180)
				} else if res := bobCall.result(); res.StatusCode != 200 {
					t.Fatalf("bob's call answered %d", res.StatusCode)
				}
				calls++
				prov.mu.Lock()
				prov.mode = "answer"
				prov.mu.Unlock()
			}
			isdn, _ := e.b.o.Trunks.Trunk("isdn")
			for range tc.held {
				isdn.Hold()
			}
			waitInUse(t, e, "isdn", calls+tc.held)

			res := carol.dial("112", nil).result()
			if res.StatusCode != tc.code {
				t.Fatalf("emergency call answered %d, want %d", res.StatusCode, tc.code)
			}
			if tc.code == 503 {
				if h := res.GetHeader("Reason"); h == nil || h.Value() != `Q.850;cause=34;text="no circuit/channel available"` {
					t.Errorf("503 without cause 34: %v", h)
				}
			}
			victims := map[string]*phone{"alice": alice, "bob": bob}
			for name, p := range victims {
				if name == tc.gone {
					continue
				}
				if n := p.count(sip.BYE); n != 0 {
					t.Errorf("%s got %d BYEs, want none", name, n)
				}
			}
			switch {
			case tc.gone == "bob" && tc.second == "ring":
				r := bobCall.result()
				if r.StatusCode != 503 || r.GetHeader("Reason") == nil || r.GetHeader("Reason").Value() != phoneReason {
					t.Errorf("ringing call ended with %d, Reason %v; want 503 with %s", r.StatusCode, r.GetHeader("Reason"), phoneReason)
				}
				if h := prov.wait(sip.CANCEL, 1).GetHeader("Reason"); h == nil || h.Value() != lineReason {
					t.Errorf("the line's CANCEL has Reason %v, want %s", h, lineReason)
				}
			case tc.gone != "":
				bye := victims[tc.gone].wait(sip.BYE, 1)
				if h := bye.GetHeader("Reason"); h == nil || h.Value() != phoneReason {
					t.Errorf("%s's BYE has Reason %v, want %s", tc.gone, h, phoneReason)
				}
				line := prov.wait(sip.BYE, 1)
				if h := line.GetHeader("Reason"); h == nil || h.Value() != lineReason {
					t.Errorf("the line's BYE has Reason %v, want %s", h, lineReason)
				}
			}
			if tc.gone != "" {
				caller := map[string]string{"alice": "100", "bob": "200"}[tc.gone]
				var rec *cdr.Record
				eventually(t, "the cleared call's CDR", func() bool {
					for _, r := range e.cdrs.snapshot() {
						if r.Caller == caller {
							rec = &r
							return true
						}
					}
					return false
				})
				want := cdr.Answered
				if tc.second == "ring" {
					want = cdr.Failed
				}
				if rec.Disp != want || rec.HangupBy != ByPreemption || rec.Trunk != "isdn" {
					t.Errorf("cleared call's CDR %+v, want %s by %s", *rec, want, ByPreemption)
				}
			} else if n := len(e.cdrs.snapshot()); tc.code == 200 && n != 0 {
				t.Errorf("%d CDRs written, want none: no call was cleared", n)
			}
			wantInvites := calls + 1
			if tc.code == 503 {
				wantInvites = calls
			}
			if n := prov.count(sip.INVITE); n != wantInvites {
				t.Errorf("the line got %d INVITEs, want %d", n, wantInvites)
			}
		})
	}
}

// snapshot returns the CDRs written so far.
func (f *fakeCDR) snapshot() []cdr.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]cdr.Record(nil), f.recs...)
}

// TestPreemptionInbound: a call from the line still ringing an extension
// is the one cleared for an emergency call: the line gets 503 with Q.850
// cause 8, the extension a CANCEL with the preemption Reason, the
// answered outbound call stays up.
func TestPreemptionInbound(t *testing.T) {
	e, gw := onBRI(t, "4930555", 20*time.Second)
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "ring")
	e.loc.add("200", bob)
	carol := newPhone(t, e, "300", "answer")
	if res := alice.dial("0301234", nil).result(); res.StatusCode != 200 {
		t.Fatalf("alice's call answered %d", res.StatusCode)
	}
	gw.pbx = e.addr
	in := gw.dial("201", nil)
	in.waitProvisional(180)
	waitInUse(t, e, "isdn", 2)

	if res := carol.dial("112", nil).result(); res.StatusCode != 200 {
		t.Fatalf("emergency call answered %d, want 200", res.StatusCode)
	}
	res := in.result()
	if h := res.GetHeader("Reason"); res.StatusCode != 503 || h == nil || h.Value() != `Q.850;cause=8;text="preemption"` {
		t.Errorf("the line's call ended with %d, Reason %v; want 503 with cause 8", res.StatusCode, h)
	}
	if h := bob.wait(sip.CANCEL, 1).GetHeader("Reason"); h == nil || h.Value() != `preemption ;cause=1 ;text="UA preemption"` {
		t.Errorf("the phone's CANCEL has Reason %v, want the preemption Reason", h)
	}
	if n := alice.count(sip.BYE); n != 0 {
		t.Errorf("alice got %d BYEs, want none", n)
	}
	r := e.cdrs.wait(t, 1)[0]
	if r.Disp != cdr.Failed || r.SIPCode != 503 || r.HangupBy != ByPreemption || r.Trunk != "isdn" || r.Callee != "200" {
		t.Errorf("cleared call's CDR %+v", r)
	}
}

// TestPreemptionTwoAtOnce: two emergency calls at once on a line whose
// two channels carry ordinary calls clear both, one each, and both go
// out.
func TestPreemptionTwoAtOnce(t *testing.T) {
	e, _ := onBRI(t, "gw", 20*time.Second)
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "answer")
	carol := newPhone(t, e, "300", "answer")
	dave := newPhone(t, e, "400", "answer")
	for _, p := range []*phone{alice, bob} {
		if res := p.dial("0301234", nil).result(); res.StatusCode != 200 {
			t.Fatalf("%s's call answered %d", p.number, res.StatusCode)
		}
	}
	calls := []*outCall{carol.dial("112", nil), dave.dial("112", nil)}
	for i, oc := range calls {
		if res := oc.result(); res.StatusCode != 200 {
			t.Errorf("emergency call %d answered %d, want 200", i+1, res.StatusCode)
		}
	}
	for _, p := range []*phone{alice, bob} {
		if h := p.wait(sip.BYE, 1).GetHeader("Reason"); h == nil {
			t.Errorf("%s's BYE has no Reason", p.number)
		}
	}
	waitInUse(t, e, "isdn", 2)
}
