package b2bua

import (
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// releaseDiversions ends the fake mailbox calls: each gives back what
// the B2BUA lent it.
func (v *fakeVoicemail) releaseDiversions() {
	for _, d := range v.diversions() {
		if d.Release != nil {
			d.Release()
			d.Release() // a second call must not give back another channel
		}
	}
}

// TestTrunkChannelsVoicemail: a call from a trunk that a mailbox takes
// holds its channel while the caller leaves a message, however it
// reached the mailbox, and gives it back when the mailbox call ends; a
// call that finds every channel held is refused.
func TestTrunkChannelsVoicemail(t *testing.T) {
	for _, tc := range []struct {
		name string
		bob  string // "": not registered; else the phone's mode
		busy bool   // bob is in a call already
	}{
		{name: "not registered"},
		{name: "no answer", bob: "ring"},
		{name: "phone busy", bob: "486"},
		{name: "in a call", bob: "answer", busy: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm := &fakeVoicemail{after: 300 * time.Millisecond, boxes: map[string]bool{"200": true}}
			tmp := newEnv(t)
			gw := newPhone(t, tmp, "4930555", "answer")
			e := newEnv(t, withTrunks(t, config.TrunkLine{Name: "isdn", Type: config.LineISDN, Host: gw.addr, Channels: 1,
				DIDs: []config.DID{{Number: "203", Extension: "400"}}}), func(o *Options) {
				o.RingTimeout = 20 * time.Second
				o.Voicemail = vm
			})
			gw.pbx = e.addr
			dave := newPhone(t, e, "400", "answer")
			e.loc.add("400", dave)
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
			if res := gw.dial("201", nil).result(); res.StatusCode != 200 {
				t.Fatalf("the trunk's call to bob ended with %d, want the mailbox's 200", res.StatusCode)
			}
			if n := len(vm.diversions()); n != 1 {
				t.Fatalf("%d diversions, want 1", n)
			}
			if n := inUse(t, e, "isdn"); n != 1 {
				t.Fatalf("%d channels in use while the caller is in the mailbox, want 1", n)
			}
			if res := gw.dial("203", nil).result(); res.StatusCode != 503 {
				t.Fatalf("a second call over the full line answered %d, want 503", res.StatusCode)
			}
			vm.releaseDiversions()
			waitInUse(t, e, "isdn", 0)
		})
	}
	t.Run("line full", func(t *testing.T) {
		// A call that finds no channel for the mailbox gets what it
		// would get without one.
		vm := &fakeVoicemail{after: 300 * time.Millisecond, boxes: map[string]bool{"200": true}}
		tmp := newEnv(t)
		gw := newPhone(t, tmp, "4930555", "answer")
		e := newEnv(t, withTrunks(t, config.TrunkLine{Name: "isdn", Type: config.LineISDN, Host: gw.addr, Channels: 1,
			DIDs: []config.DID{{Number: "203", Extension: "400"}}}), func(o *Options) { o.Voicemail = vm })
		gw.pbx = e.addr
		dave := newPhone(t, e, "400", "answer")
		e.loc.add("400", dave)
		if res := gw.dial("203", nil).result(); res.StatusCode != 200 {
			t.Fatalf("the call to dave: %d", res.StatusCode)
		}
		if res := gw.dial("201", nil).result(); res.StatusCode != 480 {
			t.Fatalf("the call to the unregistered bob over the full line ended with %d, want 480", res.StatusCode)
		}
		if n := len(vm.diversions()); n != 0 {
			t.Errorf("%d diversions over a full line, want 0", n)
		}
		if n := inUse(t, e, "isdn"); n != 1 {
			t.Errorf("%d channels in use, want dave's 1", n)
		}
	})
}
