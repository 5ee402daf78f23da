package b2bua

import (
	"context"
	"fmt"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/sipdo"
)

// TestReliableProvisionalFromCallee: the device sends reliable 180 and
// 183 (with early media); the PBX PRACKs each once, passes each on to a
// caller that does not support 100rel once and unreliably, and the call
// is answered.
func TestReliableProvisionalFromCallee(t *testing.T) {
	e := newEnv(t)
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "reliable")
	e.loc.add("200", bob)
	oc := alice.dial("200", nil)
	if res := oc.result(); res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	}
	if inv := bob.wait(sip.INVITE, 1); !hasOption(inv, "Supported", "100rel") {
		t.Errorf("INVITE to the device without Supported: 100rel:\n%s", inv)
	}
	for i, want := range []string{"1 1 INVITE", "2 1 INVITE"} {
		pr := bob.wait(sip.PRACK, i+1)
		if h := pr.GetHeader("RAck"); h == nil || h.Value() != want {
			t.Errorf("PRACK #%d RAck %v, want %q", i+1, h, want)
		}
		if to := pr.To(); to == nil || !to.Params.Has("tag") {
			t.Errorf("PRACK #%d outside the early dialog:\n%s", i+1, pr)
		}
	}
	bob.wait(sip.ACK, 1)
	if n := bob.onWire(sip.PRACK); n != 2 {
		t.Errorf("%d PRACKs sent for 2 reliable responses sent twice each", n)
	}
	got := map[int]int{}
	for len(oc.prov) > 0 {
		res := <-oc.prov
		got[res.StatusCode]++
		if hasOption(res, "Require", "100rel") || res.GetHeader("RSeq") != nil {
			t.Errorf("reliable %d sent to a caller without 100rel", res.StatusCode)
		}
		if res.StatusCode == 183 && !hasLine(res.Body(), "a=relayed-from:B") {
			t.Errorf("183 without the relayed early media: %q", res.Body())
		}
	}
	if got[180] != 1 || got[183] != 1 {
		t.Errorf("caller got provisional responses %v, want one 180 and one 183", got)
	}
	// The device's dialog goes on at the CSeq after the PRACKs.
	if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	if bye := bob.wait(sip.BYE, 1); bye.CSeq().SeqNo <= 3 {
		t.Errorf("BYE to the device has CSeq %d, not above the PRACKs' 2 and 3", bye.CSeq().SeqNo)
	}
	if bob.refused != 0 {
		t.Errorf("the device refused %d requests for their CSeq", bob.refused)
	}
}

// TestCallerRequires100rel: a caller that requires 100rel gets reliable
// provisional responses, repeated until its PRACK, and the 200 only after
// the last one is acknowledged; a PRACK naming another response is
// refused. The device sends reliable 180 and 183 of its own. Over TCP the
// responses are repeated as over UDP (RFC 3262 §3 makes no exception).
func TestCallerRequires100rel(t *testing.T) {
	for _, tr := range []struct {
		name  string
		phone func(*testing.T, *env, string, string) *phone
	}{{"UDP", newPhone}, {"TCP", newTCPPhone}} {
		t.Run(tr.name, func(t *testing.T) {
			testCallerRequires100rel(t, tr.phone)
		})
	}
}

func testCallerRequires100rel(t *testing.T, newCaller func(*testing.T, *env, string, string) *phone) {
	e := newEnv(t)
	alice := newCaller(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "reliable")
	e.loc.add("200", bob)
	oc := alice.dial("200", nil, sip.NewHeader("Require", "100rel"), sip.NewHeader("Supported", "100rel"))
	first := oc.waitProvisional(180)
	rseq, ok := rseqOf(first)
	if !ok {
		t.Fatalf("180 to a caller requiring 100rel is not reliable:\n%s", first)
	}
	// Unacknowledged, it comes again, with the same RSeq, and the 200
	// waits for it.
	again := oc.waitProvisional(180)
	if r, _ := rseqOf(again); r != rseq {
		t.Errorf("repeat has RSeq %d, want %d", r, rseq)
	}
	if len(oc.final) != 0 {
		t.Fatal("final response before the PRACK")
	}
	if code := prack(t, alice, oc, first, rseq+7, 2); code != 481 {
		t.Errorf("PRACK of an unknown RSeq answered %d, want 481", code)
	}
	if code := prack(t, alice, oc, first, rseq, 3); code != 200 {
		t.Fatalf("PRACK answered %d", code)
	}
	// The device's 183 may still be waiting its turn (then it comes
	// reliably, with the next RSeq and the relayed early media), or the
	// device's 200 overtook it and it was dropped.
	var res *sip.Response
	for res == nil {
		select {
		case p := <-oc.prov:
			r, ok := rseqOf(p)
			switch {
			case p.StatusCode == 180 && r == rseq:
				continue // a repeat sent before the PRACK arrived
			case p.StatusCode != 183 || !ok || r != rseq+1 || !hasLine(p.Body(), "a=relayed-from:B"):
				t.Fatalf("after the PRACK of the 180, got:\n%s", p)
			}
			if code := prack(t, alice, oc, p, r, 4); code != 200 {
				t.Fatalf("PRACK of the 183 answered %d", code)
			}
		case res = <-oc.final:
		}
	}
	if res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	}
	bob.wait(sip.ACK, 1)
	// The ACK matched although the PRACK moved the CSeq on: the call is
	// not hung up for a missing ACK.
	eventually(t, "the answer acknowledged", func() bool {
		e.b.mu.Lock()
		c := e.b.calls[oc.d.CallID]
		e.b.mu.Unlock()
		if c == nil {
			return false
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.acks) == 0
	})
	if calls := e.b.Calls(); len(calls) != 1 || calls[0].State != StateAnswered {
		t.Fatalf("calls %+v", calls)
	}
	if res := bob.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	alice.wait(sip.BYE, 1)
}

// prack sends a PRACK for res, an answer to oc's INVITE, naming rseq,
// with CSeq seq; it returns the final code.
func prack(t *testing.T, p *phone, oc *outCall, res *sip.Response, rseq, seq uint32) int {
	t.Helper()
	d := oc.d
	d.confirm(res)
	req, err := d.buildRequest(sip.PRACK, seq, p.via())
	if err != nil {
		t.Fatal(err)
	}
	req.AppendHeader(sip.NewHeader("RAck", fmt.Sprintf("%d %d INVITE", rseq, res.CSeq().SeqNo)))
	p.prepare(req)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	out, err := p.cl.Do(ctx, req, sipdo.Unchanged)
	if err != nil {
		t.Fatalf("PRACK: %v", err)
	}
	return out.StatusCode
}

func TestParseRAck(t *testing.T) {
	tests := []struct {
		in      string
		want    rack
		wantErr bool
	}{
		{in: "776656 1 INVITE", want: rack{776656, 1, "INVITE"}},
		{in: " 1  2  invite ", want: rack{1, 2, "INVITE"}},
		{in: "0 1 INVITE", wantErr: true},
		{in: "1 INVITE", wantErr: true},
		{in: "x 1 INVITE", wantErr: true},
		{in: "1 99999999999 INVITE", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseRAck(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseRAck(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseRAck(f *testing.F) {
	for _, s := range []string{"1 1 INVITE", "4294967295 0 INVITE", "1 1", " ", "-1 1 INVITE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseRAck(s)
		if err == nil && (r.rseq == 0 || r.method == "") {
			t.Errorf("parseRAck(%q) accepted %+v", s, r)
		}
	})
}

// TestReliableProvisionalFromTrunk: a provider that sends its early media
// in a reliable 183, as many carriers do, gets the PBX's PRACK, and the
// caller hears the early media.
func TestReliableProvisionalFromTrunk(t *testing.T) {
	tmp := newEnv(t)
	prov := newPhone(t, tmp, "prov", "reliable")
	e := newEnv(t, withTrunks(t, config.TrunkLine{Name: "prov", Host: prov.addr}))
	alice := newPhone(t, e, "100", "answer")
	oc := alice.dial("0301234", nil)
	early := oc.waitProvisional(183)
	if !hasLine(early.Body(), "a=relayed-from:B") {
		t.Errorf("caller's 183 without the provider's early media: %q", early.Body())
	}
	if res := oc.result(); res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	}
	for i, want := range []string{"1 1 INVITE", "2 1 INVITE"} {
		if h := prov.wait(sip.PRACK, i+1).GetHeader("RAck"); h == nil || h.Value() != want {
			t.Errorf("PRACK #%d RAck %v, want %q", i+1, h, want)
		}
	}
	if r := alice.request(sip.BYE, nil); r.StatusCode != 200 {
		t.Fatalf("BYE answered %d", r.StatusCode)
	}
	prov.wait(sip.BYE, 1)
}
