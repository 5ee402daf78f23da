package voicemail

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/location"
	"github.com/twinpbx/twinpbx/pbx/phoneflow"
)

// lamp is a phone that does not subscribe: it records the NOTIFYs it
// gets.
type lamp struct {
	t      *testing.T
	addr   string
	mu     sync.Mutex
	bodies []string
	events []string
}

func newLamp(t *testing.T) *lamp {
	l := &lamp{t: t}
	_, l.addr = sipPeer(t, sip.NOTIFY, func(req *sip.Request, tx sip.ServerTransaction) {
		l.mu.Lock()
		l.bodies = append(l.bodies, string(req.Body()))
		if h := req.GetHeader("Event"); h != nil {
			l.events = append(l.events, h.Value())
		}
		l.mu.Unlock()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	return l
}

func (l *lamp) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.bodies)
}

// wait waits for the n-th NOTIFY and returns its body.
func (l *lamp) wait(n int) string {
	l.t.Helper()
	waitfor.Cond(l.t, 20*time.Second, "unsolicited NOTIFYs", func() bool { return l.count() >= n })
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.events[n-1] != "message-summary" {
		l.t.Errorf("NOTIFY with Event %q", l.events[n-1])
	}
	return l.bodies[n-1]
}

// binding is the registration of the phone at addr for 201.
func (l *lamp) binding(callID string, cseq uint32) location.Binding {
	return location.Binding{AOR: "201", Contact: "sip:201@" + l.addr, Source: "udp:" + l.addr, CallID: callID, CSeq: cseq, Expires: time.Now().Add(time.Hour)}
}

// register builds the REGISTER that made b.
func register(b location.Binding) *sip.Request {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "127.0.0.1"})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: b.AOR, Host: "127.0.0.1"}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(b.CallID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: b.CSeq, MethodName: sip.REGISTER})
	return req
}

// TestUnsolicitedMWI: a registered phone that did not subscribe hears of
// every change of its mailbox, and of waiting messages when it registers
// anew, not on every refresh; one that subscribed hears only its
// subscription's NOTIFYs; the key turns it off.
func TestUnsolicitedMWI(t *testing.T) {
	type env struct {
		s        *Service
		pbx      string
		mu       sync.Mutex
		bindings []location.Binding
	}
	start := func(t *testing.T, on bool) *env {
		e := &env{}
		e.s, e.pbx = testService(t, func(_ *sipgo.Server, s *Service) {
			s.o.Contacts = func(ext string) []location.Binding {
				e.mu.Lock()
				defer e.mu.Unlock()
				if ext != "201" {
					return nil
				}
				return append([]location.Binding(nil), e.bindings...)
			}
			s.o.Config = func() *config.Voicemail { return &config.Voicemail{UnsolicitedMWI: &on} }
		})
		return e
	}
	// setBindings sets what the registrar holds for mailbox 201.
	setBindings := func(e *env, bs ...location.Binding) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.bindings = bs
	}
	save := func(t *testing.T, s *Service) Message {
		t.Helper()
		msg, err := s.Mailboxes().Save(Message{Mailbox: "201", Caller: "202", Time: time.Now(), Codec: PCMU, Duration: 2 * time.Second}, []byte{1, 2})
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}

	t.Run("changes and registrations", func(t *testing.T) {
		e := start(t, true)
		l := newLamp(t)
		b := l.binding("reg-1", 2)
		e.bindings = []location.Binding{b}
		// Registering with nothing waiting: no NOTIFY.
		e.s.Registered(register(b))
		msg := save(t, e.s)
		if body := l.wait(1); !strings.Contains(body, "Messages-Waiting: yes") || !strings.Contains(body, "Voice-Message: 1/0") {
			t.Fatalf("NOTIFY after a message %q", body)
		}
		// A refresh (same Call-ID) is not told again ...
		e.mu.Lock()
		b.CSeq = 3
		e.bindings = []location.Binding{b}
		e.mu.Unlock()
		e.s.Registered(register(b))
		// ... the phone restarting (a new Call-ID) is.
		e.mu.Lock()
		b = l.binding("reg-2", 1)
		e.bindings = []location.Binding{b}
		e.mu.Unlock()
		e.s.Registered(register(b))
		if body := l.wait(2); !strings.Contains(body, "Voice-Message: 1/0") {
			t.Fatalf("NOTIFY after the new registration %q", body)
		}
		if err := e.s.Mailboxes().MarkOld(msg); err != nil {
			t.Fatal(err)
		}
		if body := l.wait(3); !strings.Contains(body, "Messages-Waiting: no") || !strings.Contains(body, "Voice-Message: 0/1") {
			t.Fatalf("NOTIFY after listening %q", body)
		}
		// A REGISTER that made no binding (an unregistration) tells
		// nothing, and one of another extension neither.
		e.s.Registered(register(l.binding("reg-3", 1)))
		other := l.binding("reg-2", 1)
		other.AOR = "202"
		e.s.Registered(register(other))
		// The refresh before must not have sent a NOTIFY: the count is
		// still 3 once the last change has been told.
		if err := e.s.Mailboxes().Delete(msg); err != nil {
			t.Fatal(err)
		}
		if body := l.wait(4); !strings.Contains(body, "Voice-Message: 0/0") {
			t.Fatalf("NOTIFY after the delete %q", body)
		}
		e.s.Close(t.Context()) // waits for every NOTIFY under way
		if n := l.count(); n != 4 {
			t.Errorf("%d NOTIFYs, want 4 (change, new registration, change, change)", n)
		}
	})

	t.Run("lamp put out after being offline", func(t *testing.T) {
		e := start(t, true)
		l := newLamp(t)
		b := l.binding("reg-1", 1)
		setBindings(e, b)
		msg := save(t, e.s)
		if body := l.wait(1); !strings.Contains(body, "Messages-Waiting: yes") {
			t.Fatalf("NOTIFY after a message %q", body)
		}
		// The phone goes away; the message is deleted meanwhile.
		setBindings(e)
		if err := e.s.Mailboxes().Delete(msg); err != nil {
			t.Fatal(err)
		}
		// It comes back (restarted: a new Call-ID) and hears none waits.
		b = l.binding("reg-2", 1)
		setBindings(e, b)
		e.s.Registered(register(b))
		if body := l.wait(2); !strings.Contains(body, "Messages-Waiting: no") {
			t.Fatalf("NOTIFY when it came back %q", body)
		}
		// Its next refresh: nothing waits, the lamp is out: nothing sent.
		b.CSeq = 2
		setBindings(e, b)
		e.s.Registered(register(b))
		e.s.Close(t.Context())
		if n := l.count(); n != 2 {
			t.Errorf("%d NOTIFYs, want 2", n)
		}
	})

	t.Run("lamp put out after a NOTIFY that failed", func(t *testing.T) {
		e := start(t, true)
		l := newLamp(t)
		b := l.binding("reg-1", 1)
		setBindings(e, b)
		msg := save(t, e.s)
		if body := l.wait(1); !strings.Contains(body, "Messages-Waiting: yes") {
			t.Fatalf("NOTIFY after a message %q", body)
		}
		// The message is heard while the phone cannot be reached: the
		// NOTIFY that would put its lamp out fails (a TCP port that
		// refuses the connection).
		setBindings(e)
		if err := e.s.Mailboxes().MarkOld(msg); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		ln.Close()
		away := b
		away.Source = "tcp:" + closed
		if err := e.s.notifyUnsolicited("201", away); err == nil {
			t.Fatal("NOTIFY to a closed port: no error")
		}
		// Its next refresh, reachable again, puts the lamp out.
		b.CSeq = 2
		setBindings(e, b)
		e.s.Registered(register(b))
		if body := l.wait(2); !strings.Contains(body, "Messages-Waiting: no") {
			t.Fatalf("NOTIFY at the refresh %q", body)
		}
	})

	t.Run("subscribed phone", func(t *testing.T) {
		e := start(t, true)
		sub := newSubscriber(t, e.pbx)
		if res := sub.subscribe("201", "201", "message-summary", "600", "", 1); res.StatusCode != 200 {
			t.Fatalf("SUBSCRIBE answered %d", res.StatusCode)
		}
		sub.notified(1)
		// The subscriber's binding: its REGISTER came from the same
		// socket as its SUBSCRIBE.
		l := newLamp(t) // a second phone of 201 that did not subscribe
		e.mu.Lock()
		e.bindings = []location.Binding{
			{AOR: "201", Contact: "sip:201@" + sub.addr, Source: "udp:" + sub.addr, CallID: "s", CSeq: 1, Expires: time.Now().Add(time.Hour)},
			l.binding("l", 1),
		}
		e.mu.Unlock()
		save(t, e.s)
		sub.notified(2)
		l.wait(1)
		waitfor.Cond(t, 20*time.Second, "NOTIFYs done", func() bool {
			sub.mu.Lock()
			defer sub.mu.Unlock()
			return len(sub.bodies) >= 2
		})
		// Everything under way has ended: Close waits for it.
		e.s.Close(t.Context())
		sub.mu.Lock()
		n := len(sub.bodies)
		sub.mu.Unlock()
		if n != 2 {
			t.Errorf("the subscriber got %d NOTIFYs, want 2 (its subscription's only)", n)
		}
	})

	t.Run("off", func(t *testing.T) {
		e := start(t, false)
		l := newLamp(t)
		b := l.binding("reg-1", 1)
		e.bindings = []location.Binding{b}
		save(t, e.s)
		e.s.Registered(register(b))
		e.s.Close(t.Context())
		if n := l.count(); n != 0 {
			t.Errorf("%d unsolicited NOTIFYs with unsolicited_mwi false", n)
		}
	})
}

// TestUnsolicitedMWIClosedTCP: a phone registered over TCP whose
// connection is gone (the box took over from its twin) is told of a new
// message at its Contact over a new connection, as a call to it would
// be; without the redirection the NOTIFY goes to the closed port.
func TestUnsolicitedMWIClosedTCP(t *testing.T) {
	for _, redirect := range []bool{true, false} {
		t.Run(fmt.Sprintf("redirect %v", redirect), func(t *testing.T) {
			var got atomic.Int32
			_, phone := sipPeerOn(t, "tcp", sip.NOTIFY, func(req *sip.Request, tx sip.ServerTransaction) {
				got.Add(1)
				_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
			})
			gone, err := net.Listen("tcp", "127.0.0.1:0") // the connection's port, closed
			if err != nil {
				t.Fatal(err)
			}
			source := gone.Addr().String()
			gone.Close()
			on := true
			b := location.Binding{AOR: "201", Contact: "sip:201@" + phone + ";transport=tcp", Source: "tcp:" + source,
				CallID: "reg-tcp", CSeq: 1, Expires: time.Now().Add(time.Hour)}
			s, _ := testService(t, func(_ *sipgo.Server, s *Service) {
				s.o.Contacts = func(string) []location.Binding { return []location.Binding{b} }
				s.o.Config = func() *config.Voicemail { return &config.Voicemail{UnsolicitedMWI: &on} }
				if redirect {
					s.o.Redirect = (&phoneflow.Redirector{Client: s.o.Client, Contact: s.o.Contact}).Redirect
				}
			})
			if _, err := s.Mailboxes().Save(Message{Mailbox: "201", Caller: "202", Time: time.Now(), Codec: PCMU, Duration: 2 * time.Second}, []byte{1, 2}); err != nil {
				t.Fatal(err)
			}
			if redirect {
				waitfor.Cond(t, 10*time.Second, "the NOTIFY at the Contact", func() bool { return got.Load() == 1 })
				return
			}
			// Close waits for the NOTIFY's attempt (to the closed port).
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.Close(ctx)
			if n := got.Load(); n != 0 {
				t.Fatalf("%d NOTIFYs reached the Contact without the redirection", n)
			}
		})
	}
}

// BenchmarkRegistered is what unsolicited MWI adds to every REGISTER of
// an extension with a mailbox where no message waits: the common case.
func BenchmarkRegistered(b *testing.B) {
	st := &countingStore{MemStore: NewMemStore()}
	on := true
	s, err := New(Options{
		Client: &sipgo.Client{}, Auth: fakeAuth{}, Store: st,
		Directory: fakeDirectory{"201": {Number: "201"}},
		Contact:   func(string) sip.Uri { return sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 5060} },
		Config:    func() *config.Voicemail { return &config.Voicemail{UnsolicitedMWI: &on} },
		MediaAddr: netip.MustParseAddr("127.0.0.1"),
		Contacts:  func(string) []location.Binding { return nil },
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	req := register(location.Binding{AOR: "201", CallID: "c", CSeq: 1})
	s.Registered(req) // reads the mailbox once
	lists := st.lists.Load()
	b.ReportAllocs()
	for b.Loop() {
		s.Registered(req)
	}
	if n := st.lists.Load() - lists; n != 0 {
		b.Fatalf("%d mailbox listings", n)
	}
}
