package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/dispatch"
)

// withStreams adds to a dispatcher's config a tcp listener on its udp
// listener's address and port (and a tls one on tlsPort when not 0).
func withStreams(tlsPort int) func(*config.Config) {
	return func(c *config.Config) {
		udp := c.SIP.Listen[0]
		c.SIP.Listen = append(c.SIP.Listen, "tcp:"+strings.TrimPrefix(udp, "udp:"))
		if tlsPort != 0 {
			c.SIP.Listen = append(c.SIP.Listen, fmt.Sprintf("tls:127.0.0.1:%d", tlsPort))
		}
	}
}

// TestDispatcherTCPSipp: sipp over TCP (-t t1, one connection) places
// calls through the real binary to two sipp backends over UDP: every call
// (INVITE, ACK, re-INVITE, ACK, BYE) succeeds, all its requests reach one
// backend, and the backends see the dispatcher's two Record-Route entries,
// the one towards the phone with transport=tcp and a flow token.
func TestDispatcherTCPSipp(t *testing.T) {
	needTools(t, "sipp")
	ports := []int{freePorts(t, 2), freePorts(t, 2)}
	d := config.Dispatcher{Algorithm: "round-robin", ProbeInterval: config.Duration(time.Second)}
	var bs []*sippServer
	for _, port := range ports {
		bs = append(bs, startSippServer(t, "dispatch-backend.xml", port))
		d.Backends = append(d.Backends, config.DispatcherBackend{URI: fmt.Sprintf("127.0.0.1:%d", port)})
	}
	lb := startDispatcherBox(t, d, withStreams(0))
	if !strings.Contains(lb.log.String(), "SIP dispatcher listening on tcp:"+lb.addr()) {
		t.Errorf("the dispatcher did not announce its tcp listener:\n%s", lastLines(lb.log.String(), 20))
	}
	runSipp(t, sippOpts{scenario: "dispatch-uac.xml", remote: lb.addr(), service: "200", tcp: true, calls: 6}, 0)
	var counts []int
	waitFor(t, 10*time.Second, "6 calls in the backends' traces", func() bool {
		counts, _ = newCalls(t, bs, nil)
		return counts[0]+counts[1] == 6
	})
	if counts[0] != 3 || counts[1] != 3 {
		t.Errorf("round robin gave the backends %v calls, want 3 each", counts)
	}
	for i, b := range bs {
		trace, err := os.ReadFile(b.trace)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(trace), "transport=tcp") || !strings.Contains(string(trace), ";dfl=") {
			t.Errorf("backend %d saw no Record-Route entry towards the phone's connection", i)
		}
	}
}

// countEvents is how many events of type typ the phone has reported.
func countEvents(ph *phone, typ string) int {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	n := 0
	for _, ev := range ph.events {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// TestDispatcherTCPPhones puts the real binary with udp, tcp and tls
// listeners in front of a twinpbx PBX: Bob (baresip) registers through it
// over TCP, or over TLS with the dispatcher's self-signed certificate;
// Alice (sipp over TCP) calls him twice: the PBX's INVITE reaches Bob over
// his connection and the call connects; Alice hangs up the first call,
// Bob the second, and each BYE reaches the other side.
func TestDispatcherTCPPhones(t *testing.T) {
	needTools(t, "sipp", "baresip")
	for _, tr := range []string{"tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			p := startPBX(t, alice, bob)
			tlsPort := freePorts(t, 1)
			lb := startDispatcherBox(t, config.Dispatcher{
				Backends:      []config.DispatcherBackend{{URI: p.addr()}},
				ProbeInterval: config.Duration(time.Second),
			}, withStreams(tlsPort))
			at := lb.addr()
			if tr == "tls" {
				at = fmt.Sprintf("127.0.0.1:%d", tlsPort)
			}
			b := startPhone(t, bob, lb.addr(), 600, func(cfg, account *string) {
				*account = fmt.Sprintf("%q <sip:%s@%s;transport=%s>;auth_pass=%s;regint=300;answermode=auto\n",
					bob.Name, bob.Number, at, tr, bob.Secret)
				if tr == "tls" {
					// The dispatcher's certificate is its own, derived:
					// nothing to check it against here.
					*cfg += "sip_verify_server no\n"
				}
			})
			b.waitRegistered(20 * time.Second)
			// The PBX has Bob at the dispatcher, with the Contact of his
			// connection.
			var st struct {
				Registrations []struct{ AOR, Contact, Source string } `json:"registrations"`
			}
			if err := p.status(&st); err != nil {
				t.Fatal(err)
			}
			if r := st.Registrations; len(r) != 1 || r[0].Source != "udp:"+lb.addr() || !strings.Contains(r[0].Contact, "transport="+tr) {
				t.Fatalf("the PBX's registrations: %+v; want Bob's %s Contact from the dispatcher", r, tr)
			}

			// The dispatcher's status counts Bob's connection and
			// registration.
			var lbst struct {
				Dispatcher dispatch.Status
			}
			if err := lb.status(&lbst); err != nil {
				t.Fatal(err)
			}
			if c := lbst.Dispatcher.Connections; c == nil || *c < 1 || lbst.Dispatcher.Registered != 1 {
				t.Errorf("the dispatcher's status: %v connections, %d registered; want Bob's", c, lbst.Dispatcher.Registered)
			}

			// Alice hangs up.
			alicePort := freePorts(t, 2)
			runSipp(t, sippOpts{scenario: "uac.xml", remote: lb.addr(), service: bob.Number, tcp: true, port: alicePort,
				user: alice.Number, pass: alice.Secret, keys: caller(alice), pause: time.Second}, 0)
			waitFor(t, 10*time.Second, "Bob's first call established and closed", func() bool {
				return countEvents(b, "CALL_ESTABLISHED") >= 1 && countEvents(b, "CALL_CLOSED") >= 1
			})

			// Bob hangs up.
			caller2 := startSipp(t, sippOpts{scenario: "uac-wait-bye.xml", remote: lb.addr(), service: bob.Number, tcp: true,
				port: freePorts(t, 2), user: alice.Number, pass: alice.Secret, keys: caller(alice)})
			waitFor(t, 20*time.Second, "Bob's second call established", func() bool { return countEvents(b, "CALL_ESTABLISHED") >= 2 })
			b.command("hangup", "")
			caller2.wait(0)
			waitFor(t, 10*time.Second, "Bob's second call closed", func() bool { return countEvents(b, "CALL_CLOSED") >= 2 })
			waitFor(t, 10*time.Second, "both calls in the PBX's CDRs", func() bool {
				recs, err := p.cdrs()
				return err == nil && len(recs) == 2
			})
		})
	}
}
