package voicemail

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/internal/waitfor"
)

func TestGreetingMenu(t *testing.T) {
	tests := []struct {
		name string
		long bool           // the recording is long enough
		keys []byte         // in review; 0: none in time
		want []GreetingStep // after each key
	}{
		{"keep", true, []byte{'2'}, []GreetingStep{GreetSave}},
		{"listen, then keep", true, []byte{'1', '2'}, []GreetingStep{GreetPlay, GreetSave}},
		{"again, then keep", true, []byte{'0'}, []GreetingStep{GreetRecord}},
		{"back to the tones", true, []byte{'3'}, []GreetingStep{GreetReset}},
		{"leave unchanged", true, []byte{'*'}, []GreetingStep{GreetEnd}},
		{"stray keys", true, []byte{'5', '#', '9', '2'}, []GreetingStep{GreetReview, GreetReview, GreetReview, GreetSave}},
		{"too short: no listen, no keep", false, []byte{'1', '2', '3'}, []GreetingStep{GreetReview, GreetReview, GreetReset}},
		{"no answer", true, []byte{0, 0, 0}, []GreetingStep{GreetReview, GreetReview, GreetEnd}},
		{"an answer resets the patience", true, []byte{0, 0, '5', 0, 0, 0}, []GreetingStep{GreetReview, GreetReview, GreetReview, GreetReview, GreetReview, GreetEnd}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGreetingMenu()
			if s := g.Start(); s != GreetRecord {
				t.Fatalf("start %v, want record", s)
			}
			if s := g.Recorded(tc.long); s != GreetReview {
				t.Fatalf("after recording %v, want review", s)
			}
			for i, k := range tc.keys {
				if s := g.Key(k); s != tc.want[i] {
					t.Fatalf("key %d (%q): %v, want %v", i, k, s, tc.want[i])
				}
			}
		})
	}
}

func TestGreetingStored(t *testing.T) {
	m := NewMailboxes(NewMemStore(), func() int { return 5 }, nil)
	if _, _, ok, err := m.Greeting("201"); ok || err != nil {
		t.Fatalf("a greeting before any was recorded: %v %v", ok, err)
	}
	audio := tone(nil, PCMA, 1500, 440)
	if err := m.SaveGreeting("201", PCMA, audio); err != nil {
		t.Fatal(err)
	}
	c, got, ok, err := m.Greeting("201")
	if !ok || err != nil || c != PCMA || !bytes.Equal(got, audio) {
		t.Fatalf("greeting %v %d bytes %v %v, want PCMA %d bytes", c, len(got), ok, err, len(audio))
	}
	if err := m.SaveGreeting("201", PCMA, audio[:4000]); err == nil {
		t.Error("a greeting of half a second was saved")
	}
	if err := m.DeleteGreeting("201"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := m.Greeting("201"); ok {
		t.Error("the greeting is still there after the delete")
	}
	// A store without greetings: none, and none can be saved.
	bare := NewMailboxes(struct{ Store }{NewMemStore()}, func() int { return 5 }, nil)
	if _, _, ok, err := bare.Greeting("201"); ok || err != nil {
		t.Errorf("a store without greetings: %v %v", ok, err)
	}
	if err := bare.SaveGreeting("201", PCMA, audio); err == nil {
		t.Error("saved into a store without greetings")
	}
}

func FuzzDecodeGreeting(f *testing.F) {
	f.Add(encodeGreeting(PCMU, make([]byte, 8000)))
	f.Add(encodeGreeting(PCMA, make([]byte, 16000)))
	f.Add([]byte("twinpbx-greeting-1\n\x05"))
	f.Add([]byte("twinpbx-greeting-2\n\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, audio, err := decodeGreeting(b)
		if err != nil {
			if !errors.Is(err, ErrGreeting) {
				t.Fatalf("error %v is not ErrGreeting", err)
			}
			return
		}
		if !bytes.Equal(encodeGreeting(c, audio), b) {
			t.Fatalf("%q does not encode back", b)
		}
	})
}

// TestRecordedGreeting: the owner records a greeting from the listening
// call (0, speak, #, 2) and a caller of the mailbox then hears exactly
// it and the beep, instead of the tone greeting.
func TestRecordedGreeting(t *testing.T) {
	s, pbx := testService(t, func(srv *sipgo.Server, s *Service) {
		s.Wrap(srv).OnRequest(sip.INVITE, func(req *sip.Request, tx sip.ServerTransaction) {
			s.Deposit(req, tx, Diversion{Mailbox: "201", Caller: "202"})
		})
	})
	current := func() *session {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, ss := range s.sessions {
			return ss
		}
		return nil
	}
	owner := newCaller(t)
	to := owner.callAs(pbx, "201", "*98")
	var ss *session
	waitfor.Cond(t, 20*time.Second, "the owner's call", func() bool { ss = current(); return ss != nil })
	ss.ep.keys <- '0' // during the count
	stop := make(chan struct{})
	go owner.talk(to, stop)
	waitfor.Cond(t, 30*time.Second, "1.5 s of the greeting recorded", func() bool {
		ss.ep.mu.Lock()
		defer ss.ep.mu.Unlock()
		return ss.ep.rec != nil && ss.ep.rec.Duration() >= 1500*time.Millisecond
	})
	ss.ep.keys <- '#'
	ss.ep.keys <- '2'
	waitfor.Cond(t, 20*time.Second, "the owner's call to end", func() bool { return owner.byes.Load() == 1 })
	close(stop)
	c, greeting, ok, err := s.Mailboxes().Greeting("201")
	if !ok || err != nil || c != PCMA {
		t.Fatalf("greeting %v %v %v, want a PCMA one", c, ok, err)
	}
	if d := time.Duration(len(greeting)) * time.Second / 8000; d < 1500*time.Millisecond || d > 5*time.Second {
		t.Fatalf("greeting of %v, want about 1.5 s", d)
	}

	// A caller hears the greeting and the beep, then silence while the
	// mailbox records.
	c2 := newCaller(t)
	c2.call(pbx)
	want := len(greeting) + len(Beep(PCMA, nil))
	got := 0
	buf := make([]byte, 1500)
	for got < want {
		_ = c2.rtp.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := c2.rtp.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d bytes of audio: %v", got, want, err)
		}
		got += n - 12 // the RTP header
	}
	_ = c2.rtp.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := c2.rtp.Read(buf); err == nil {
		t.Errorf("%d bytes more after the greeting and the beep", n)
	}
	if got != want {
		t.Errorf("the caller got %d bytes of audio, want %d (the greeting and the beep)", got, want)
	}
	s.Close(t.Context()) // while the caller still answers the BYE
}
