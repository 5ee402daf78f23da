package trunk

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/trunk/trunktest"
)

func TestMain(m *testing.M) {
	sip.SetTimers(50*time.Millisecond, 200*time.Millisecond, 250*time.Millisecond)
	sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// eventually polls cond until it holds or 20 s pass: generous, for a
// loaded machine, for things that take milliseconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, 20*time.Second, what, cond)
}

// pbxSide is the PBX's SIP stack in a test: a UDP listener with a client.
type pbxSide struct {
	client *sipgo.Client
	addr   *net.UDPAddr
}

func startPBXSide(t *testing.T) *pbxSide {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("pbx"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeUDP(conn)
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		_ = ua.Close()
		<-done
	})
	return &pbxSide{client: client, addr: conn.LocalAddr().(*net.UDPAddr)}
}

func (p *pbxSide) options(t *testing.T) Options {
	r, err := resolve.New(resolve.Config{Servers: []string{"127.0.0.1:1"}, Timeout: 100 * time.Millisecond, ProbeInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		Client: p.client, Resolver: r,
		Contact: func(string) sip.Uri { return sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: p.addr.Port} },
		Prepare: func(req *sip.Request) {
			if req.Transport() == "UDP" {
				req.Laddr = sip.Addr{IP: p.addr.IP, Port: p.addr.Port}
			}
		},
		Logger:   slog.New(slog.DiscardHandler),
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Timeout: time.Second,
	}
}

func TestRegisterWithDigest(t *testing.T) {
	prov := trunktest.Start(t, trunktest.Options{User: "4930123", Password: "prov-secret", Expires: 2})
	p := startPBXSide(t)
	m, err := New(p.options(t), []config.TrunkLine{{Name: "prov", Host: prov.Addr, Domain: "provider.test",
		User: "4930123", Password: "prov-secret", Register: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	eventually(t, "a registration", func() bool { return m.Status()[0].State == StateRegistered })
	st := m.Status()[0]
	if st.Target == "" || st.LastError != "" || time.Until(st.Expires) > 2*time.Second {
		t.Errorf("status %+v", st)
	}
	// Granted 2 s: refreshed after about 1 s, with the same Call-ID and a
	// higher CSeq.
	eventually(t, "a refresh", func() bool { return len(prov.Registers()) >= 2 })
	regs := prov.Registers()
	if regs[0].CallID().Value() != regs[1].CallID().Value() || regs[1].CSeq().SeqNo <= regs[0].CSeq().SeqNo {
		t.Errorf("refresh is not the same registration: %s %d / %s %d", regs[0].CallID().Value(), regs[0].CSeq().SeqNo,
			regs[1].CallID().Value(), regs[1].CSeq().SeqNo)
	}
	if to := regs[0].To().Address; to.User != "4930123" || to.Host != "provider.test" {
		t.Errorf("address of record %s", to.String())
	}
	if c := regs[0].Contact().Address; c.User != "4930123" || c.Port != p.addr.Port {
		t.Errorf("contact %s", c.String())
	}
	if prov.Challenges() < 1 {
		t.Error("the provider never challenged: digest untested")
	}
	cancel()
	<-done
	if last := prov.Registers(); last[len(last)-1].GetHeader("Expires").Value() != "0" {
		t.Error("no unregistration on stop")
	}
	if s := m.Status()[0].State; s != StateNone {
		t.Errorf("state after stop %q", s)
	}
}

func TestRegisterFailing(t *testing.T) {
	prov := trunktest.Start(t, trunktest.Options{User: "4930123", Password: "prov-secret"})
	p := startPBXSide(t)
	m, err := New(p.options(t), []config.TrunkLine{{Name: "prov", Host: prov.Addr, User: "4930123", Password: "wrong", Register: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// A wrong password: every round is challenged once more and fails;
	// the retries go on with backoff.
	eventually(t, "two failures", func() bool { return m.Status()[0].Failures >= 2 })
	st := m.Status()[0]
	if st.State != StateFailing || !strings.Contains(st.LastError, "401") {
		t.Errorf("status %+v", st)
	}
	if len(prov.Registers()) != 0 {
		t.Error("the provider accepted a wrong password")
	}
}

func TestIdentify(t *testing.T) {
	p := startPBXSide(t)
	m, err := New(p.options(t), []config.TrunkLine{
		{Name: "prov", Host: "192.0.2.10:5060", User: "4930123"},
		{Name: "isdn", Type: config.LineISDN, Host: "127.0.0.1:5062"},
		{Name: "office", Host: "sip.example.test", Trusted: []string{"198.51.100.0/24"}},
		{Name: "prov2", Host: "192.0.2.10:5070", User: "777", Trusted: []string{"192.0.2.10"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src, ruser, to string
		trunk, called  string
	}{
		{"127.0.0.1:5062", "201", "201", "isdn", "201"},
		{"127.0.0.1:40000", "201", "201", "", ""},              // a phone on the gateway's address
		{"198.51.100.77:40000", "100", "100", "office", "100"}, // any port of a trusted prefix
		{"192.0.2.10:5060", "4930123", "4930123100", "prov", "4930123100"},
		{"192.0.2.10:5060", "777", "555", "prov2", "555"},
		{"192.0.2.10:5060", "4930999", "x", "prov", "4930999"},
		{"198.51.100.77:5060", "100", "100", "office", "100"},
		{"203.0.113.1:5060", "100", "100", "", ""},
		{"garbage", "100", "100", "", ""},
	} {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: tc.ruser, Host: "pbx"})
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: tc.to, Host: "pbx"}, Params: sip.NewParams()})
		req.SetSource(tc.src)
		tr, called, ok := m.Identify(req)
		name := ""
		if ok {
			name = tr.Name()
		}
		if name != tc.trunk || called != tc.called {
			t.Errorf("Identify(from %s to %s/%s) = %q, %q; want %q, %q", tc.src, tc.ruser, tc.to, name, called, tc.trunk, tc.called)
		}
	}
	tr, _ := m.Trunk("prov")
	if !tr.owns(netip.MustParseAddrPort("[::ffff:192.0.2.10]:5060")) {
		t.Error("a v4-mapped address is not recognised")
	}
}

func TestNewErrors(t *testing.T) {
	p := startPBXSide(t)
	o := p.options(t)
	if _, err := New(o, []config.TrunkLine{{Name: "x", Host: "mailto:x"}}); err == nil {
		t.Error("a bad host was accepted")
	}
	if _, err := New(o, []config.TrunkLine{{Name: "x", Host: "h.test", Trusted: []string{"nope"}}}); err == nil {
		t.Error("a bad trusted entry was accepted")
	}
	o.Resolver = nil
	if _, err := New(o, nil); err == nil {
		t.Error("no resolver accepted")
	}
}

func TestAuthorizeErrors(t *testing.T) {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "1", Host: "h"})
	for _, tc := range []struct {
		code   int
		header string
		want   string
	}{
		{401, "", "no WWW-Authenticate"},
		{407, "", "no Proxy-Authenticate"},
		{401, "Basic realm=x", "parsing"},
	} {
		res := sip.NewResponseFromRequest(req, tc.code, "x", nil)
		if tc.header != "" {
			name := map[int]string{401: "WWW-Authenticate", 407: "Proxy-Authenticate"}[tc.code]
			res.AppendHeader(sip.NewHeader(name, tc.header))
		}
		if err := Authorize(req, res, "u", "p"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d %q: %v, want %q", tc.code, tc.header, err, tc.want)
		}
	}
	res := sip.NewResponseFromRequest(req, 407, "x", nil)
	res.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="r", nonce="n", algorithm=md5`))
	if err := Authorize(req, res, "u", "p"); err != nil {
		t.Fatal(err)
	}
	if h := req.GetHeader("Proxy-Authorization"); h == nil || !strings.Contains(h.Value(), `username="u"`) {
		t.Errorf("Proxy-Authorization %v", h)
	}
}

// TestChannels: Seize counts calls up to the trunk's channels; an
// emergency call passes a sip trunk's limit but not an isdn line's B
// channels; Hold counts a restored call whatever the limit; Release and
// ReleaseAll give channels back, and the status shows limit and use.
func TestChannels(t *testing.T) {
	p := startPBXSide(t)
	type step struct {
		op   string // seize, emergency, hold, release, releaseAll
		want bool   // what Seize reports
	}
	for _, tc := range []struct {
		name  string
		line  config.TrunkLine
		steps []step
		inUse int
	}{
		{"no limit", config.TrunkLine{Host: "192.0.2.1:5060"},
			[]step{{"seize", true}, {"seize", true}, {"seize", true}}, 3},
		{"sip limit", config.TrunkLine{Host: "192.0.2.1:5060", Channels: 2},
			[]step{{"seize", true}, {"seize", true}, {"seize", false}, {"release", false}, {"seize", true}}, 2},
		{"sip emergency passes the limit", config.TrunkLine{Host: "192.0.2.1:5060", Channels: 1},
			[]step{{"seize", true}, {"seize", false}, {"emergency", true}, {"emergency", true}}, 3},
		{"isdn emergency takes the line's second B channel", config.TrunkLine{Type: config.LineISDN, Host: "127.0.0.1:5062", Channels: 1},
			[]step{{"seize", true}, {"seize", false}, {"emergency", true}, {"emergency", false}}, 2},
		{"hold ignores the limit", config.TrunkLine{Host: "192.0.2.1:5060", Channels: 1},
			[]step{{"hold", false}, {"hold", false}, {"seize", false}}, 2},
		{"release below zero stays at zero", config.TrunkLine{Host: "192.0.2.1:5060", Channels: 1},
			[]step{{"release", false}, {"seize", true}, {"seize", false}}, 1},
		{"release all", config.TrunkLine{Host: "192.0.2.1:5060", Channels: 1},
			[]step{{"seize", true}, {"releaseAll", false}, {"seize", true}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.line.Name = "t"
			m, err := New(p.options(t), []config.TrunkLine{tc.line})
			if err != nil {
				t.Fatal(err)
			}
			tr, _ := m.Trunk("t")
			for i, s := range tc.steps {
				switch s.op {
				case "seize", "emergency":
					if got := tr.Seize(s.op == "emergency"); got != s.want {
						t.Errorf("step %d: %s = %v, want %v", i, s.op, got, s.want)
					}
				case "hold":
					tr.Hold()
				case "release":
					tr.Release()
				case "releaseAll":
					m.ReleaseAll()
				}
			}
			if got := tr.InUse(); got != tc.inUse {
				t.Errorf("InUse = %d, want %d", got, tc.inUse)
			}
			st := m.Status()[0]
			if st.InUse != tc.inUse || st.Channels != tc.line.Channels {
				t.Errorf("status shows %d of %d channels, want %d of %d", st.InUse, st.Channels, tc.inUse, tc.line.Channels)
			}
		})
	}
}

// TestSeizeWait: an emergency call waiting on a full isdn line, having
// cleared a call, gets the channel the next Release gives back, before
// any other call, emergency or not; it gives up when its context ends.
func TestSeizeWait(t *testing.T) {
	p := startPBXSide(t)
	for _, tc := range []struct {
		name    string
		release bool // a call ends while the emergency call waits
		want    bool
		inUse   int
	}{
		{"a channel comes free", true, true, 2},
		{"no channel comes free", false, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := config.TrunkLine{Name: "t", Type: config.LineISDN, Host: "127.0.0.1:5062", Channels: 2}
			m, err := New(p.options(t), []config.TrunkLine{line})
			if err != nil {
				t.Fatal(err)
			}
			tr, _ := m.Trunk("t")
			for i := range 2 {
				if !tr.Seize(false) {
					t.Fatalf("channel %d of the line could not be taken", i+1)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			got := make(chan bool, 1)
			cleared := make(chan struct{})
			go func() { got <- tr.SeizeWait(ctx, func() { close(cleared) }) }()
			<-cleared
			waitfor.Cond(t, 10*time.Second, "the emergency call waits", func() bool {
				tr.mu.Lock()
				defer tr.mu.Unlock()
				return tr.waiting == 1
			})
			if tc.release {
				tr.Release()
				for _, emergency := range []bool{false, true} {
					if tr.Seize(emergency) {
						tr.Release()
						t.Errorf("a call (emergency %v) took the channel an emergency call cleared a call for", emergency)
					}
				}
			} else {
				cancel()
			}
			select {
			case ok := <-got:
				if ok != tc.want {
					t.Errorf("SeizeWait = %v, want %v", ok, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("SeizeWait did not return")
			}
			if n := tr.InUse(); n != tc.inUse {
				t.Errorf("InUse = %d, want %d", n, tc.inUse)
			}
		})
	}
}
