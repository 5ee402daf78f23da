package nstest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/twin"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// ownAddr is box n's own LAN address with the SIP port: what
// `twinpbx dns-records --both` names.
func (p *pair) ownAddr(n testbed.Node) string {
	return netip.AddrPortFrom(p.bed.Addr(n), 5060).String()
}

// bindingSources returns the sources of box n's bindings by AOR.
func (p *pair) bindingSources(n testbed.Node) (map[string]string, error) {
	out, err := exec.Command(binary, "status", "--data", p.boxes[n].dir).Output()
	if err != nil {
		return nil, err
	}
	var s struct {
		Registrations []struct {
			AOR    string `json:"aor"`
			Source string `json:"source"`
		} `json:"registrations"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("reading the status of %s: %w", n, err)
	}
	m := map[string]string{}
	for _, r := range s.Registrations {
		m[r.AOR] = r.Source
	}
	return m, nil
}

// forwarderCounts reads box n's forwarder counts from its status.
func (p *pair) forwarderCounts(n testbed.Node) (passed, refused uint64, err error) {
	out, err := exec.Command(binary, "status", "--data", p.boxes[n].dir).Output()
	if err != nil {
		return 0, 0, err
	}
	var s struct {
		Cluster struct {
			Forwarder *twin.ForwarderStatus `json:"forwarder"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return 0, 0, fmt.Errorf("reading the status of %s: %w", n, err)
	}
	if s.Cluster.Forwarder == nil {
		return 0, 0, fmt.Errorf("the status of %s shows no forwarder", n)
	}
	return s.Cluster.Forwarder.Passed, s.Cluster.Forwarder.Refused, nil
}

// exchangeFrom sends one raw SIP request from phone to target (UDP, from
// port 5064, clear of sipp's) and returns the first final answer, or an
// error after wait. LOCAL in raw becomes the phone's address.
func (p *pair) exchangeFrom(phone testbed.Node, target, raw string, wait time.Duration) (*sip.Response, error) {
	local := netip.AddrPortFrom(p.bed.Addr(phone), 5064)
	var conn *net.UDPConn
	err := p.bed.InNS(p.bed.NS(phone), func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
		return err
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	to, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, err
	}
	if _, err := conn.WriteToUDP([]byte(strings.ReplaceAll(raw, "LOCAL", local.String())), to); err != nil {
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	for {
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return nil, fmt.Errorf("no final answer from %s: %w", target, err)
		}
		msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		if res, ok := msg.(*sip.Response); ok && res.StatusCode >= 200 {
			return res, nil
		}
	}
}

// rawRegister is an unauthenticated REGISTER of ext to target, with extra
// header lines.
func rawRegister(target string, ext config.Extension, callID, extra string) string {
	return "REGISTER sip:" + target + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP LOCAL;rport;branch=z9hG4bK-" + callID + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + ext.Number + "@" + target + ">;tag=t" + callID + "\r\n" +
		"To: <sip:" + ext.Number + "@" + target + ">\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:" + ext.Number + "@LOCAL>\r\nExpires: 300\r\n" + extra +
		"Content-Length: 0\r\n\r\n"
}

// TestBothBoxesTakeRequests: with the site's SRV records naming both
// boxes (`dns-records --both`), a phone may send to either box's own
// address. One bed, in order:
//
//  1. bob registers (digest) at the standby's own address and gets the
//     active registrar's 200; the active holds bob's own address;
//  2. alice, registered on the VIP, calls bob: the active rings bob
//     directly;
//  3. alice calls bob through the standby's own address: the answer, ACK
//     and BYE go through the standby (its Record-Route); alice registers
//     over TCP there, the forwarder as her binding's source;
//  4. a REGISTER to the VIP with a forged forwarding mark gets 403;
//  5. the standby goes into maintenance and the active is powered off:
//     with no box serving, the standby's own address answers 503 with
//     Retry-After;
//  6. maintenance off: the former standby takes over; a REGISTER to its
//     own address gets 200, and bob, registered through it before, is
//     called through the VIP without registering again.
func TestBothBoxesTakeRequests(t *testing.T) {
	// SIP on the VIP over UDP and TCP: the forwarders take both.
	p := idlePair(t, 2, withTCP)
	for _, n := range []testbed.Node{testbed.A, testbed.B} {
		p.start(n)
	}
	active, standby := p.waitSettled(20 * time.Second)
	p.waitInSync(standby, 20*time.Second)
	bobAddr := netip.AddrPortFrom(p.bed.Addr(testbed.Phone(1)), testbed.SipPhonePort).String()

	// 1. REGISTER through the standby, answered by the active's registrar.
	reg := p.bed.StartSipp(t, testbed.Phone(1), p.ownAddr(standby), "register.xml", bob, bob.Number, "-key", "expires", "600")
	waitSipp(t, reg, "bob registering at the standby's own address")
	waitFor(t, 20*time.Second, "bob's binding on the active with bob's own address", func() (bool, string) {
		src, err := p.bindingSources(active)
		return err == nil && src[bob.Number] == "udp:"+bobAddr, fmt.Sprint(src, err)
	})
	if passed, refused, err := p.forwarderCounts(standby); err != nil || passed < 2 || refused != 0 {
		t.Errorf("the standby's forwarder: passed %d, refused %d (%v); want the two REGISTERs passed", passed, refused, err)
	}

	// 2. alice, registered on the VIP, calls bob: the active rings bob
	// directly.
	reg = p.sipp(testbed.Phone(0), "register.xml", alice, alice.Number, "-key", "expires", "600")
	waitSipp(t, reg, "alice registering on the VIP")
	p.call("alice calls bob through the VIP")

	// 3. A call from a phone that talks to the standby.
	uas := p.sipp(testbed.Phone(1), "uas.xml", config.Extension{}, bob.Number)
	uac := p.bed.StartSipp(t, testbed.Phone(0), p.ownAddr(standby), "uac.xml", alice, bob.Number,
		"-key", "caller", alice.Number, "-key", "caller_name", alice.Name,
		"-auth_uri", bob.Number+"@"+p.ownAddr(standby), "-d", "200")
	waitSipp(t, uac, "alice calls bob through the standby's own address: caller")
	waitSipp(t, uas, "alice calls bob through the standby's own address: callee")

	// A phone on TCP at the standby's own address: registered with the
	// forwarder as its source (the active reaches it over its connection
	// to the standby).
	reg = p.bed.StartSipp(t, testbed.Phone(0), p.ownAddr(standby), "register.xml", alice, alice.Number,
		"-key", "expires", "600", "-t", "t1")
	waitSipp(t, reg, "alice registering over TCP at the standby's own address")
	waitFor(t, 20*time.Second, "alice's binding on the active through the standby's forwarder", func() (bool, string) {
		src, err := p.bindingSources(active)
		return err == nil && src[alice.Number] == "udp:"+p.ownAddr(standby), fmt.Sprint(src, err)
	})

	// The extra hop, for the record (no assertion on speed): the median
	// round trip of an unauthenticated REGISTER (answered 401) to the
	// VIP and through the standby.
	for _, to := range []struct{ name, addr string }{{"VIP", p.bed.VIP().Addr().String() + ":5060"}, {"standby", p.ownAddr(standby)}} {
		var rtts []time.Duration
		for i := range 21 {
			start := time.Now()
			res, err := p.exchangeFrom(testbed.Phone(0), to.addr, rawRegister(to.addr, alice, fmt.Sprintf("rtt-%s-%d", to.name, i), ""), 5*time.Second)
			if err != nil || res.StatusCode != 401 {
				t.Fatalf("REGISTER to the %s: %v %v", to.name, res, err)
			}
			rtts = append(rtts, time.Since(start))
		}
		slices.Sort(rtts)
		t.Logf("REGISTER answered 401 through the %s: median %v (of 21, each with a socket opened in the phone's namespace)", to.name, rtts[10])
	}

	// 4. A forged mark.
	vip := p.bed.VIP().Addr().String() + ":5060"
	forged := twin.MarkHeader + ": " + string(standby) + " " + strconv.FormatInt(time.Now().Unix(), 10) +
		" udp:192.0.2.99:5060 bm90LXRoZS1wYWlyaW5nLWtleQ\r\n"
	res, err := p.exchangeFrom(testbed.Phone(0), vip, rawRegister(vip, alice, "forged-1", forged), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 403 {
		t.Errorf("REGISTER with a forged mark: %s, want 403", res.StartLine())
	}

	// 5. No box serves: the standby's own address answers 503.
	if out, err := p.exec("maintenance", "on", "--data", p.boxes[standby].dir); err != nil {
		t.Fatalf("maintenance on: %v\n%s", err, out)
	}
	p.waitRole(standby, "maintenance", 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.bed.PowerOff(ctx, active); err != nil {
		t.Fatal(err)
	}
	// Until the standby counts its twin silent (dead_time) it still
	// passes requests on, unanswered: each try waits 2 s.
	waitFor(t, 30*time.Second, "503 with Retry-After at the standby's own address", func() (bool, string) {
		callID := "alone-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		res, err := p.exchangeFrom(testbed.Phone(0), p.ownAddr(standby), rawRegister(p.ownAddr(standby), alice, callID, ""), 2*time.Second)
		if err != nil {
			return false, err.Error()
		}
		ra := res.GetHeader("Retry-After")
		return res.StatusCode == 503 && ra != nil && ra.Value() != "", res.StartLine()
	})
	if _, refused, err := p.forwarderCounts(standby); err != nil || refused == 0 {
		t.Errorf("the standby's forwarder counted %d refusals (%v), want some", refused, err)
	}

	// 6. The former standby takes over and serves its own address.
	if out, err := p.exec("maintenance", "off", "--data", p.boxes[standby].dir); err != nil {
		t.Fatalf("maintenance off: %v\n%s", err, out)
	}
	p.waitRole(standby, "active", 20*time.Second)
	// The role shows before the box serves the VIP (address up, PBX
	// reloaded): until then its forwarder still answers 503, which a
	// phone retries after Retry-After.
	waitFor(t, 30*time.Second, "the new active's own address passing requests to its PBX", func() (bool, string) {
		callID := "back-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		res, err := p.exchangeFrom(testbed.Phone(0), p.ownAddr(standby), rawRegister(p.ownAddr(standby), alice, callID, ""), 2*time.Second)
		if err != nil {
			return false, err.Error()
		}
		return res.StatusCode == 401, res.StartLine()
	})
	reg = p.bed.StartSipp(t, testbed.Phone(0), p.ownAddr(standby), "register.xml", alice, alice.Number, "-key", "expires", "600")
	waitSipp(t, reg, "alice registering at the new active's own address")
	src, err := p.bindingSources(standby)
	if err != nil {
		t.Fatal(err)
	}
	if src[bob.Number] != "udp:"+bobAddr {
		t.Errorf("the new active's binding for bob has source %q, want bob's own %q", src[bob.Number], "udp:"+bobAddr)
	}
	p.call("alice calls bob after the failover")
}
