package b2bua

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/location"
	"github.com/twinpbx/twinpbx/pbx/phoneflow"
)

// closedPort is a local TCP port nothing listens on (any more).
func closedPort(t *testing.T) string { return closedPorts(t, 1)[0] }

// closedPorts is n distinct closed ports (two closedPort calls in a row
// may get the same port back: a Contact on the binding's own closed
// address is not a new target).
func closedPorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// openFlow has p, a TCP phone, open a connection to the PBX, as a phone
// registering over TCP does, from a port of its own, and returns that
// port's address.
func openFlow(t *testing.T, e *env, p *phone) string {
	t.Helper()
	opt := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: e.ln.Addr().(*net.TCPAddr).Port})
	opt.SetTransport("TCP")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.cl.Do(ctx, opt); err != nil {
		t.Fatalf("OPTIONS over TCP: %v", err)
	}
	conn, err := p.cl.TransportLayer().GetConnection("tcp", e.tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.TryClose() }()
	return conn.LocalAddr().String()
}

// put records b as aor's only binding.
func (l *fakeLocator) put(aor string, b location.Binding) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string][]location.Binding{}
	}
	b.AOR, b.Expires = aor, time.Now().Add(time.Hour)
	l.m[aor] = []location.Binding{b}
}

// TestCalleeConnectionClosed: a phone on TCP whose connection is gone (as
// after a failover: the binding's source is the port the phone connected
// from on the box that died) is called at its Contact over a new
// connection, and the dialog goes on over it; an open connection is used
// while there is one, whatever the Contact says; an unreachable Contact
// fails the call quickly.
func TestCalleeConnectionClosed(t *testing.T) {
	t.Run("connection closed: the Contact", func(t *testing.T) {
		e := newEnv(t)
		alice, bob := newPhone(t, e, "100", "answer"), newTCPPhone(t, e, "200", "answer")
		e.loc.put("200", location.Binding{Contact: bob.contact.String(), Source: "tcp:" + closedPort(t)})
		if res := alice.dial("200", nil).result(); res.StatusCode != 200 {
			t.Fatalf("call: %d", res.StatusCode)
		}
		if inv := bob.wait(sip.INVITE, 1); inv.Via().Transport != "TCP" {
			t.Errorf("INVITE over %s, want TCP", inv.Via().Transport)
		}
		bob.wait(sip.ACK, 1)
		// In the dialog too: the caller's BYE reaches bob.
		if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
			t.Errorf("BYE: %d", res.StatusCode)
		}
		bob.wait(sip.BYE, 1)
		if r := e.cdrs.wait(t, 1)[0]; r.Disp != cdr.Answered {
			t.Errorf("CDR %+v", r)
		}
	})

	t.Run("open connection kept", func(t *testing.T) {
		e := newEnv(t)
		alice, bob := newPhone(t, e, "100", "answer"), newTCPPhone(t, e, "200", "answer")
		// The Contact names a port where nothing listens: only the open
		// connection reaches bob.
		e.loc.put("200", location.Binding{Contact: "sip:200@" + closedPort(t) + ";transport=tcp", Source: "tcp:" + openFlow(t, e, bob)})
		if res := alice.dial("200", nil).result(); res.StatusCode != 200 {
			t.Fatalf("call: %d", res.StatusCode)
		}
		bob.wait(sip.ACK, 1)
		if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
			t.Errorf("BYE: %d", res.StatusCode)
		}
		bob.wait(sip.BYE, 1)
	})

	t.Run("TLS phone unreachable", func(t *testing.T) {
		var tries atomic.Int32
		e := newEnv(t, func(o *Options) {
			o.Flow = &phoneflow.Redirector{Client: o.Client, Contact: o.Contact, ConnectTLS: func(context.Context, netip.AddrPort) error {
				tries.Add(1)
				return errors.New("connection refused")
			}}
		})
		alice := newPhone(t, e, "100", "answer")
		ports := closedPorts(t, 2)
		e.loc.put("200", location.Binding{Contact: "sip:200@" + ports[0] + ";transport=tls", Source: "tls:" + ports[1]})
		if res := alice.dial("200", nil).result(); res.StatusCode != 480 {
			t.Fatalf("call to an unreachable TLS phone: %d, want 480", res.StatusCode)
		}
		if n := tries.Load(); n != 1 {
			t.Errorf("%d TLS connections tried, want 1", n)
		}
	})

	t.Run("Contact unreachable", func(t *testing.T) {
		e := newEnv(t)
		alice := newPhone(t, e, "100", "answer")
		ports := closedPorts(t, 2)
		e.loc.put("200", location.Binding{Contact: "sip:200@" + ports[0] + ";transport=tcp", Source: "tcp:" + ports[1]})
		if res := alice.dial("200", nil).result(); res.StatusCode != 480 {
			t.Fatalf("call to an unreachable phone: %d, want 480", res.StatusCode)
		}
	})
}

// TestRestoredCallTCPCallee: a call answered over a TCP callee's own
// connection is restored on the twin, which has no connection to the
// callee; the caller's BYE reaches the callee at its Contact.
func TestRestoredCallTCPCallee(t *testing.T) {
	const ports = 29600
	store := &memCalls{}
	relay1 := newRelay(t, ports)
	box1 := newEnv(t, withMedia(relayMedia{relay1}), withCalls(store))
	alice, bob := newPhone(t, box1, "100", "answer"), newTCPPhone(t, box1, "200", "answer")
	_, aliceSDP := rtpSocket(t, "100")
	_, bobSDP := rtpSocket(t, "200")
	alice.setSDP(aliceSDP)
	bob.setSDP(bobSDP)
	from := openFlow(t, box1, bob)
	box1.loc.put("200", location.Binding{Contact: bob.contact.String(), Source: "tcp:" + from})
	oc := alice.dial("200", nil)
	if res := oc.result(); res.StatusCode != 200 {
		t.Fatalf("call: %d", res.StatusCode)
	}
	bob.wait(sip.ACK, 1)
	store.waitSaved(t, oc.d.CallID)
	if peer := store.get(t, oc.d.CallID).Call.Legs[LegB].Dialog.Peer; peer != from {
		t.Fatalf("callee's saved peer %s, want its connection's %s", peer, from)
	}

	box1.crash()
	_ = relay1.Close()
	relay2 := newRelay(t, ports)
	box2 := newEnvAt(t, box1.addr, withMedia(relayMedia{relay2}), withCalls(store))
	if n := restore(t, box2); n != 1 {
		t.Fatalf("Restore = %d, want 1", n)
	}
	if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("caller's BYE after the failover: %d", res.StatusCode)
	}
	bob.wait(sip.BYE, 1)
	if r := box2.cdrs.wait(t, 1)[0]; r.HangupBy != ByCaller || r.Disp != cdr.Answered {
		t.Errorf("CDR = %+v", r)
	}
}
