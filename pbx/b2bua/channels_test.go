package b2bua

import (
	"strconv"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/sipreason"
)

// inUse returns the channels in use of trunk name.
func inUse(t *testing.T, e *env, name string) int {
	t.Helper()
	tr, ok := e.b.o.Trunks.Trunk(name)
	if !ok {
		t.Fatalf("no trunk %s", name)
	}
	return tr.InUse()
}

// waitInUse waits until trunk name has n channels in use.
func waitInUse(t *testing.T, e *env, name string, n int) {
	t.Helper()
	tr, _ := e.b.o.Trunks.Trunk(name)
	eventually(t, "channels in use of "+name, func() bool { return tr.InUse() == n })
}

// TestTrunkChannelsOutbound: a call that finds every channel of the first
// trunk in use goes out over the next trunk without the first one seeing
// an INVITE; with no trunk left the caller gets 503 with Q.850 cause 34.
// An emergency call is not stopped by a sip trunk's limit.
func TestTrunkChannelsOutbound(t *testing.T) {
	for _, tc := range []struct {
		name       string
		second     bool   // a second trunk in the route
		number     string // the second call's number
		code       int    // its answer
		trunk      string // the trunk its CDR names
		firstInvs  int    // INVITEs the first trunk's peer gets in all
		secondInvs int
	}{
		{"busy trunk skipped", true, "0301234", 200, "second", 1, 1},
		{"every trunk busy", false, "0301234", 503, "first", 1, 0},
		{"emergency passes a sip trunk's limit", false, "112", 200, "first", 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := newEnv(t)
			first := newPhone(t, tmp, "first", "answer")
			lines := []config.TrunkLine{{Name: "first", Host: first.addr, Channels: 1}}
			var second *phone
			if tc.second {
				second = newPhone(t, tmp, "second", "answer")
				lines = append(lines, config.TrunkLine{Name: "second", Host: second.addr})
			}
			e := newEnv(t, withTrunks(t, lines...))
			alice := newPhone(t, e, "100", "answer")
			bob := newPhone(t, e, "200", "answer")
			if res := alice.dial("0301234", nil).result(); res.StatusCode != 200 {
				t.Fatalf("first call answered %d", res.StatusCode)
			}
			if n := inUse(t, e, "first"); n != 1 {
				t.Fatalf("first trunk has %d channels in use, want 1", n)
			}
			res := bob.dial(tc.number, nil).result()
			if res.StatusCode != tc.code {
				t.Fatalf("second call answered %d, want %d", res.StatusCode, tc.code)
			}
			if tc.code == 503 {
				if h := res.GetHeader("Reason"); h == nil || h.Value() != `Q.850;cause=34;text="no circuit/channel available"` {
					t.Errorf("503 without the Reason of cause 34: %v", res.GetHeader("Reason"))
				}
				r := e.cdrs.wait(t, 1)[0]
				if r.Disp != cdr.Failed || r.SIPCode != 503 || r.Trunk != tc.trunk || r.Caller != "200" {
					t.Errorf("refused call's CDR %+v", r)
				}
			} else {
				cs := e.b.Calls()
				if len(cs) != 2 || cs[1].Trunk != tc.trunk {
					t.Errorf("calls %+v, want the second over %s", cs, tc.trunk)
				}
			}
			if n := first.count(sip.INVITE); n != tc.firstInvs {
				t.Errorf("first trunk got %d INVITEs, want %d", n, tc.firstInvs)
			}
			if second != nil && second.count(sip.INVITE) != tc.secondInvs {
				t.Errorf("second trunk got %d INVITEs, want %d", second.count(sip.INVITE), tc.secondInvs)
			}
			// Every call ends; every channel comes back.
			alice.request(sip.BYE, nil)
			if tc.code == 200 {
				bob.request(sip.BYE, nil)
			}
			for _, l := range lines {
				waitInUse(t, e, l.Name, 0)
			}
		})
	}
}

// TestTrunkChannelsCounted: a channel is taken while a call rings or
// talks and given back however the call ends: BYE from either side,
// CANCEL, a refusal, a trunk that fails.
func TestTrunkChannelsCounted(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode string // the trunk peer's answer
		end  func(t *testing.T, e *env, alice, prov *phone, oc *outCall)
	}{
		{"caller hangs up", "answer", func(t *testing.T, e *env, alice, _ *phone, oc *outCall) {
			oc.result()
			alice.request(sip.BYE, nil)
		}},
		{"trunk hangs up", "answer", func(t *testing.T, e *env, alice, prov *phone, oc *outCall) {
			oc.result()
			prov.request(sip.BYE, nil)
			alice.wait(sip.BYE, 1)
		}},
		{"caller cancels", "ring", func(t *testing.T, e *env, _, _ *phone, oc *outCall) {
			oc.waitProvisional(180)
			oc.cancel()
			oc.result()
		}},
		{"the PBX stops while it rings", "ring", func(t *testing.T, e *env, _, _ *phone, oc *outCall) {
			oc.waitProvisional(180)
			e.hangupAll()
			if res := oc.result(); res.StatusCode != 503 {
				t.Errorf("answered %d, want 503", res.StatusCode)
			}
		}},
		{"the PBX stops during the call", "answer", func(t *testing.T, e *env, alice, _ *phone, oc *outCall) {
			oc.result()
			e.hangupAll()
			alice.wait(sip.BYE, 1)
		}},
		{"trunk refuses", "486", func(t *testing.T, e *env, _, _ *phone, oc *outCall) {
			if res := oc.result(); res.StatusCode != 486 {
				t.Errorf("answered %d, want 486", res.StatusCode)
			}
		}},
		{"trunk fails", "500", func(t *testing.T, e *env, _, _ *phone, oc *outCall) {
			if res := oc.result(); res.StatusCode != 500 {
				t.Errorf("answered %d, want 500", res.StatusCode)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := newEnv(t)
			prov := newPhone(t, tmp, "prov", tc.mode)
			e := newEnv(t, withTrunks(t, config.TrunkLine{Name: "prov", Host: prov.addr, Channels: 1}))
			alice := newPhone(t, e, "100", "answer")
			oc := alice.dial("0301234", nil)
			if tc.mode == "ring" || tc.mode == "answer" {
				waitInUse(t, e, "prov", 1)
			}
			tc.end(t, e, alice, prov, oc)
			e.cdrs.wait(t, 1)
			waitInUse(t, e, "prov", 0)
		})
	}
}

// TestTrunkChannelsInbound: an inbound call beyond the trunk's channels
// gets 503; one refused for a busy extension takes no channel; the
// channels come back when the calls end.
func TestTrunkChannelsInbound(t *testing.T) {
	tmp := newEnv(t)
	gw := newPhone(t, tmp, "4930555", "answer")
	e := newEnv(t, withTrunks(t, config.TrunkLine{Name: "isdn", Type: config.LineISDN, Host: gw.addr, Channels: 2,
		DIDs: []config.DID{{Number: "202", Extension: "300"}, {Number: "203", Extension: "400"}}}))
	bob := newPhone(t, e, "200", "answer")
	e.loc.add("200", bob)
	carol := newPhone(t, e, "300", "answer")
	e.loc.add("300", carol)
	dave := newPhone(t, e, "400", "answer")
	e.loc.add("400", dave)
	gw.pbx = e.addr
	for i, step := range []struct {
		number string
		code   int
		inUse  int
	}{
		{"201", 200, 1}, // Bob answers
		{"201", 486, 1}, // Bob is busy: no channel taken
		{"202", 200, 2}, // Carol answers
		{"203", 503, 2}, // the line is full: Dave does not ring
	} {
		res := gw.dial(step.number, nil).result()
		if res.StatusCode != step.code {
			t.Fatalf("call %d to %s answered %d, want %d", i+1, step.number, res.StatusCode, step.code)
		}
		if step.code == 503 {
			if h := res.GetHeader("Reason"); h == nil || h.Value() != `Q.850;cause=34;text="no circuit/channel available"` {
				t.Errorf("503 with Reason %v, want cause 34", h)
			}
		}
		if n := inUse(t, e, "isdn"); n != step.inUse {
			t.Errorf("after call %d: %d channels in use, want %d", i+1, n, step.inUse)
		}
	}
	if n := dave.count(sip.INVITE); n != 0 {
		t.Errorf("Dave was rung %d times, want 0", n)
	}
	recs := e.cdrs.wait(t, 2)
	if r := recs[len(recs)-1]; r.SIPCode != 503 || r.Trunk != "isdn" || r.Disp != cdr.Failed {
		t.Errorf("refused call's CDR %+v", r)
	}
	bob.request(sip.BYE, nil)
	carol.request(sip.BYE, nil)
	waitInUse(t, e, "isdn", 0)
}

// TestTrunkLineFull: a trunk that answers 503 with Q.850 cause 34 (an
// ISDN line with no free B channel) sends the call on to the next trunk
// without marking its server dead.
func TestTrunkLineFull(t *testing.T) {
	tmp := newEnv(t)
	gw := newPhone(t, tmp, "gw", "noline")
	second := newPhone(t, tmp, "second", "answer")
	e := newEnv(t, withTrunks(t,
		config.TrunkLine{Name: "isdn", Type: config.LineISDN, Host: gw.addr},
		config.TrunkLine{Name: "second", Host: second.addr}))
	alice := newPhone(t, e, "100", "answer")
	if res := alice.dial("0301234", nil).result(); res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	}
	if second.count(sip.INVITE) != 1 {
		t.Error("the second trunk did not get the call")
	}
	isdn, _ := e.b.o.Trunks.Trunk("isdn")
	for _, s := range e.b.o.Trunks.Status() {
		if len(s.Dead) > 0 {
			t.Errorf("trunk %s has dead targets %v after a full line", s.Name, s.Dead)
		}
	}
	if isdn.InUse() != 0 {
		t.Errorf("the full trunk keeps %d channels", isdn.InUse())
	}
	// With no other trunk the caller hears "all circuits busy".
	e2 := newEnv(t, withTrunks(t, config.TrunkLine{Name: "isdn", Type: config.LineISDN, Host: gw.addr}))
	carol := newPhone(t, e2, "300", "answer")
	res := carol.dial("0301234", nil).result()
	if res.StatusCode != 503 || res.GetHeader("Reason") == nil {
		t.Errorf("answered %d (Reason %v), want 503 with cause 34", res.StatusCode, res.GetHeader("Reason"))
	}
}

// TestTrunkChannelsRestored: calls restored on the twin count against
// their trunk's channels, even beyond the limit, and give them back when
// they end; a box that abandons its calls forgets its channels.
func TestTrunkChannelsRestored(t *testing.T) {
	store := &memCalls{}
	tmp := newEnv(t)
	prov := newPhone(t, tmp, "prov", "answer")
	line := config.TrunkLine{Name: "prov", Type: config.LineISDN, Host: prov.addr, Channels: 1}
	box1 := newEnv(t, withCalls(store), withTrunks(t, line))
	alice := newPhone(t, box1, "100", "answer")
	oc := alice.dial("0301234", nil)
	if res := oc.result(); res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	}
	store.waitSaved(t, oc.d.CallID)
	box1.crash()
	if n := inUse(t, box1, "prov"); n != 0 {
		t.Errorf("the box that abandoned its calls keeps %d channels", n)
	}

	box2 := newEnvAt(t, box1.addr, withCalls(store), withTrunks(t, line))
	if n := restore(t, box2); n != 1 {
		t.Fatalf("Restore = %d calls, want 1", n)
	}
	if n := inUse(t, box2, "prov"); n != 1 {
		t.Fatalf("the twin counts %d channels for the restored call, want 1", n)
	}
	// The trunk is full on the twin too: a new call is refused.
	bob := newPhone(t, box2, "200", "answer")
	if res := bob.dial("0301235", nil).result(); res.StatusCode != 503 {
		t.Errorf("a call beyond the channels answered %d on the twin, want 503", res.StatusCode)
	}
	if res := prov.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("provider's BYE answered %d", res.StatusCode)
	}
	waitInUse(t, box2, "prov", 0)
}

func TestQ850Cause(t *testing.T) {
	for _, tc := range []struct {
		reasons []string
		want    int
	}{
		{nil, 0},
		{[]string{"Q.850;cause=34"}, 34},
		{[]string{`Q.850 ; cause = 34 ;text="no circuit"`}, 34},
		{[]string{"q.850;CAUSE=17"}, 17},
		{[]string{`SIP;cause=200;text="Call completed elsewhere"`, "Q.850;cause=16"}, 16},
		{[]string{"SIP;cause=503"}, 0},
		{[]string{"Q.850;cause=abc"}, 0},
		{[]string{"Q.850;cause=0"}, 0},
		{[]string{"Q.850;cause=128"}, 0},
		{[]string{"Q.850"}, 0},
	} {
		res := sip.NewResponse(503, "Service Unavailable")
		for _, r := range tc.reasons {
			res.AppendHeader(sip.NewHeader("Reason", r))
		}
		if got := sipreason.Q850(res); got != tc.want {
			t.Errorf("sipreason.Q850(%q) = %d, want %d", tc.reasons, got, tc.want)
		}
	}
}

// FuzzQ850Cause: any Reason header gives a cause of 0 or 1..127, and
// the Reason header made of it reads back the same.
func FuzzQ850Cause(f *testing.F) {
	for _, s := range []string{"Q.850;cause=34", `Q.850;cause=16;text="x"`, "SIP;cause=486", ";;;", "Q.850;cause=-1", "Q.850;cause=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		res := sip.NewResponse(503, "Service Unavailable")
		res.AppendHeader(sip.NewHeader("Reason", v))
		n := sipreason.Q850(res)
		if n < 0 || n > 127 {
			t.Fatalf("cause %d from %q", n, v)
		}
		if n == 0 {
			return
		}
		back := sip.NewResponse(503, "Service Unavailable")
		back.AppendHeader(reasonHeader(n))
		if got := sipreason.Q850(back); got != n {
			t.Fatalf("cause %d written as %q reads back as %d", n, reasonHeader(n).Value(), got)
		}
	})
}

// TestTrunkChannelsConcurrent: calls placed at once never take more
// channels than the trunk has; the rest go to the next trunk, and every
// channel comes back.
func TestTrunkChannelsConcurrent(t *testing.T) {
	const calls, limit = 8, 3
	tmp := newEnv(t)
	first := newPhone(t, tmp, "first", "answer")
	second := newPhone(t, tmp, "second", "answer")
	e := newEnv(t, withTrunks(t,
		config.TrunkLine{Name: "first", Host: first.addr, Channels: limit},
		config.TrunkLine{Name: "second", Host: second.addr}))
	alice := newPhone(t, e, "100", "answer")
	var ocs []*outCall
	for i := range calls {
		ocs = append(ocs, alice.dial("030123"+strconv.Itoa(i), nil))
	}
	for i, oc := range ocs {
		if res := oc.result(); res.StatusCode != 200 {
			t.Fatalf("call %d answered %d", i, res.StatusCode)
		}
	}
	if n1, n2 := inUse(t, e, "first"), inUse(t, e, "second"); n1 != limit || n2 != calls-limit {
		t.Errorf("channels in use %d/%d, want %d/%d", n1, n2, limit, calls-limit)
	}
	if n1, n2 := first.count(sip.INVITE), second.count(sip.INVITE); n1 != limit || n2 != calls-limit {
		t.Errorf("INVITEs at the trunks %d/%d, want %d/%d", n1, n2, limit, calls-limit)
	}
	for _, oc := range ocs {
		if res := alice.requestOn(&oc.d, sip.BYE, nil); res.StatusCode != 200 {
			t.Errorf("BYE answered %d", res.StatusCode)
		}
	}
	waitInUse(t, e, "first", 0)
	waitInUse(t, e, "second", 0)
}
