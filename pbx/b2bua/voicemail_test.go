package b2bua

import (
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

// fakeVoicemail answers diverted calls with a bare 200 and remembers them.
type fakeVoicemail struct {
	after time.Duration
	boxes map[string]bool

	mu   sync.Mutex
	got  []voicemail.Diversion
	when []time.Time
}

func (v *fakeVoicemail) After(ext string) (time.Duration, bool) {
	return v.after, v.boxes[ext]
}

func (v *fakeVoicemail) Deposit(req *sip.Request, tx sip.ServerTransaction, d voicemail.Diversion) {
	v.mu.Lock()
	v.got = append(v.got, d)
	v.when = append(v.when, time.Now())
	v.mu.Unlock()
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.To().Params.Add("tag", d.Tag)
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "vm", Host: "127.0.0.1"}})
	_ = tx.Respond(res)
}

func (v *fakeVoicemail) diversions() []voicemail.Diversion {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]voicemail.Diversion(nil), v.got...)
}

func TestDivertToVoicemail(t *testing.T) {
	tests := []struct {
		name     string
		boxes    map[string]bool
		bob      string // "": not registered; else the phone's mode
		busy     bool   // bob is in a call already
		code     int    // the caller's final response
		reason   string // of the diversion; "": none
		ringCDR  cdr.Disposition
		ringCode int
	}{
		{name: "not registered", boxes: map[string]bool{"200": true}, code: 200, reason: "unavailable"},
		{name: "not registered, no mailbox", boxes: map[string]bool{}, code: 480, ringCDR: cdr.NoAnswer, ringCode: 480},
		{name: "no answer in the mailbox's time", boxes: map[string]bool{"200": true}, bob: "ring", code: 200, reason: "no-answer", ringCDR: cdr.NoAnswer, ringCode: 480},
		{name: "no answer, no mailbox", boxes: map[string]bool{"300": true}, bob: "ring", code: 480, ringCDR: cdr.NoAnswer, ringCode: 480},
		{name: "phone busy", boxes: map[string]bool{"200": true}, bob: "486", code: 200, reason: "busy", ringCDR: cdr.Busy, ringCode: 486},
		{name: "in a call", boxes: map[string]bool{"200": true}, bob: "answer", busy: true, code: 200, reason: "busy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vm := &fakeVoicemail{after: 300 * time.Millisecond, boxes: tc.boxes}
			e := newEnv(t, func(o *Options) {
				// Long, so that a diversion in the mailbox's time cannot be
				// taken for the ring timeout; short where nothing diverts.
				o.RingTimeout = 20 * time.Second
				if tc.reason == "" {
					o.RingTimeout = time.Second
				}
				o.Voicemail = vm
			})
			alice := newPhone(t, e, "100", "answer")
			cdrs := 0
			if tc.bob != "" {
				bob := newPhone(t, e, "200", tc.bob)
				e.loc.add("200", bob)
				if tc.busy {
					carol := newPhone(t, e, "300", "answer")
					if res := carol.dial("200", nil).result(); res.StatusCode != 200 {
						t.Fatalf("the first call to bob: %d", res.StatusCode)
					}
				}
			}
			start := time.Now()
			res := alice.dial("200", nil).result()
			if res.StatusCode != tc.code {
				t.Fatalf("call ended with %d, want %d", res.StatusCode, tc.code)
			}
			got := vm.diversions()
			if tc.reason == "" {
				if len(got) != 0 {
					t.Fatalf("diverted: %+v", got)
				}
			} else {
				if len(got) != 1 || got[0].Reason != tc.reason || got[0].Mailbox != "200" || got[0].Caller != "100" || got[0].Tag == "" {
					t.Fatalf("diversions %+v, want one for 200 from 100 because %s", got, tc.reason)
				}
				if to, _ := res.To().Params.Get("tag"); to != got[0].Tag {
					t.Errorf("the caller's To tag %q is not the one of the diversion %q", to, got[0].Tag)
				}
				if tc.reason == "no-answer" && time.Since(start) >= 15*time.Second {
					t.Errorf("diverted after %v: the ring timeout, not the mailbox's time", time.Since(start))
				}
			}
			if tc.ringCDR != "" {
				cdrs++
			}
			if tc.name == "no answer, no mailbox" && time.Since(start) < time.Second {
				t.Errorf("gave up after %v, before the ring timeout: the mailbox's time of another extension applied", time.Since(start))
			}
			if tc.busy {
				cdrs = 0 // the first call goes on: no record yet
			}
			if cdrs > 0 {
				if r := e.cdrs.wait(t, cdrs)[0]; r.Disp != tc.ringCDR || r.SIPCode != tc.ringCode {
					t.Errorf("the ringing attempt's CDR: %+v", r)
				}
			}
			if tc.reason != "" && tc.bob == "" {
				eventually(t, "no media session left", func() bool { return e.media.sessions() == 0 })
			}
		})
	}
}
