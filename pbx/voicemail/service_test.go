package voicemail

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// fakeAuth takes the From user as authenticated.
type fakeAuth struct{}

func (fakeAuth) Authenticate(req *sip.Request, _ sip.ServerTransaction, _ bool) (string, bool) {
	return req.From().Address.User, true
}

type fakeDirectory map[string]config.Extension

func (d fakeDirectory) Extension(n string) (config.Extension, bool) {
	e, ok := d[n]
	return e, ok
}

var no = false

// testService runs a Service on a loopback UDP socket.
func testService(t *testing.T, routes ...func(*sipgo.Server, *Service)) (*Service, string) {
	t.Helper()
	return testServiceOn(t, NewMemStore(), routes...)
}

// testServiceOn is testService over st.
func testServiceOn(t *testing.T, st Store, routes ...func(*sipgo.Server, *Service)) (*Service, string) {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("twinpbx-test"), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ua.Close() })
	srv, _ := sipgo.NewServer(ua)
	cl, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	port := conn.LocalAddr().(*net.UDPAddr).Port
	s, err := New(Options{
		Client: cl, Auth: fakeAuth{}, Store: st,
		Directory: fakeDirectory{"201": {Number: "201"}, "202": {Number: "202", Voicemail: &no}},
		Contact:   func(string) sip.Uri { return sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: port} },
		Config:    func() *config.Voicemail { return &config.Voicemail{} },
		MediaAddr: netip.MustParseAddr("127.0.0.1"),
		Logger:    slog.New(slog.DiscardHandler),
		// Messages being recorded are saved in parts often, so that the
		// tests see several.
		ChunkEvery: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.OnRequest(sip.SUBSCRIBE, s.ServeSubscribe)
	for _, r := range routes {
		r(srv, s)
	}
	w := s.Wrap(srv)
	for _, m := range []sip.RequestMethod{sip.ACK, sip.BYE, sip.CANCEL, sip.INFO} {
		w.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		})
	}
	go func() { _ = srv.ServeUDP(conn) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s, conn.LocalAddr().String()
}

// subscriber is a phone that subscribes and collects NOTIFY bodies.
type subscriber struct {
	t      *testing.T
	cl     *sipgo.Client
	addr   string
	pbx    string
	callID string
	mu     sync.Mutex
	bodies []string
	states []string
	// dialogs are the Call-ID, From tag and CSeq of each NOTIFY.
	dialogs []notifyDialog
}

type notifyDialog struct {
	callID, fromTag string
	cseq            uint32
}

func newSubscriber(t *testing.T, pbx string) *subscriber {
	t.Helper()
	sub := &subscriber{t: t, pbx: pbx, callID: sip.GenerateTagN(12)}
	sub.cl, sub.addr = sipPeer(t, sip.NOTIFY, func(req *sip.Request, tx sip.ServerTransaction) {
		sub.mu.Lock()
		sub.bodies = append(sub.bodies, string(req.Body()))
		if h := req.GetHeader("Subscription-State"); h != nil {
			sub.states = append(sub.states, h.Value())
		}
		tag, _ := req.From().Params.Get("tag")
		sub.dialogs = append(sub.dialogs, notifyDialog{req.CallID().Value(), tag, req.CSeq().SeqNo})
		sub.mu.Unlock()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	return sub
}

// subscribe sends a SUBSCRIBE as user for target's message-summary;
// toTag names an existing subscription.
func (s *subscriber) subscribe(user, target, event, expires, toTag string, seq uint32) *sip.Response {
	s.t.Helper()
	host, port, _ := net.SplitHostPort(s.pbx)
	p, _ := strconv.Atoi(port)
	uri := sip.Uri{Scheme: "sip", User: target, Host: host, Port: p}
	req := sip.NewRequest(sip.SUBSCRIBE, uri)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: host}, Params: sip.NewParams()}
	from.Params.Add("tag", "sub-"+s.callID)
	req.AppendHeader(from)
	to := &sip.ToHeader{Address: uri, Params: sip.NewParams()}
	if toTag != "" {
		to.Params.Add("tag", toTag)
	}
	req.AppendHeader(to)
	cid := sip.CallIDHeader(s.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.SUBSCRIBE})
	ch, cp, _ := net.SplitHostPort(s.addr)
	cport, _ := strconv.Atoi(cp)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: ch, Port: cport}})
	if event != "" {
		req.AppendHeader(sip.NewHeader("Event", event))
	}
	if expires != "" {
		req.AppendHeader(sip.NewHeader("Expires", expires))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.cl.Do(ctx, req)
	if err != nil {
		s.t.Fatalf("SUBSCRIBE: %v", err)
	}
	return res
}

func (s *subscriber) notified(n int) ([]string, []string) {
	s.t.Helper()
	var bodies, states []string
	waitfor.Cond(s.t, 20*time.Second, "NOTIFYs", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		bodies, states = append([]string(nil), s.bodies...), append([]string(nil), s.states...)
		return len(bodies) >= n
	})
	return bodies, states
}

func TestSubscribeRefused(t *testing.T) {
	_, pbx := testService(t)
	tests := []struct {
		name                         string
		user, target, event, expires string
		code                         int
	}{
		{"other event", "201", "201", "presence", "600", 489},
		{"no event", "201", "201", "", "600", 489},
		{"too brief", "201", "201", "message-summary", "30", 423},
		{"bad expires", "201", "201", "message-summary", "soon", 400},
		{"another's mailbox", "202", "201", "message-summary", "600", 403},
		{"no mailbox", "202", "202", "message-summary", "600", 404},
		{"unknown extension", "299", "299", "message-summary", "600", 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sub := newSubscriber(t, pbx)
			if res := sub.subscribe(tc.user, tc.target, tc.event, tc.expires, "", 1); res.StatusCode != tc.code {
				t.Fatalf("answered %d, want %d", res.StatusCode, tc.code)
			}
		})
	}
	t.Run("refresh of no subscription", func(t *testing.T) {
		sub := newSubscriber(t, pbx)
		if res := sub.subscribe("201", "201", "message-summary", "600", "nosuchtag", 2); res.StatusCode != 481 {
			t.Fatalf("answered %d, want 481", res.StatusCode)
		}
	})
}

func TestSubscribeNotifies(t *testing.T) {
	s, pbx := testService(t)
	sub := newSubscriber(t, pbx)
	res := sub.subscribe("201", "*98", "message-summary", "600", "", 1)
	if res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE answered %d", res.StatusCode)
	}
	if h := res.GetHeader("Expires"); h == nil || h.Value() != "600" {
		t.Errorf("Expires %v, want 600", h)
	}
	bodies, states := sub.notified(1)
	if !strings.Contains(bodies[0], "Messages-Waiting: no") || !strings.HasPrefix(states[0], "active;expires=") {
		t.Fatalf("first NOTIFY %q (%s)", bodies[0], states[0])
	}
	msg, err := s.Mailboxes().Save(Message{Mailbox: "201", Caller: "202", Time: time.Now(), Codec: PCMU, Duration: 2 * time.Second}, []byte{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	bodies, _ = sub.notified(2)
	if !strings.Contains(bodies[1], "Messages-Waiting: yes") || !strings.Contains(bodies[1], "Voice-Message: 1/0") {
		t.Fatalf("NOTIFY after a message %q", bodies[1])
	}
	if err := s.Mailboxes().MarkOld(msg); err != nil {
		t.Fatal(err)
	}
	bodies, _ = sub.notified(3)
	if !strings.Contains(bodies[2], "Messages-Waiting: no") || !strings.Contains(bodies[2], "Voice-Message: 0/1") {
		t.Fatalf("NOTIFY after listening %q", bodies[2])
	}
	tag, _ := res.To().Params.Get("tag")
	if res := sub.subscribe("201", "*98", "message-summary", "0", tag, 2); res.StatusCode != 200 {
		t.Fatalf("unsubscribe answered %d", res.StatusCode)
	}
	_, states = sub.notified(4)
	if !strings.HasPrefix(states[3], "terminated") {
		t.Errorf("last NOTIFY's state %q, want terminated", states[3])
	}
	if err := s.Mailboxes().Delete(msg); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	n := len(s.subs)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("%d subscriptions left after the unsubscribe", n)
	}
}

// TestSubscribeExpiresByServiceClock: the expires of Subscription-State
// counts on the clock the subscription's expiry was set by (Options.Now),
// not the wall clock.
func TestSubscribeExpiresByServiceClock(t *testing.T) {
	_, pbx := testService(t, func(_ *sipgo.Server, s *Service) {
		s.o.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	})
	sub := newSubscriber(t, pbx)
	if res := sub.subscribe("201", "201", "message-summary", "600", "", 1); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE answered %d", res.StatusCode)
	}
	_, states := sub.notified(1)
	v, ok := strings.CutPrefix(states[0], "active;expires=")
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n <= 0 || n > 600 {
		t.Fatalf("Subscription-State %q, want active with 1 to 600 s left", states[0])
	}
}

// TestSubscribeAfterClose: a stopping service takes no new subscription
// (Close waits for the NOTIFYs under way and must not see more start).
func TestSubscribeAfterClose(t *testing.T) {
	s, pbx := testService(t)
	s.Close(context.Background())
	sub := newSubscriber(t, pbx)
	if res := sub.subscribe("201", "201", "message-summary", "600", "", 1); res.StatusCode != 503 {
		t.Fatalf("SUBSCRIBE to a closed service answered %d, want 503", res.StatusCode)
	}
	s.mu.Lock()
	n := len(s.subs)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("%d subscriptions held after Close", n)
	}
}
