package isdngw

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/isdn/exchange"
)

// freePort returns a UDP port that was free a moment ago.
func freePort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

type bed struct {
	x    *exchange.Exchange
	gw   *Gateway
	ctx  context.Context
	sipp netip.AddrPort // where the "PBX" (sipp) listens
	gwAt netip.AddrPort
}

// startBed joins an exchange and a gateway on a card pipe; the gateway's PBX
// is sipp on a port of its own.
func startBed(t *testing.T, typ isdn.SpanType, plan func(string) exchange.Reply, opts ...func(*Config)) *bed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	a, z := card.Pipe()
	b := &bed{ctx: ctx, sipp: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t)),
		gwAt: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))}
	var err error
	if b.x, err = exchange.New(a, exchange.Config{Type: typ, Plan: plan}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listen: b.gwAt, PBX: b.sipp, Type: typ}
	for _, o := range opts {
		o(&cfg)
	}
	if b.gw, err = New(z, cfg); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = b.x.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := b.gw.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("gateway: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); _ = a.Close(); wg.Wait() })
	if err := b.x.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

type sippRun struct {
	done chan struct{}
	code int
	msgs string
	out  bytes.Buffer
}

// placed returns the next call the gateway placed on the line, failing
// the test if none comes before the bed's deadline.
func (b *bed) placed(t *testing.T) *exchange.Call {
	t.Helper()
	select {
	case c := <-b.x.Placed():
		return c
	case <-b.ctx.Done():
		t.Fatal("no call reached the exchange")
		return nil
	}
}

func startSipp(t *testing.T, at netip.AddrPort, args ...string) *sippRun {
	t.Helper()
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Skip("sipp is not installed (scripts/install-deps.sh test)")
	}
	dir := t.TempDir()
	s := &sippRun{done: make(chan struct{}), msgs: filepath.Join(dir, "msgs")}
	args = append([]string{"-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", strconv.Itoa(int(at.Port())),
		"-mp", strconv.Itoa(int(freePort(t))), "-m", "1", "-nostdin", "-timeout", "30", "-timeout_error",
		"-trace_msg", "-message_file", s.msgs}, args...)
	cmd := exec.Command("sipp", args...)
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			s.code = ee.ExitCode()
		}
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			m, _ := os.ReadFile(s.msgs)
			t.Logf("sipp messages:\n%s", m)
		}
	})
	return s
}

func (s *sippRun) wait(t *testing.T, want int) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		t.Fatal("sipp did not finish")
	}
	if s.code != want {
		t.Errorf("sipp exit code %d, want %d", s.code, want)
	}
}

func (s *sippRun) messages() string { b, _ := os.ReadFile(s.msgs); return string(b) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// A call from the line reaches the PBX (sipp answering and echoing the
// RTP it gets): the exchange hears its own tone back, having crossed
// A-law → RTP (PCMU converted, or PCMA passed through, as sipp answers) →
// echo → A-law; the exchange hangs up and the PBX gets a BYE.
func TestCallFromLine(t *testing.T) {
	tests := []struct {
		name string
		typ  isdn.SpanType
		uas  []string
	}{
		{"BRI PTMP, PCMU", isdn.BRIPointToMultipoint, []string{"-sn", "uas"}},
		{"PRI, PCMU", isdn.PRI, []string{"-sn", "uas"}},
		{"PRI, PCMA", isdn.PRI, []string{"-sf", filepath.Join("testdata", "uas-pcma.xml"), "-s", "4930555"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBed(t, tt.typ, nil)
			s := startSipp(t, b.sipp, append(tt.uas, "-rtp_echo")...)
			waitFor(t, b.ctx, "sipp to listen", func() bool {
				c, err := net.ListenPacket("udp", b.sipp.String())
				if err == nil {
					c.Close()
				}
				return err != nil
			})
			c, err := b.x.Dial(b.ctx, exchange.DialParams{Calling: "030123456", Called: "4930555", Restricted: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Wait(b.ctx, exchange.Connected); err != nil {
				t.Fatal(err)
			}
			waitFor(t, b.ctx, "echoed audio", func() bool { return len(c.Heard()) >= 4000 })
			heard := c.Heard()
			if sh := exchange.Share(heard[len(heard)-2400:], 1000); sh < 0.8 {
				t.Errorf("echoed tone share %.2f", sh)
			}
			if err := c.Hangup(b.ctx, 16); err != nil {
				t.Fatal(err)
			}
			if err := c.Wait(b.ctx, exchange.Released); err != nil {
				t.Fatal(err)
			}
			s.wait(t, 0)
			m := s.messages()
			for _, want := range []string{"INVITE sip:4930555@", "From: \"Anonymous\" <sip:anonymous@anonymous.invalid>", "Privacy: id", "BYE sip:"} {
				if !bytes.Contains([]byte(m), []byte(want)) {
					t.Errorf("sipp did not see %q", want)
				}
			}
		})
	}
}

// Calls from the PBX (sipp calling) reach the line: one answered by the
// exchange and hung up by the PBX, one refused busy (486 from cause 17).
func TestCallToLine(t *testing.T) {
	plan := func(called string) exchange.Reply {
		if called == "110" {
			return exchange.Reply{Ring: 500 * time.Millisecond}
		}
		return exchange.Reply{Reject: 17}
	}
	tests := []struct {
		called string
		code   int
		status exchange.Status
		cause  uint8
		saw    string
	}{
		{"110", 0, exchange.Connected, 16, "SIP/2.0 200"},
		{"0301111", 1, exchange.Released, 17, "SIP/2.0 486"},
	}
	for _, tt := range tests {
		t.Run(tt.called, func(t *testing.T) {
			b := startBed(t, isdn.BRIPointToMultipoint, plan)
			s := startSipp(t, b.sipp, "-sn", "uac", "-s", tt.called, "-d", "1500", b.gwAt.String())
			c := b.placed(t)
			if c.Called != tt.called {
				t.Errorf("called %q", c.Called)
			}
			if err := c.Wait(b.ctx, tt.status); err != nil {
				t.Fatal(err)
			}
			if err := c.Wait(b.ctx, exchange.Released); err != nil {
				t.Fatal(err)
			}
			if c.Cause() != tt.cause {
				t.Errorf("cause %d, want %d", c.Cause(), tt.cause)
			}
			s.wait(t, tt.code)
			if m := s.messages(); !bytes.Contains([]byte(m), []byte(tt.saw)) {
				t.Errorf("sipp did not see %q", tt.saw)
			}
		})
	}
}

// Only the PBX may place calls through the gateway.
func TestForeignInviteRefused(t *testing.T) {
	b := startBed(t, isdn.BRIPointToMultipoint, nil, func(c *Config) {
		c.PBX = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), 5060)
	})
	s := startSipp(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t)), "-sn", "uac", "-s", "110", b.gwAt.String())
	s.wait(t, 1)
	if m := s.messages(); !bytes.Contains([]byte(m), []byte("SIP/2.0 403")) {
		t.Errorf("no 403:\n%s", m)
	}
}

// bound reports whether something listens on the UDP address.
func bound(a netip.AddrPort) bool {
	c, err := net.ListenPacket("udp", a.String())
	if err == nil {
		c.Close()
	}
	return err != nil
}

// Clearing before the answer, both ways: the line gives up on a call the
// PBX lets ring (the PBX gets CANCEL), and the PBX cancels a call the line
// lets ring (the exchange gets DISCONNECT with cause 16, the PBX 487).
func TestCancel(t *testing.T) {
	t.Run("line gives up", func(t *testing.T) {
		b := startBed(t, isdn.PRI, nil)
		s := startSipp(t, b.sipp, "-sf", filepath.Join(scenarios, "uas-cancel.xml"), "-s", "4930555")
		waitFor(t, b.ctx, "sipp to listen", func() bool { return bound(b.sipp) })
		c, err := b.x.Dial(b.ctx, exchange.DialParams{Calling: "030123456", Called: "4930555"})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(b.ctx, exchange.Alerting); err != nil {
			t.Fatal(err)
		}
		if err := c.Hangup(b.ctx, 16); err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(b.ctx, exchange.Released); err != nil {
			t.Fatal(err)
		}
		s.wait(t, 0)
		if !strings.Contains(s.messages(), "CANCEL sip:4930555@") {
			t.Error("sipp saw no CANCEL")
		}
	})
	t.Run("PBX gives up", func(t *testing.T) {
		b := startBed(t, isdn.BRIPointToMultipoint, func(string) exchange.Reply { return exchange.Reply{NoAnswer: true} })
		s := startSipp(t, b.sipp, "-sf", filepath.Join(scenarios, "uac-cancel.xml"), "-s", "110", "-d", "500",
			"-key", "caller", "201", "-key", "caller_name", "Desk", b.gwAt.String())
		c := b.placed(t)
		if err := c.Wait(b.ctx, exchange.Released); err != nil {
			t.Fatal(err)
		}
		if c.Cause() != 16 {
			t.Errorf("cleared with cause %d", c.Cause())
		}
		s.wait(t, 0)
	})
}

// Layer-1 alarms reach the gateway's monitor hook and LineUp.
func TestLayer1(t *testing.T) {
	seen := make(chan card.L1, 8)
	b := startBed(t, isdn.BRIPointToPoint, nil, func(c *Config) { c.OnLayer1 = func(l card.L1) { seen <- l } })
	waitFor(t, b.ctx, "layer 1 up", b.gw.LineUp)
	if err := b.x.SetLayer1(card.L1{Alarms: card.LOS}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, b.ctx, "layer 1 down", func() bool { return !b.gw.LineUp() })
	if st := b.gw.Status(); st.LineUp || st.Alarms != card.LOS || !st.DataLink || st.Calls != 0 {
		t.Errorf("status %+v", st)
	}
	var got []card.L1
	for len(got) < 2 {
		select {
		case l := <-seen:
			got = append(got, l)
		case <-b.ctx.Done():
			t.Fatalf("monitor saw %v", got)
		}
	}
	if !got[0].Up || got[1].Up || got[1].Alarms != card.LOS {
		t.Errorf("monitor saw %v", got)
	}
}

// invite sends one INVITE with body to the gateway from a socket of
// 127.0.0.1 and returns the final response's first line and the text.
func invite(t *testing.T, gw netip.AddrPort, body string) (string, string) {
	t.Helper()
	return inviteWith(t, gw, body, "")
}

// inviteWith is invite with extra header lines (each ending in CRLF).
func inviteWith(t *testing.T, gw netip.AddrPort, body, extra string) (string, string) {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	msg := "INVITE sip:110@" + gw.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-t1\r\n" +
		"From: <sip:201@" + local + ">;tag=t1\r\nTo: <sip:110@" + gw.String() + ">\r\n" +
		"Call-ID: t1@" + local + "\r\nCSeq: 1 INVITE\r\nContact: <sip:201@" + local + ">\r\nMax-Forwards: 70\r\n" + extra +
		"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := conn.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(gw)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no final response: %v", err)
		}
		first, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		if !strings.HasPrefix(first, "SIP/2.0 1") {
			return first, string(buf[:n])
		}
	}
}

// INVITEs the gateway cannot serve get a clear failure response.
func TestInviteRefused(t *testing.T) {
	sdpWith := func(pts string) string {
		return "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP " + pts + "\r\n"
	}
	tests := []struct {
		name   string
		body   string
		want   string
		reason string
	}{
		{"no G.711", sdpWith("18"), "SIP/2.0 488", ""},
		{"no SDP", "", "SIP/2.0 488", ""},
		{"broken SDP", "this is not SDP", "SIP/2.0 488", ""},
	}
	b := startBed(t, isdn.BRIPointToPoint, nil, func(c *Config) {
		c.PBX = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 9)
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, all := invite(t, b.gwAt, tt.body)
			if !strings.HasPrefix(first, tt.want) || !strings.Contains(all, tt.reason) {
				t.Errorf("got %q, want %s with %q:\n%s", first, tt.want, tt.reason, all)
			}
		})
	}
}

// When every B channel is busy, a call from the PBX gets 503 with cause 34.
func TestNoChannel(t *testing.T) {
	// A "PBX" that takes INVITEs and never answers.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	b := startBed(t, isdn.BRIPointToPoint, func(string) exchange.Reply { return exchange.Reply{NoAnswer: true} }, func(c *Config) {
		c.PBX = netip.MustParseAddrPort(silent.LocalAddr().String())
	})
	// Two calls from the exchange hold both B channels, trying the silent
	// PBX.
	for range 2 {
		if _, err := b.x.Dial(b.ctx, exchange.DialParams{Calling: "1", Called: "2"}); err != nil {
			t.Fatal(err)
		}
	}
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n"
	waitFor(t, b.ctx, "both calls at the gateway", func() bool { return b.gw.Status().Calls == 2 })
	first, all := invite(t, b.gwAt, sdp)
	if !strings.HasPrefix(first, "SIP/2.0 503") || !strings.Contains(all, "Reason: Q.850;cause=34") {
		t.Errorf("want 503 with cause 34, got:\n%s", all)
	}
}

// Hold and resume from the PBX (re-INVITEs inside the dialog) are answered
// by the gateway itself; the ISDN call stays up until the BYE.
func TestReinvite(t *testing.T) {
	b := startBed(t, isdn.BRIPointToMultipoint, func(string) exchange.Reply { return exchange.Reply{Ring: 100 * time.Millisecond} })
	s := startSipp(t, b.sipp, "-sf", filepath.Join("testdata", "uac-hold.xml"), "-s", "110", "-d", "300", b.gwAt.String())
	c := b.placed(t)
	if err := c.Wait(b.ctx, exchange.Released); err != nil {
		t.Fatal(err)
	}
	s.wait(t, 0)
	if c.Cause() != 16 {
		t.Errorf("cleared with cause %d", c.Cause())
	}
	if n := strings.Count(s.messages(), "SIP/2.0 200 OK"); n < 4 {
		t.Errorf("%d 200 OK, want 4 (INVITE, two re-INVITEs, BYE)", n)
	}
}

// A DDI line that sends the number digit by digit: the gateway
// acknowledges the SETUP, collects the digits and calls the PBX with the
// whole number when T302 runs out.
func TestOverlapFromLine(t *testing.T) {
	b := startBed(t, isdn.PRI, nil, func(c *Config) { c.Overlap, c.DialTimeout = true, 300*time.Millisecond })
	s := startSipp(t, b.sipp, "-sf", filepath.Join("testdata", "uas-pcma.xml"), "-s", "4930555")
	waitFor(t, b.ctx, "sipp to listen", func() bool { return bound(b.sipp) })
	c, err := b.x.Dial(b.ctx, exchange.DialParams{Calling: "030123456", Called: "4930555", Overlap: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(b.ctx, exchange.Connected); err != nil {
		t.Fatal(err)
	}
	if err := c.Hangup(b.ctx, 16); err != nil {
		t.Fatal(err)
	}
	s.wait(t, 0)
	if m := s.messages(); !strings.Contains(m, "INVITE sip:4930555@") {
		t.Errorf("the PBX was not called at the whole number:\n%s", m)
	}
}
