package e2e

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// register registers ext's sipp phone on local port port with the PBX.
func register(t *testing.T, p *pbx, ext config.Extension, port int) {
	t.Helper()
	runSipp(t, sippOpts{
		scenario: "register.xml", remote: p.addr(), port: port,
		service: ext.Number, user: ext.Number, pass: ext.Secret,
		keys: map[string]string{"expires": "300"},
	}, 0)
}

// sippCallID is the Call-ID sipp gives the first call of a process.
func sippCallID(s *sippProc) string {
	return fmt.Sprintf("1-%d@127.0.0.1", s.cmd.Process.Pid)
}

func TestRegister(t *testing.T) {
	needTools(t, "sipp")
	p := startPBX(t, alice, bob)
	tests := []struct {
		name string
		ext  config.Extension
		tcp  bool
	}{
		{"alice over UDP", alice, false},
		{"bob over UDP", bob, false},
		{"alice over TCP", alice, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSipp(t, sippOpts{
				scenario: "register.xml", remote: p.addr(), tcp: tt.tcp,
				service: tt.ext.Number, user: tt.ext.Number, pass: tt.ext.Secret,
				keys: map[string]string{"expires": "300"},
			}, 0)
		})
	}
}

// TestBadInput sends the PBX what a broken phone or a scanner would, then
// checks that it still serves a good REGISTER.
func TestBadInput(t *testing.T) {
	needTools(t, "sipp")
	p := startPBX(t, alice, bob)

	conn, err := net.Dial("udp", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	local := conn.LocalAddr().(*net.UDPAddr)
	badCSeq := strings.ReplaceAll(fmt.Sprintf(`REGISTER sip:%[1]s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%[2]d;branch=z9hG4bK-bad-1;rport
From: <sip:100@%[1]s>;tag=bad1
To: <sip:100@%[1]s>
Call-ID: bad-input-1@127.0.0.1
CSeq: notanumber REGISTER
Contact: <sip:100@127.0.0.1:%[2]d>
Max-Forwards: 70
Content-Length: 0

`, p.addr(), local.Port), "\n", "\r\n")
	garbage := []byte("\x00\xffNOT SIP AT ALL\r\n\r\n\x01\x02")

	tests := []struct {
		name     string
		datagram []byte
		want     string // status line prefix of the answer; "" for none expected
	}{
		{"garbage", garbage, ""},
		{"REGISTER with a broken CSeq", []byte(badCSeq), "SIP/2.0 400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := conn.Write(tt.datagram); err != nil {
				t.Fatalf("sending: %v", err)
			}
			if tt.want == "" {
				return
			}
			buf := make([]byte, 8192)
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no answer to a malformed request: %v", err)
			}
			if !strings.HasPrefix(string(buf[:n]), tt.want) {
				t.Errorf("answer to a malformed request:\n%s\nwant a %q", buf[:n], tt.want)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		wrong := alice
		wrong.Secret = "not-" + alice.Secret
		runSipp(t, sippOpts{
			scenario: "register-rejected.xml", remote: p.addr(),
			service: wrong.Number, user: wrong.Number, pass: wrong.Secret,
			keys: map[string]string{"expires": "300"},
		}, 0)
	})
	t.Run("good REGISTER after", func(t *testing.T) {
		register(t, p, alice, 0)
	})
}

// TestCalls runs each call outcome through the PBX between two sipp phones
// and checks what both saw and the CDR the PBX wrote.
func TestCalls(t *testing.T) {
	needTools(t, "sipp")
	tests := []struct {
		name     string
		uas, uac string
		uasPause time.Duration
		uacPause time.Duration
		disp     string
		code     int
		hangupBy string
		billsec  int // at least
	}{
		{"answered, caller hangs up", "uas.xml", "uac.xml", 0, 1500 * time.Millisecond, "ANSWERED", 200, "caller", 1},
		{"answered, callee hangs up", "uas-bye.xml", "uac-wait-bye.xml", 1500 * time.Millisecond, 0, "ANSWERED", 200, "callee", 1},
		{"cancelled while ringing", "uas-cancel.xml", "uac-cancel.xml", 0, 300 * time.Millisecond, "CANCELLED", 487, "", 0},
		{"callee busy", "uas-busy.xml", "uac-busy.xml", 0, 0, "BUSY", 486, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startPBX(t, alice, bob)
			bobPort := freePorts(t, 2)
			register(t, p, bob, bobPort)
			uas := startSipp(t, sippOpts{scenario: tt.uas, service: bob.Number, port: bobPort, pause: tt.uasPause})
			uas.waitBound()
			uac := startSipp(t, sippOpts{
				scenario: tt.uac, remote: p.addr(), service: bob.Number,
				user: alice.Number, pass: alice.Secret, pause: tt.uacPause, keys: caller(alice),
			})
			uac.wait(0)
			uas.wait(0)
			checkCDR(t, p, sippCallID(uac), tt.disp, tt.code, tt.hangupBy, tt.billsec)
		})
	}
}

// checkCDR waits for the CDR of the call with the caller's Call-ID and
// checks it.
func checkCDR(t *testing.T, p *pbx, callID, disp string, code int, hangupBy string, minBillsec int) {
	t.Helper()
	rec := p.waitCDR(func(r map[string]string) bool { return r["call_id"] == callID })
	t.Logf("CDR: %v", rec)
	want := map[string]string{
		"caller": alice.Number, "callee": bob.Number,
		"disposition": disp, "sip_code": strconv.Itoa(code),
	}
	if hangupBy != "" {
		want["hangup_by"] = hangupBy
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("CDR %s = %q, want %q", k, rec[k], v)
		}
	}
	if b, err := strconv.Atoi(rec["billsec"]); err != nil || b < minBillsec {
		t.Errorf("CDR billsec = %q, want at least %d", rec["billsec"], minBillsec)
	}
	if disp != "ANSWERED" && rec["answer"] != "" {
		t.Errorf("CDR of an unanswered call has answer time %q", rec["answer"])
	}
}

// TestRestart checks that a registration outlives a restart of the PBX: the
// phone is called after the restart without registering again.
func TestRestart(t *testing.T) {
	needTools(t, "sipp")
	p := startPBX(t, alice, bob)
	bobPort := freePorts(t, 2)
	register(t, p, bob, bobPort)

	p.stop()
	p.start()

	uas := startSipp(t, sippOpts{scenario: "uas.xml", service: bob.Number, port: bobPort})
	uas.waitBound()
	uac := runSipp(t, sippOpts{
		scenario: "uac.xml", remote: p.addr(), service: bob.Number,
		user: alice.Number, pass: alice.Secret, pause: 200 * time.Millisecond, keys: caller(alice),
	}, 0)
	uas.wait(0)
	checkCDR(t, p, sippCallID(uac), "ANSWERED", 200, "caller", 0)
}
