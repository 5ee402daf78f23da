package voicemail

import (
	"context"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/media"
)

// TestRTPPortFromRange: a mailbox call's RTP port is one of the relay's
// range (sip.rtp_ports), and every way the call ends, or fails to start,
// gives it back, and calls the diversion's Release once (the trunk
// channel of the caller).
func TestRTPPortFromRange(t *testing.T) {
	const low, high = 48200, 48209 // five pairs
	tests := []struct {
		name string
		// prepare runs before the call; it returns the answer expected.
		prepare func(s *Service) int
		// end ends an answered call.
		end func(s *Service)
	}{
		{name: "stop", prepare: func(*Service) int { return 200 }, end: func(s *Service) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s.Close(ctx)
		}},
		{name: "handover", prepare: func(*Service) int { return 200 }, end: func(s *Service) { s.Abandon() }},
		{name: "too many calls", prepare: func(s *Service) int {
			s.mu.Lock()
			defer s.mu.Unlock()
			for i := range MaxCalls {
				s.sessions["fake-"+strconv.Itoa(i)] = &session{}
			}
			return 503
		}},
		{name: "closed", prepare: func(s *Service) int {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.closed = true
			return 503
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			relay, err := media.NewRelay(media.Config{Addr: netip.MustParseAddr("127.0.0.1"), PortLow: low, PortHigh: high})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = relay.Close() })
			var released atomic.Int32
			s, pbx := testService(t, func(srv *sipgo.Server, s *Service) {
				s.o.RTPPort = func() (PortLease, error) { return relay.Lease() }
				srv.OnRequest(sip.INVITE, func(req *sip.Request, tx sip.ServerTransaction) {
					s.Deposit(req, tx, Diversion{Mailbox: "201", Caller: "202", Release: func() { released.Add(1) }})
				})
			})
			free := relay.Free()
			want := tc.prepare(s)
			c := newCaller(t)
			_, res := c.invite(pbx)
			if res.StatusCode != want {
				t.Fatalf("INVITE answered %d, want %d", res.StatusCode, want)
			}
			if want == 200 {
				o, err := parseOffer(res.Body())
				if err != nil {
					t.Fatalf("the mailbox's SDP: %v", err)
				}
				if p := int(o.remote.Port()); p < low || p > high || p%2 != 0 {
					t.Fatalf("the mailbox's SDP names port %d, not an RTP port of %d-%d", p, low, high)
				}
				if n := relay.Free(); n != free-1 {
					t.Fatalf("%d pairs free during the call, want %d", n, free-1)
				}
				tc.end(s)
			}
			waitfor.Cond(t, 20*time.Second, "the port given back", func() bool { return relay.Free() == free })
			waitfor.Cond(t, 20*time.Second, "the diversion released", func() bool { return released.Load() > 0 })
			if n := released.Load(); n != 1 {
				t.Errorf("the diversion was released %d times, want once", n)
			}
			s.mu.Lock()
			clear(s.sessions) // the fake sessions: Close must not touch them
			s.mu.Unlock()
		})
	}
	t.Run("range full", func(t *testing.T) {
		var released atomic.Int32
		s, pbx := testService(t, func(srv *sipgo.Server, s *Service) {
			s.o.RTPPort = func() (PortLease, error) { return nil, media.ErrNoPorts }
			srv.OnRequest(sip.INVITE, func(req *sip.Request, tx sip.ServerTransaction) {
				s.Deposit(req, tx, Diversion{Mailbox: "201", Caller: "202", Release: func() { released.Add(1) }})
			})
		})
		_, res := newCaller(t).invite(pbx)
		if res.StatusCode != 503 {
			t.Fatalf("INVITE with no port free answered %d, want 503", res.StatusCode)
		}
		s.mu.Lock()
		n := len(s.sessions)
		s.mu.Unlock()
		if n != 0 {
			t.Errorf("%d sessions after a refused call", n)
		}
		waitfor.Cond(t, 20*time.Second, "the refused diversion released", func() bool { return released.Load() > 0 })
		s.Close(t.Context())
		if n := released.Load(); n != 1 {
			t.Errorf("the refused diversion was released %d times, want once", n)
		}
	})
}
