package nstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
	"github.com/twinpbx/twinpbx/tui"
)

// The phones of a dispatcher pair's bed: the caller, and three PBX
// stand-ins (sipp) behind the dispatcher.
var (
	caller   = testbed.Phone(0)
	backends = []testbed.Node{testbed.Phone(1), testbed.Phone(2), testbed.Phone(3)}
)

// dispatcherPair is a pair whose boxes are dispatchers in front of the
// backends, probing them every 200 ms and counting one missed probe as
// down. The boxes are not started yet.
func dispatcherPair(t *testing.T) *pair {
	t.Helper()
	p := idlePair(t, 1+len(backends), nil)
	for _, n := range []testbed.Node{testbed.A, testbed.B} {
		p.writeConfig(n, func(_ testbed.Node, c *config.Config) {
			c.Extensions, c.SIP.RTPPorts = nil, ""
			d := &config.Dispatcher{Algorithm: "round-robin", ProbeInterval: config.Duration(200 * time.Millisecond), DownAfter: 1, UpAfter: 1}
			for _, b := range backends {
				d.Backends = append(d.Backends, config.DispatcherBackend{URI: p.backendAddr(b).String()})
			}
			c.Dispatcher = d
		})
	}
	return p
}

// backendAddr is where backend b takes SIP.
func (p *pair) backendAddr(b testbed.Node) netip.AddrPort {
	return netip.AddrPortFrom(p.bed.Addr(b), 5060)
}

// startBackend runs a sipp PBX stand-in on backend b: it answers OPTIONS,
// and calls (INVITE, ACK, re-INVITEs, BYE), without a call limit.
func (p *pair) startBackend(b testbed.Node) *testbed.Process {
	p.t.Helper()
	proc, err := p.bed.Start(b, "sipp", "-sf", filepath.Join(testbed.SippScenarios, "dispatch-backend.xml"),
		"-i", p.bed.Addr(b).String(), "-p", "5060", "-mi", p.bed.Addr(b).String(), "-mp", "6000", "-nostdin")
	if err != nil {
		p.t.Fatalf("starting the backend on %s: %v", b, err)
	}
	p.t.Cleanup(func() {
		select {
		case <-proc.Done():
		default:
			proc.Kill()
		}
	})
	return proc
}

// placeCalls runs n calls from the caller to the VIP (INVITE, ACK,
// re-INVITE, ACK, BYE, each request of a call reaching its backend
// through the dispatcher) and fails the test unless every one succeeds.
func (p *pair) placeCalls(n int, what string) {
	p.t.Helper()
	vip := netip.AddrPortFrom(p.bed.VIP().Addr(), 5060).String()
	proc, err := p.bed.Start(caller, "sipp", "-sf", filepath.Join(testbed.SippScenarios, "dispatch-uac.xml"),
		"-i", p.bed.Addr(caller).String(), "-p", strconv.Itoa(testbed.SipPhonePort), "-mp", "6000",
		"-s", "200", "-m", strconv.Itoa(n), "-r", "20", "-l", strconv.Itoa(n),
		"-nostdin", "-timeout", "20", "-timeout_error", vip)
	if err != nil {
		p.t.Fatalf("%s: starting sipp: %v", what, err)
	}
	testbed.WaitSipp(p.t, proc, what)
}

// dispatchStatus is the part of a dispatcher pair box's `twinpbx status`
// these tests read.
type dispatchStatus struct {
	Role       string `json:"role"`
	Service    string `json:"service"`
	Dispatcher struct {
		Backends []struct {
			Addr string `json:"addr"`
			Up   bool   `json:"up"`
			Sent uint64 `json:"sent"`
		} `json:"backends"`
	} `json:"dispatcher"`
	Cluster struct {
		Serving bool `json:"serving"`
	} `json:"cluster"`
}

// dispatchStatus asks box n's running twinpbx.
func (p *pair) dispatchStatus(n testbed.Node) (dispatchStatus, error) {
	out, err := exec.Command(binary, "status", "--data", p.boxes[n].dir).Output()
	if err != nil {
		return dispatchStatus{}, err
	}
	var s dispatchStatus
	if err := json.Unmarshal(out, &s); err != nil {
		return dispatchStatus{}, fmt.Errorf("reading the status of %s: %w\n%s", n, err, out)
	}
	return s, nil
}

// upBackends is the addresses of the backends box n counts up, sorted.
func (p *pair) upBackends(n testbed.Node) ([]string, error) {
	s, err := p.dispatchStatus(n)
	if err != nil {
		return nil, err
	}
	if s.Service != "dispatcher" {
		return nil, fmt.Errorf("box %s runs %q, not the dispatcher", n, s.Service)
	}
	var up []string
	for _, b := range s.Dispatcher.Backends {
		if b.Up {
			up = append(up, b.Addr)
		}
	}
	slices.Sort(up)
	return up, nil
}

// rawPhone is a phone whose requests the test writes itself, to hold a
// call across a failover and end it after.
type rawPhone struct {
	t     *testing.T
	conn  *net.UDPConn
	local netip.AddrPort
}

// newRawPhone opens a SIP socket on phone n at port.
func newRawPhone(t *testing.T, bed *testbed.Bed, n testbed.Node, port int) *rawPhone {
	t.Helper()
	local := netip.AddrPortFrom(bed.Addr(n), uint16(port))
	var conn *net.UDPConn
	err := bed.InNS(bed.NS(n), func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
		return err
	})
	if err != nil {
		t.Fatalf("opening the phone's socket on %s: %v", n, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawPhone{t: t, conn: conn, local: local}
}

// dialog is an established call as the phone holds it.
type dialog struct {
	callID, fromTag, toTag string
	target                 string   // the Contact of the 200
	route                  []string // the 200's Record-Route, reversed
	cseq                   int
}

func token() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// request builds one request of d (an initial INVITE while d has no
// to-tag) to ruri.
func (ph *rawPhone) request(method sip.RequestMethod, ruri string, d *dialog, to string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n", ph.local, token())
	for _, r := range d.route {
		fmt.Fprintf(&b, "Route: %s\r\n", r)
	}
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:100@%s>;tag=%s\r\n", ph.local.Addr(), d.fromTag)
	fmt.Fprintf(&b, "To: %s\r\n", to)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d %s\r\n", d.callID, d.cseq, method)
	fmt.Fprintf(&b, "Contact: <sip:100@%s>\r\n", ph.local)
	if body != "" {
		fmt.Fprintf(&b, "Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	} else {
		b.WriteString("Content-Length: 0\r\n\r\n")
	}
	return b.String()
}

// transact sends req to dest again every 500 ms, as a phone retransmits
// over UDP, until a final answer to its Call-ID and method arrives or
// 10 s have passed.
func (ph *rawPhone) transact(dest netip.AddrPort, req string, callID string, method sip.RequestMethod) (*sip.Response, error) {
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 65535)
	for time.Now().Before(deadline) {
		if _, err := ph.conn.WriteToUDPAddrPort([]byte(req), dest); err != nil {
			return nil, fmt.Errorf("sending %s: %w", method, err)
		}
		next := time.Now().Add(500 * time.Millisecond)
		for {
			_ = ph.conn.SetReadDeadline(next)
			n, _, err := ph.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break // time to send again
			}
			m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			if err != nil {
				continue
			}
			res, ok := m.(*sip.Response)
			if ok && res.StatusCode >= 200 && res.CallID() != nil && res.CallID().Value() == callID && res.CSeq().MethodName == method {
				return res, nil
			}
		}
	}
	return nil, fmt.Errorf("no final answer to %s within 10s", method)
}

// call sets up a call through the VIP: INVITE, 200, ACK.
func (ph *rawPhone) call(vip netip.AddrPort) *dialog {
	ph.t.Helper()
	d := &dialog{callID: "held-" + token(), fromTag: token(), cseq: 1}
	to := fmt.Sprintf("<sip:200@%s>", vip)
	sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n", ph.local.Addr())
	res, err := ph.transact(vip, ph.request(sip.INVITE, "sip:200@"+vip.String(), d, to, sdp), d.callID, sip.INVITE)
	if err != nil {
		ph.t.Fatalf("the held call: %v", err)
	}
	if res.StatusCode != 200 {
		ph.t.Fatalf("the held call: INVITE answered %d %s", res.StatusCode, res.Reason)
	}
	d.toTag, _ = res.To().Params.Get("tag")
	if ct := res.Contact(); ct != nil {
		d.target = ct.Address.String()
	}
	for _, h := range res.GetHeaders("Record-Route") {
		d.route = append([]string{h.Value()}, d.route...)
	}
	if len(d.route) == 0 || d.target == "" || d.toTag == "" {
		ph.t.Fatalf("the held call's 200 has no Record-Route, Contact or to-tag:\n%s", res)
	}
	to += ";tag=" + d.toTag
	ack := ph.request(sip.ACK, d.target, d, to, "")
	if _, err := ph.conn.WriteToUDPAddrPort([]byte(ack), vip); err != nil {
		ph.t.Fatalf("sending the ACK: %v", err)
	}
	return d
}

// hangUp sends the BYE of d along its route (the first hop is the VIP)
// and returns the final answer.
func (ph *rawPhone) hangUp(d *dialog, vip netip.AddrPort) (*sip.Response, error) {
	d.cseq++
	to := fmt.Sprintf("<sip:200@%s>;tag=%s", vip, d.toTag)
	return ph.transact(vip, ph.request(sip.BYE, d.target, d, to, ""), d.callID, sip.BYE)
}

// TestDispatcherPair runs two dispatcher boxes as a twin pair in front of
// three sipp backends and breaks the active one: calls go through before;
// a backend that dies is seen down by both boxes (the standby probes the
// backends too); after the standby took the VIP new calls go through at
// once, none to the dead backend, and the BYE of a call set up before the
// failure reaches its backend through the new active (the backend is in
// the call's Record-Route, the dispatcher's address is the VIP).
func TestDispatcherPair(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(t *testing.T, p *pair, active testbed.Node)
		// importConfig: a config without the dead backend is imported
		// on the active before the break; the standby must apply it.
		importConfig bool
	}{
		{"active SIGKILL", func(t *testing.T, p *pair, a testbed.Node) {
			pid, err := p.worker(a)
			if err == nil {
				err = syscall.Kill(pid, syscall.SIGKILL)
			}
			if err != nil {
				t.Fatal(err)
			}
		}, false},
		{"active SIGSTOP", func(t *testing.T, p *pair, a testbed.Node) {
			if err := p.signalBox(a, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"active power off", func(t *testing.T, p *pair, a testbed.Node) {
			if err := p.bed.PowerOff(context.Background(), a); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"LAN carrier cut on the active", func(t *testing.T, p *pair, a testbed.Node) {
			if err := p.bed.CutLink(context.Background(), a, testbed.LAN, testbed.Carrier); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := dispatcherPair(t)
			var procs []*testbed.Process
			for _, b := range backends {
				procs = append(procs, p.startBackend(b))
			}
			p.start(testbed.A)
			p.start(testbed.B)
			active, standby := p.waitSettled(20 * time.Second)
			p.placeCalls(6, "calls through the active")

			// A backend dies: both boxes count it down, the others up.
			procs[2].Kill()
			want := []string{p.backendAddr(backends[0]).String(), p.backendAddr(backends[1]).String()}
			slices.Sort(want)
			for _, n := range []testbed.Node{active, standby} {
				waitFor(t, 20*time.Second, fmt.Sprintf("%s counts the two live backends up, the dead one down", n), func() (bool, string) {
					up, err := p.upBackends(n)
					return err == nil && slices.Equal(up, want), fmt.Sprint(up, err)
				})
			}

			p.checkDashboard(standby)
			if c.importConfig {
				p.importWithout(active, standby, backends[2])
			}

			vip := netip.AddrPortFrom(p.bed.VIP().Addr(), 5060)
			ph := newRawPhone(t, p.bed, caller, testbed.SipPhonePort+10)
			held := ph.call(vip)

			pr := p.probe()
			waitFor(t, 15*time.Second, "the probe is answered", func() (bool, string) {
				r := pr.Report()
				return r.Answered > 5, r.String()
			})
			broken := time.Now()
			c.breakIt(t, p, active)
			waitFor(t, 20*time.Second, "the standby takes over", func() (bool, string) {
				s, err := p.dispatchStatus(standby)
				return err == nil && s.Role == "active" && s.Cluster.Serving, fmt.Sprint(s.Role, err)
			})
			tookOver := time.Since(broken)
			// Generous: a loaded machine delays the phone's next answer;
			// the outage it saw is judged below.
			waitFor(t, 15*time.Second, "the phone is answered by "+string(standby), func() (bool, string) {
				r := pr.Report()
				if len(r.Runs) == 0 {
					return false, r.String()
				}
				last := r.Runs[len(r.Runs)-1]
				return last.Node == string(standby) && last.Last.After(broken.Add(time.Second)), r.String()
			})

			// New calls at once, none lost to the dead backend: the new
			// active's view of the backends was current.
			p.placeCalls(6, "calls through the new active")
			s, err := p.dispatchStatus(standby)
			if err != nil {
				t.Fatal(err)
			}
			if c.importConfig && len(s.Dispatcher.Backends) != 2 {
				t.Errorf("the new active dispatches to %d backends, want the imported config's 2", len(s.Dispatcher.Backends))
			}
			for _, b := range s.Dispatcher.Backends {
				if b.Addr == p.backendAddr(backends[2]).String() && b.Sent != 0 {
					t.Errorf("the new active sent %d new requests to the dead backend %s", b.Sent, b.Addr)
				}
			}
			res, err := ph.hangUp(held, vip)
			if err != nil {
				t.Fatalf("the BYE of the call held across the failover: %v", err)
			}
			if res.StatusCode != 200 {
				t.Errorf("the BYE of the call held across the failover: %d %s, want 200 from its backend", res.StatusCode, res.Reason)
			}

			r := pr.Stop()
			t.Logf("%s: standby serving %v after the break; phone saw %s", c.name, tookOver.Round(time.Millisecond), r)
			if r.LongestOutage > maxOutage {
				t.Errorf("longest outage %v exceeds %v", r.LongestOutage, maxOutage)
			}
			if r.Interleaved {
				t.Errorf("both boxes answered on the VIP: %s", r)
			}
		})
	}
}

// importWithout imports on the active a config that leaves backend gone
// out, and waits until the standby, by replication, dispatches with it
// too.
func (p *pair) importWithout(active, standby, gone testbed.Node) {
	p.t.Helper()
	c := p.config(active)
	text, err := os.ReadFile(p.boxes[active].cfgPath)
	if err == nil {
		c, err = config.Parse("active's config", text)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	c.Dispatcher.Backends = slices.DeleteFunc(c.Dispatcher.Backends, func(b config.DispatcherBackend) bool {
		return b.URI == p.backendAddr(gone).String()
	})
	if text, err = config.Marshal(c); err != nil {
		p.t.Fatal(err)
	}
	path := filepath.Join(p.t.TempDir(), "import.yaml")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		p.t.Fatal(err)
	}
	if out, err := p.exec("config", "import", "--data", p.boxes[standby].dir, path); err == nil {
		p.t.Errorf("the standby took a config import: %s", out)
	}
	if out, err := p.exec("config", "import", "--data", p.boxes[active].dir, path); err != nil {
		p.t.Fatalf("importing a config on the active: %v: %s", err, out)
	}
	for _, n := range []testbed.Node{active, standby} {
		waitFor(p.t, 20*time.Second, fmt.Sprintf("%s dispatches to the two backends left", n), func() (bool, string) {
			s, err := p.dispatchStatus(n)
			return err == nil && len(s.Dispatcher.Backends) == 2, fmt.Sprint(s.Dispatcher.Backends, err)
		})
	}
}

// checkDashboard checks that the console's dashboard reads box n's status
// and shows the pair.
func (p *pair) checkDashboard(n testbed.Node) {
	p.t.Helper()
	out, err := exec.Command(binary, "status", "--data", p.boxes[n].dir).Output()
	if err != nil {
		p.t.Fatal(err)
	}
	v, err := tui.ParseStatus(out)
	if err != nil {
		p.t.Fatal(err)
	}
	lines := strings.Join(tui.Render(tui.English, v, time.Now()), "\n")
	if v.Cluster == nil || !strings.Contains(lines, "Twin "+string(n.Twin())+": active") {
		p.t.Errorf("the dashboard of %s shows no active twin:\n%s", n, lines)
	}
}
