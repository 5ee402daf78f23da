package b2bua

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/location"
)

// fakeSite stands for the site cluster: it routes the bindings of the
// boxes in routes to their address and marks forwarded INVITEs with a
// header naming this box; a mark is trusted when it names a box of
// trusted. The real mark (an HMAC with the site key) is tested in
// firmware/site.
type fakeSite struct {
	name    string
	routes  map[string]string // holder → "udp:ip:port"
	trusted map[string]bool

	mu      sync.Mutex
	refused int
}

const fakeSiteHeader = "X-Test-Site"

func (s *fakeSite) Route(b location.Binding) (string, bool) {
	src, ok := s.routes[b.Holder]
	return src, ok
}

func (s *fakeSite) Sign(req *sip.Request) { req.AppendHeader(sip.NewHeader(fakeSiteHeader, s.name)) }

func (s *fakeSite) Verify(req *sip.Request) (string, bool, error) {
	h := req.GetHeader(fakeSiteHeader)
	if h == nil {
		return "", false, nil
	}
	if !s.trusted[h.Value()] {
		s.mu.Lock()
		s.refused++
		s.mu.Unlock()
		return h.Value(), true, errors.New("not a member")
	}
	return h.Value(), true, nil
}

func withSite(s *fakeSite) envOpt { return func(o *Options) { o.Site = s } }

// addBinding adds a binding of another box to a PBX's locator.
func (l *fakeLocator) addBinding(b location.Binding) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string][]location.Binding{}
	}
	l.m[b.AOR] = append(l.m[b.AOR], b)
}

// TestSiteForwarding: alice calls bob through box 3; bob is registered
// on box 1, over UDP or TCP. The call goes to box 1, which takes it
// without digest and rings bob's own binding only, over bob's transport;
// both CDRs name the other box.
func TestSiteForwarding(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		t.Run(map[bool]string{false: "UDP phone", true: "TCP phone"}[tcp], func(t *testing.T) { testSiteForwarding(t, tcp) })
	}
}

func testSiteForwarding(t *testing.T, tcp bool) {
	site1 := &fakeSite{name: "box1", trusted: map[string]bool{"box3": true}}
	auth1 := &fakeAuth{challenge: true} // a forwarded call must not be challenged
	box1 := newEnv(t, withSite(site1), func(o *Options) { o.Auth = auth1 })
	site3 := &fakeSite{name: "box3", routes: map[string]string{"box1": "udp:" + box1.addr}}
	box3 := newEnv(t, withSite(site3))

	alice := newPhone(t, box3, "100", "answer")
	bob := startPhone(t, box1, "200", "answer", tcp)
	box1.loc.add("200", bob)
	// Box 1 also sees a binding of bob's on box 3 in the site table: a
	// forwarded call must not go there (nor back).
	box1.loc.addBinding(location.Binding{AOR: "200", Contact: "sip:200@127.0.0.1:9", Source: "udp:" + box3.addr,
		Holder: "box3", Expires: time.Now().Add(time.Hour)})
	// Box 3 knows bob from the site table only, at an address no one
	// answers: the call must not go there.
	for _, c := range []string{"sip:200@127.0.0.1:9", "sip:200@127.0.0.1:10"} {
		box3.loc.addBinding(location.Binding{AOR: "200", Contact: c, Source: "udp:127.0.0.1:9",
			Holder: "box1", Expires: time.Now().Add(time.Hour)})
	}

	oc := alice.dial("200", nil)
	if res := oc.result(); res.StatusCode != 200 {
		t.Fatalf("call answered with %d", res.StatusCode)
	}
	inv := bob.wait(sip.INVITE, 1)
	if want := map[bool]string{false: "UDP", true: "TCP"}[tcp]; inv.Transport() != want {
		t.Errorf("bob rung over %s, want %s", inv.Transport(), want)
	}
	if got := inv.From().Address.User; got != "100" {
		t.Errorf("bob sees caller %q", got)
	}
	if inv.GetHeader(fakeSiteHeader) != nil {
		t.Error("the site mark reached the phone")
	}
	if n := bob.count(sip.INVITE); n != 1 {
		t.Errorf("bob got %d INVITEs, want 1 (one per holding box)", n)
	}
	auth1.mu.Lock()
	asked := auth1.asked
	auth1.mu.Unlock()
	if asked != 0 {
		t.Errorf("box 1 challenged the forwarded call %d times", asked)
	}
	bob.wait(sip.ACK, 1)
	box3.hangupAll()
	bob.wait(sip.BYE, 1)
	if r := box3.cdrs.wait(t, 1)[0]; r.Site != "box1" || r.Callee != "200" || r.Caller != "100" {
		t.Errorf("box 3's CDR = %+v, want it forwarded to box1", r)
	}
	if r := box1.cdrs.wait(t, 1)[0]; r.Site != "box3" || r.Callee != "200" || r.Caller != "100" {
		t.Errorf("box 1's CDR = %+v, want it forwarded from box3", r)
	}
}

// TestSiteForwardRefused: an INVITE with a mark the site does not trust
// is refused with 403 before any authentication and rings nobody; one
// without a mark is authenticated as usual.
func TestSiteForwardRefused(t *testing.T) {
	tests := []struct {
		name  string
		hdrs  []sip.Header
		want  int
		asked bool // digest challenge sent
	}{
		{"forged mark", []sip.Header{sip.NewHeader(fakeSiteHeader, "mallory")}, 403, false},
		{"no mark", nil, 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			site1 := &fakeSite{name: "box1", trusted: map[string]bool{"box3": true}}
			auth1 := &fakeAuth{challenge: true}
			box1 := newEnv(t, withSite(site1), func(o *Options) { o.Auth = auth1 })
			bob := newPhone(t, box1, "200", "answer")
			box1.loc.add("200", bob)
			caller := newPhone(t, box1, "100", "answer")
			res := caller.dial("200", nil, tt.hdrs...).result()
			if res.StatusCode != tt.want {
				t.Fatalf("answered %d, want %d", res.StatusCode, tt.want)
			}
			auth1.mu.Lock()
			asked := auth1.asked
			auth1.mu.Unlock()
			if (asked > 0) != tt.asked {
				t.Errorf("digest challenges %d, want any: %v", asked, tt.asked)
			}
			if tt.want != 200 {
				if n := bob.count(sip.INVITE); n != 0 {
					t.Errorf("bob rung %d times by a refused call", n)
				}
				site1.mu.Lock()
				refused := site1.refused
				site1.mu.Unlock()
				if refused != 1 {
					t.Errorf("site refused %d marks, want 1", refused)
				}
			}
		})
	}
}

// TestSiteForwardFallsBack: the box holding bob's registration takes
// the forwarded INVITE in silence (it died, and gossip does not know yet):
// after siteAnswerWait the call rings bob's phone directly and connects,
// and the CDR names no other box.
func TestSiteForwardFallsBack(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := dead.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	site3 := &fakeSite{name: "box3", routes: map[string]string{"box1": "udp:" + dead.LocalAddr().String()}}
	// A ring time well beyond the wait, so a slow machine cannot end the
	// call before the direct INVITE is answered.
	box3 := newEnv(t, withSite(site3), func(o *Options) { o.RingTimeout = 30 * time.Second })
	alice := newPhone(t, box3, "100", "answer")
	bob := newPhone(t, box3, "200", "answer")
	box3.loc.addBinding(location.Binding{AOR: "200", Contact: bob.contact.String(), Source: "udp:" + bob.addr,
		Holder: "box1", Expires: time.Now().Add(time.Hour)})

	oc := alice.dial("200", nil)
	select {
	case res := <-oc.final:
		if res == nil || res.StatusCode != 200 {
			t.Fatalf("call answered with %v", res)
		}
	case <-time.After(siteAnswerWait + waitFor):
		t.Fatal("no answer after the holding box stayed silent")
	}
	if inv := bob.wait(sip.INVITE, 1); inv.GetHeader(fakeSiteHeader) != nil {
		t.Error("the direct INVITE carries the site mark")
	}
	box3.hangupAll()
	if r := box3.cdrs.wait(t, 1)[0]; r.Site != "" || r.Disp != "ANSWERED" {
		t.Errorf("CDR = %+v, want an answered call with no site box", r)
	}
}

// TestSiteForwardNoHopsLeft: a trusted forwarded INVITE with Max-Forwards
// 0 is refused with 483 and rings nobody.
func TestSiteForwardNoHopsLeft(t *testing.T) {
	site1 := &fakeSite{name: "box1", trusted: map[string]bool{"box3": true}}
	box1 := newEnv(t, withSite(site1))
	bob := newPhone(t, box1, "200", "answer")
	box1.loc.add("200", bob)
	caller := newPhone(t, box1, "100", "answer")

	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "200", Host: "127.0.0.1", Port: box1.conn.LocalAddr().(*net.UDPAddr).Port})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "100", Host: "127.0.0.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: req.Recipient, Params: sip.NewParams()})
	req.AppendHeader(&sip.ContactHeader{Address: caller.contact})
	mf := sip.MaxForwardsHeader(0)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader(fakeSiteHeader, "box3"))
	caller.prepare(req)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	res, err := caller.cl.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 483 {
		t.Errorf("answered %d, want 483", res.StatusCode)
	}
	if n := bob.count(sip.INVITE); n != 0 {
		t.Errorf("bob rung %d times", n)
	}
}
