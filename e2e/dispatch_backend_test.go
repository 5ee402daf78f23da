package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/dispatch"
)

// TestDispatcherStreamBackends puts the real binary in front of a twinpbx
// PBX that it speaks to over TCP, and then over TLS (the PBX presenting a
// certificate that dispatcher.tls_ca names), while the phones use UDP:
// bob registers through the dispatcher (the PBX records him as come over
// the dispatcher's connection), alice calls him (407, the INVITE with
// credentials, ACK, BYE), the PBX's INVITE to bob comes back over the
// connection and reaches bob over UDP, and the PBX writes the call's CDR.
// The dispatcher's status shows the backend's transport and its open
// connections. The PBX then restarts, keeping bob's registration: the
// dispatcher connects again from the same ports, and a second call
// reaches bob without his registering again.
func TestDispatcherStreamBackends(t *testing.T) {
	needTools(t, "sipp")
	for _, tr := range []string{"tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := writeCert(t, dir)
			tlsPort := freePorts(t, 1)
			p := startPBXWith(t, func(c *config.Config) {
				c.SIP.Listen = append(c.SIP.Listen, fmt.Sprintf("tls:127.0.0.1:%d", tlsPort))
				c.SIP.TLS = &config.SIPTLS{Cert: certFile, Key: keyFile}
			}, alice, bob)
			uri := "tcp:" + p.addr()
			d := config.Dispatcher{ProbeInterval: config.Duration(time.Second), Algorithm: "hash-to"}
			if tr == "tls" {
				uri = fmt.Sprintf("tls:127.0.0.1:%d", tlsPort)
				d.TLSCA = certFile
			}
			d.Backends = []config.DispatcherBackend{{URI: uri}}
			lb := startDispatcherBox(t, d)
			var st struct{ Dispatcher dispatch.Status }
			waitFor(t, 20*time.Second, "the dispatcher's connections to the PBX", func() bool {
				if err := lb.status(&st); err != nil || len(st.Dispatcher.Backends) != 1 {
					return false
				}
				b := st.Dispatcher.Backends[0]
				return b.Transport == tr && b.Connections != nil && *b.Connections == dispatch.DefaultBackendConns && b.Up
			})

			bobPort := freePorts(t, 2)
			runSipp(t, sippOpts{
				scenario: "register.xml", remote: lb.addr(), port: bobPort,
				service: bob.Number, user: bob.Number, pass: bob.Secret,
				keys: map[string]string{"expires": "300"},
			}, 0)
			var reg struct {
				Registrations []struct{ AOR, Contact, Source string } `json:"registrations"`
			}
			if err := p.status(&reg); err != nil {
				t.Fatal(err)
			}
			if r := reg.Registrations; len(r) != 1 || !strings.HasPrefix(r[0].Source, tr+":127.0.0.1:") {
				t.Fatalf("the PBX's registrations %+v: want bob's, come over %s from the dispatcher", r, tr)
			}

			callee := startSipp(t, sippOpts{scenario: "uas.xml", port: bobPort, service: bob.Number})
			callee.waitBound()
			runSipp(t, sippOpts{
				scenario: "uac.xml", remote: lb.addr(), service: bob.Number,
				user: alice.Number, pass: alice.Secret, keys: caller(alice),
			}, 0)
			callee.wait(0)
			waitFor(t, 10*time.Second, "the call's CDR", func() bool {
				recs, err := p.cdrs()
				return err == nil && len(recs) == 1
			})

			// The PBX restarts: it keeps bob's registration, the
			// dispatcher connects again from the same ports, and the PBX
			// reaches bob through them without a new REGISTER.
			p.stop()
			p.start()
			waitFor(t, 20*time.Second, "the dispatcher's connections to the restarted PBX", func() bool {
				if err := lb.status(&st); err != nil || len(st.Dispatcher.Backends) != 1 {
					return false
				}
				b := st.Dispatcher.Backends[0]
				return b.Connections != nil && *b.Connections == dispatch.DefaultBackendConns && b.Up
			})
			callee2 := startSipp(t, sippOpts{scenario: "uas.xml", port: bobPort, service: bob.Number})
			callee2.waitBound()
			runSipp(t, sippOpts{
				scenario: "uac.xml", remote: lb.addr(), service: bob.Number,
				user: alice.Number, pass: alice.Secret, keys: caller(alice),
			}, 0)
			callee2.wait(0)
			waitFor(t, 10*time.Second, "the second call's CDR", func() bool {
				recs, err := p.cdrs()
				return err == nil && len(recs) == 2
			})
		})
	}
}

// TestDispatcherDialsPhone: bob (baresip) registers through the real
// binary over TCP; the dispatcher restarts, which closes his connection;
// alice's call to him (sipp over UDP) reaches him all the same: the
// dispatcher opens a connection to his Contact for the PBX's INVITE, and
// the call connects and ends.
func TestDispatcherDialsPhone(t *testing.T) {
	needTools(t, "sipp", "baresip")
	p := startPBX(t, alice, bob)
	lb := startDispatcherBox(t, config.Dispatcher{
		Backends:      []config.DispatcherBackend{{URI: p.addr()}},
		ProbeInterval: config.Duration(time.Second),
	}, withStreams(0))
	b := startPhone(t, bob, lb.addr(), 600, func(cfg, account *string) {
		*account = fmt.Sprintf("%q <sip:%s@%s;transport=tcp>;auth_pass=%s;regint=300;answermode=auto\n",
			bob.Name, bob.Number, lb.addr(), bob.Secret)
	})
	b.waitRegistered(20 * time.Second)
	lb.stop()
	lb.start()

	runSipp(t, sippOpts{scenario: "uac.xml", remote: lb.addr(), service: bob.Number, port: freePorts(t, 2),
		user: alice.Number, pass: alice.Secret, keys: caller(alice), pause: time.Second}, 0)
	waitFor(t, 10*time.Second, "Bob's call established and closed", func() bool {
		return countEvents(b, "CALL_ESTABLISHED") >= 1 && countEvents(b, "CALL_CLOSED") >= 1
	})
	if !strings.Contains(lb.log.String(), "dispatcher opened a connection to a phone") {
		t.Errorf("the call reached bob without a connection the dispatcher opened (did he connect again first?):\n%s", lastLines(lb.log.String(), 30))
	}
}
