package voicemail

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// toldBox is a mailbox service with unsolicited MWI over st whose
// registrar holds what bindings returns.
func toldBox(t *testing.T, st Store, bindings func() []location.Binding) *Service {
	t.Helper()
	on := true
	s, _ := testServiceOn(t, st, func(_ *sipgo.Server, s *Service) {
		s.o.Contacts = func(ext string) []location.Binding {
			if ext != "201" {
				return nil
			}
			return bindings()
		}
		s.o.Config = func() *config.Voicemail { return &config.Voicemail{UnsolicitedMWI: &on} }
	})
	return s
}

// TestToldCarriedToTwin: what a phone that does not subscribe was told
// reaches the twin through the store, so that after a handover the twin
// does not tell a registration refresh again, and puts out a lamp the
// first box lit when the phone comes back after its messages were
// deleted.
func TestToldCarriedToTwin(t *testing.T) {
	tests := []struct {
		name string
		// on the first box, after the phone was told of a message
		first func(t *testing.T, s *Service, unregister func())
		// on the twin: the REGISTER it gets
		callID    string
		cseq      uint32
		wantTotal int
		wantLast  string
	}{
		{
			name:   "a refresh is not told again",
			first:  func(*testing.T, *Service, func()) {},
			callID: "reg-1", cseq: 2,
			wantTotal: 1, wantLast: "Messages-Waiting: yes",
		},
		{
			name: "a lamp lit by the first box is put out",
			first: func(t *testing.T, s *Service, unregister func()) {
				unregister()
				msgs, _ := s.Mailboxes().List("201")
				if err := s.Mailboxes().Delete(msgs[0]); err != nil {
					t.Fatal(err)
				}
			},
			callID: "reg-2", cseq: 1,
			wantTotal: 2, wantLast: "Messages-Waiting: no",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := NewMemStore()
			l := newLamp(t)
			var mu sync.Mutex
			bs := []location.Binding{l.binding("reg-1", 1)}
			bindings := func() []location.Binding {
				mu.Lock()
				defer mu.Unlock()
				return append([]location.Binding(nil), bs...)
			}
			a := toldBox(t, st, bindings)
			if _, err := a.Mailboxes().Save(Message{Mailbox: "201", Caller: "202", Time: time.Now(), Codec: PCMU, Duration: 2 * time.Second}, []byte{1, 2}); err != nil {
				t.Fatal(err)
			}
			if body := l.wait(1); !strings.Contains(body, "Messages-Waiting: yes") {
				t.Fatalf("first NOTIFY %q", body)
			}
			// What it was told is stored once its answer came.
			waitfor.Cond(t, 20*time.Second, "what the phone was told stored", func() bool {
				told, _ := st.MWITold()
				return strings.Contains(string(told[toldKey("201", bs[0].Contact)]), `"new":1`)
			})
			tc.first(t, a, func() { mu.Lock(); bs = nil; mu.Unlock() })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			a.Abandon()
			a.Close(ctx)

			b := toldBox(t, st, bindings)
			b.TakeOver()
			bind := l.binding(tc.callID, tc.cseq)
			mu.Lock()
			bs = []location.Binding{bind}
			mu.Unlock()
			b.Registered(register(bind))
			b.Close(ctx) // waits for every NOTIFY sent
			if n := l.count(); n != tc.wantTotal {
				t.Fatalf("%d NOTIFYs in all, want %d", n, tc.wantTotal)
			}
			if body := l.wait(tc.wantTotal); !strings.Contains(body, tc.wantLast) {
				t.Errorf("last NOTIFY %q, want %q", body, tc.wantLast)
			}
		})
	}
}

// FuzzDecodeTold feeds stored MWI states that may be damaged: read back
// or refused, never a panic, and one read back writes back the same.
func FuzzDecodeTold(f *testing.F) {
	f.Add("201\x00sip:201@10.0.0.2:5060", []byte(`{"call_id":"abc","new":2,"old":1,"at":"2026-01-02T03:04:05Z"}`))
	f.Add("201", []byte(`{}`))
	f.Add("\x00sip:x", []byte(`{"new":-1}`))
	f.Add("201\x00c", []byte(`null`))
	f.Fuzz(func(t *testing.T, key string, b []byte) {
		box, contact, tl, err := decodeTold(key, b)
		if err != nil {
			return
		}
		again, err := encodeTold(tl)
		if err != nil {
			t.Fatal(err)
		}
		box2, contact2, tl2, err := decodeTold(toldKey(box, contact), again)
		if err != nil || box2 != box || contact2 != contact || tl2.callID != tl.callID || tl2.new != tl.new || tl2.old != tl.old || !tl2.at.Equal(tl.at) {
			t.Fatalf("read back %q %q %+v (%v), want %q %q %+v", box2, contact2, tl2, err, box, contact, tl)
		}
	})
}

// TestNoWritesAfterHandover: once the box handed over, what a NOTIFY or
// SUBSCRIBE still in flight would store is not written (the twin writes
// the store); after it takes over again, it is.
func TestNoWritesAfterHandover(t *testing.T) {
	st := NewMemStore()
	s, _ := testServiceOn(t, st)
	stored := func() int {
		told, _ := st.MWITold()
		return len(told)
	}
	steps := []struct {
		name string
		do   func()
		want int
	}{
		{"serving", func() {}, 1},
		{"handed over", s.Abandon, 0},
		{"took over again", s.TakeOver, 1},
	}
	for _, step := range steps {
		step.do()
		if err := st.DeleteMWITold(toldKey("201", "sip:201@10.0.0.2")); err != nil {
			t.Fatal(err)
		}
		s.saveTold("201", "sip:201@10.0.0.2", told{callID: "c", new: 1, at: time.Now()})
		if n := stored(); n != step.want {
			t.Errorf("%s: %d states stored, want %d", step.name, n, step.want)
		}
	}
}
