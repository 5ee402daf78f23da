package isdngw

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/exchange"
)

func TestReasonCause(t *testing.T) {
	for _, tc := range []struct {
		reasons []string
		want    uint8
	}{
		{nil, 0},
		{[]string{`Q.850;cause=8;text="preemption"`}, 8},
		{[]string{`q.850 ; cause = 16`}, 16},
		{[]string{`preemption ;cause=1 ;text="UA preemption"`}, 0},
		{[]string{`SIP;cause=200`, `Q.850;cause=34`}, 34},
		{[]string{`Q.850;cause=0`}, 0},
		{[]string{`Q.850;cause=128`}, 0},
		{[]string{`Q.850;cause=-8`}, 0},
		{[]string{`Q.850;text="x"`}, 0},
		{[]string{`Q.850;cause=99999999999999999999`}, 0},
	} {
		req := sip.NewRequest(sip.BYE, sip.Uri{Host: "127.0.0.1"})
		for _, r := range tc.reasons {
			req.AppendHeader(sip.NewHeader("Reason", r))
		}
		if got := reasonCause(req); got != tc.want {
			t.Errorf("reasonCause(%q) = %d, want %d", tc.reasons, got, tc.want)
		}
	}
}

func TestFailureCause(t *testing.T) {
	for _, tc := range []struct {
		code   int
		reason string
		want   uint8
	}{
		{503, "", 41},
		{503, `Q.850;cause=34;text="no circuit/channel available"`, 41},
		{503, `Q.850;cause=8;text="preemption"`, 8},
		{486, "", 17},
	} {
		res := sip.NewResponse(tc.code, "x")
		if tc.reason != "" {
			res.AppendHeader(sip.NewHeader("Reason", tc.reason))
		}
		if got := failureCause(res); got != tc.want {
			t.Errorf("failureCause(%d, %q) = %d, want %d", tc.code, tc.reason, got, tc.want)
		}
	}
}

// FuzzReasonCause: any Reason header gives 0 or a cause of 1..127.
func FuzzReasonCause(f *testing.F) {
	for _, s := range []string{`Q.850;cause=8;text="preemption"`, "Q.850;cause=34", ";;;", "Q.850;cause=", "Q.850;cause=255", "SIP;cause=503"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		req := sip.NewRequest(sip.BYE, sip.Uri{Host: "127.0.0.1"})
		req.AppendHeader(sip.NewHeader("Reason", v))
		if n := reasonCause(req); n > 127 {
			t.Fatalf("cause %d from %q", n, v)
		}
	})
}

// TestClearingCause: a BYE or CANCEL from the PBX with a Q.850 cause (8,
// preemption) clears the line's call with that cause.
func TestClearingCause(t *testing.T) {
	for _, tc := range []struct {
		name     string
		scenario string
		reply    exchange.Reply
	}{
		{"BYE", "uac-bye-reason.xml", exchange.Reply{Ring: 100 * time.Millisecond}},
		{"CANCEL", "uac-cancel-reason.xml", exchange.Reply{NoAnswer: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBed(t, isdn.BRIPointToPoint, func(string) exchange.Reply { return tc.reply })
			s := startSipp(t, b.sipp, "-sf", filepath.Join("testdata", tc.scenario), "-s", "110", "-d", "300", b.gwAt.String())
			c := b.placed(t)
			if err := c.Wait(b.ctx, exchange.Released); err != nil {
				t.Fatal(err)
			}
			s.wait(t, 0)
			if c.Cause() != 8 {
				t.Errorf("cleared with cause %d, want 8 (preemption)", c.Cause())
			}
		})
	}
}

// TestEmergencyWaitsForChannel: an emergency INVITE that finds both B
// channels busy waits for one to come free (the PBX clears a call to make
// room) and goes to the line; an ordinary one gets 503 at once.
func TestEmergencyWaitsForChannel(t *testing.T) {
	silent := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
	// The exchange refuses the calls it gets (busy): the answer shows the
	// call reached the line.
	b := startBed(t, isdn.BRIPointToPoint, func(string) exchange.Reply { return exchange.Reply{Reject: 17} }, func(c *Config) {
		c.PBX = silent
	})
	var held []*exchange.Call
	for range 2 {
		c, err := b.x.Dial(b.ctx, exchange.DialParams{Calling: "1", Called: "2"})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitFor(t, b.ctx, "both calls at the gateway", func() bool { return b.gw.Status().Calls == 2 })
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n"
	if first, all := inviteWith(t, b.gwAt, sdp, ""); !strings.HasPrefix(first, "SIP/2.0 503") {
		t.Errorf("ordinary call: want 503, got:\n%s", all)
	}
	type answer struct{ first, all string }
	got := make(chan answer, 1)
	go func() {
		first, all := inviteWith(t, b.gwAt, sdp, "Priority: emergency\r\n")
		got <- answer{first, all}
	}()
	// The emergency INVITE waits for a released call.
	waitFor(t, b.ctx, "the emergency call to wait", func() bool {
		b.gw.mu.Lock()
		defer b.gw.mu.Unlock()
		return b.gw.released != nil
	})
	if err := held[0].Hangup(b.ctx, 16); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if !strings.HasPrefix(a.first, "SIP/2.0 486") {
			t.Errorf("emergency call: want the line's 486, got:\n%s", a.all)
		}
	case <-b.ctx.Done():
		t.Fatal("the emergency call got no answer")
	}
}
