package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"

	"github.com/twinpbx/twinpbx/internal/syncbuf"
)

// phone is one baresip process driven over its ctrl_tcp socket. It plays a
// tone file as its microphone and records what it hears (sndfile module)
// into recDir.
type phone struct {
	t       *testing.T
	name    string
	sipPort int
	recDir  string
	cmd     *exec.Cmd
	out     *syncbuf.Buffer
	exited  chan struct{}
	conn    net.Conn

	mu        sync.Mutex
	events    []bsEvent
	responses map[string]bsResponse
	readErr   error
}

// bsEvent is an event baresip's ctrl_tcp sends, e.g. CALL_ESTABLISHED.
type bsEvent struct {
	Event bool   `json:"event"`
	Type  string `json:"type"`
	Class string `json:"class"`
	Param string `json:"param"`
	Peer  string `json:"peeruri"`
}

// bsResponse answers a ctrl_tcp command.
type bsResponse struct {
	Response bool   `json:"response"`
	OK       bool   `json:"ok"`
	Data     string `json:"data"`
	Token    string `json:"token"`
}

// startPhone starts baresip for ext. With registrar ("host:port") it
// registers there (digest auth with ext's secret); without, it takes calls
// directly on its own port. Its microphone plays a tone of toneHz.
func startPhone(t *testing.T, ext config.Extension, registrar string, toneHz float64, opts ...phoneOpt) *phone {
	t.Helper()
	dir := t.TempDir()
	ph := &phone{
		t: t, name: ext.Name,
		sipPort:   freePorts(t, 3), // TLS takes the next port
		recDir:    filepath.Join(dir, "rec"),
		out:       &syncbuf.Buffer{},
		exited:    make(chan struct{}),
		responses: map[string]bsResponse{},
	}
	ctrlPort := freePorts(t, 1)
	rtpLow := freePorts(t, 20)
	tone := filepath.Join(dir, "tone.wav")
	toneWAV(t, tone, toneHz, 30)
	if err := os.Mkdir(ph.recDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`poll_method epoll
sip_listen 127.0.0.1:%d
net_interface 127.0.0.1
rtp_ports %d-%d
audio_source aufile,%s
audio_player none,none
audio_alert none,none
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module sndfile.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:%d
snd_path %s
`, ph.sipPort, rtpLow, rtpLow+19, tone, ctrlPort, ph.recDir)
	account := fmt.Sprintf("%q <sip:%s@127.0.0.1:%d>;regint=0;answermode=auto\n", ext.Name, ext.Number, ph.sipPort)
	if registrar != "" {
		account = fmt.Sprintf("%q <sip:%s@%s;transport=udp>;auth_pass=%s;regint=300;answermode=auto\n", ext.Name, ext.Number, registrar, ext.Secret)
	}
	for _, o := range opts {
		o(&cfg, &account)
	}
	for name, body := range map[string]string{"config": cfg, "accounts": account, "contacts": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ph.cmd = exec.Command("baresip", "-f", dir)
	ph.cmd.Stdout, ph.cmd.Stderr = ph.out, ph.out
	ph.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ph.cmd.Start(); err != nil {
		t.Fatalf("starting baresip: %v", err)
	}
	go func() {
		ph.cmd.Wait()
		close(ph.exited)
	}()
	t.Cleanup(func() {
		if ph.conn != nil {
			ph.conn.Close()
		}
		ph.cmd.Process.Kill()
		<-ph.exited
		if t.Failed() {
			t.Logf("baresip %s output:\n%s", ph.name, lastLines(ph.out.String(), 60))
		}
	})
	var err error
	waitFor(t, 10*time.Second, "baresip "+ph.name+" to open its control port", func() bool {
		select {
		case <-ph.exited:
			t.Fatalf("baresip %s exited: %v\n%s", ph.name, ph.cmd.ProcessState, ph.out)
		default:
		}
		ph.conn, err = net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ctrlPort)))
		return err == nil
	})
	go ph.read()
	return ph
}

// phoneOpt changes a phone's baresip config and account line before
// they are written.
type phoneOpt func(cfg, account *string)

// read parses ctrl_tcp's messages into events and responses.
func (ph *phone) read() {
	r := bufio.NewReader(ph.conn)
	for {
		msg, err := readNetstring(r)
		if err != nil {
			ph.setReadErr(err)
			return
		}
		var ev bsEvent
		var resp bsResponse
		ph.mu.Lock()
		if json.Unmarshal(msg, &ev) == nil && ev.Event {
			ph.events = append(ph.events, ev)
		} else if json.Unmarshal(msg, &resp) == nil && resp.Response {
			ph.responses[resp.Token] = resp
		}
		ph.mu.Unlock()
	}
}

// readNetstring reads one netstring ("LEN:DATA,"), the framing of
// baresip's ctrl_tcp, of at most 1 MiB.
func readNetstring(r *bufio.Reader) ([]byte, error) {
	var n int
	for digits := 0; ; digits++ {
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if c == ':' && digits > 0 {
			break
		}
		if c < '0' || c > '9' || digits == 7 {
			return nil, fmt.Errorf("bad netstring length at byte %q", c)
		}
		n = 10*n + int(c-'0')
	}
	if n > 1<<20 {
		return nil, fmt.Errorf("netstring of %d bytes, more than 1 MiB", n)
	}
	msg := make([]byte, n+1)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, fmt.Errorf("reading a netstring of %d bytes: %w", n, err)
	}
	if msg[n] != ',' {
		return nil, fmt.Errorf("netstring not ended by a comma: %q", msg[n])
	}
	return msg[:n], nil
}

func (ph *phone) setReadErr(err error) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	ph.readErr = err
}

var tokens struct {
	sync.Mutex
	n int
}

// command sends a ctrl_tcp command and fails the test unless baresip
// accepts it.
func (ph *phone) command(cmd, params string) string {
	ph.t.Helper()
	tokens.Lock()
	tokens.n++
	token := strconv.Itoa(tokens.n)
	tokens.Unlock()
	b, err := json.Marshal(map[string]string{"command": cmd, "params": params, "token": token})
	if err != nil {
		ph.t.Fatal(err)
	}
	if _, err := fmt.Fprintf(ph.conn, "%d:%s,", len(b), b); err != nil {
		ph.t.Fatalf("sending %s to baresip %s: %v", cmd, ph.name, err)
	}
	var resp bsResponse
	waitFor(ph.t, 5*time.Second, "baresip "+ph.name+" to answer "+cmd, func() bool {
		ph.mu.Lock()
		defer ph.mu.Unlock()
		var ok bool
		resp, ok = ph.responses[token]
		return ok
	})
	if !resp.OK {
		ph.t.Fatalf("baresip %s refused %s %s: %s", ph.name, cmd, params, resp.Data)
	}
	return resp.Data
}

// waitEvent waits until baresip has reported an event of type typ.
func (ph *phone) waitEvent(typ string, timeout time.Duration) bsEvent {
	ph.t.Helper()
	var found bsEvent
	waitFor(ph.t, timeout, "baresip "+ph.name+" to report "+typ, func() bool {
		ph.mu.Lock()
		defer ph.mu.Unlock()
		for _, ev := range ph.events {
			if ev.Type == typ {
				found = ev
				return true
			}
		}
		if ph.readErr != nil {
			ph.t.Fatalf("reading baresip %s's control socket: %v", ph.name, ph.readErr)
		}
		return false
	})
	return found
}

// waitRegistered waits until the phone's registration succeeded. The
// REGISTER_OK event may come before the control connection is open, so
// this asks with reginfo too.
func (ph *phone) waitRegistered(timeout time.Duration) {
	ph.t.Helper()
	waitFor(ph.t, timeout, "baresip "+ph.name+" to register", func() bool {
		ph.mu.Lock()
		for _, ev := range ph.events {
			if ev.Type == "REGISTER_OK" {
				ph.mu.Unlock()
				return true
			}
		}
		ph.mu.Unlock()
		return strings.Contains(ph.command("reginfo", ""), "OK")
	})
}

// rtpFrom returns the address the phone's RTP came from, as baresip logs it
// ("incoming rtp for 'audio' established, receiving from HOST:PORT").
func (ph *phone) rtpFrom() string {
	const marker = "receiving from "
	out := ph.out.String()
	i := strings.LastIndex(out, marker)
	if i < 0 {
		return ""
	}
	rest := out[i+len(marker):]
	if j := strings.IndexAny(rest, " \r\n"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// heard returns what the phone received and decoded during its last call,
// read from sndfile's "dump-*-dec.wav".
func (ph *phone) heard() (rate int, samples []int16) {
	ph.t.Helper()
	var data []byte
	waitFor(ph.t, 5*time.Second, "baresip "+ph.name+"'s recording", func() bool {
		files, _ := filepath.Glob(filepath.Join(ph.recDir, "dump-*-dec.wav"))
		if len(files) == 0 {
			return false
		}
		var err error
		data, err = os.ReadFile(files[len(files)-1])
		return err == nil && len(data) > 44
	})
	rate, samples, err := readWAV(data)
	if err != nil {
		ph.t.Fatalf("reading baresip %s's recording: %v", ph.name, err)
	}
	return rate, samples
}

// talk runs a call from a to b (dialled as uri), lets them talk for
// talkTime, has a hang up and checks that each heard the other's tone.
func talk(t *testing.T, a, b *phone, uri string, aTone, bTone float64, talkTime time.Duration) {
	t.Helper()
	a.command("dial", uri)
	a.waitEvent("CALL_ESTABLISHED", 15*time.Second)
	b.waitEvent("CALL_ESTABLISHED", 5*time.Second)
	b.waitEvent("CALL_RTPESTAB", 5*time.Second)
	a.waitEvent("CALL_RTPESTAB", 5*time.Second)
	time.Sleep(talkTime) // the conversation: audio flows meanwhile
	a.command("hangup", "")
	a.waitEvent("CALL_CLOSED", 5*time.Second)
	b.waitEvent("CALL_CLOSED", 5*time.Second)

	// Each side should hear the other's tone for most of the talk time.
	want := talkTime.Seconds() / 2
	for _, c := range []struct {
		listener *phone
		tone     float64
	}{{b, aTone}, {a, bTone}} {
		rate, s := c.listener.heard()
		got := toneSeconds(s, rate, c.tone)
		t.Logf("%s heard %.1f s of %.0f Hz in %.1f s of audio", c.listener.name, got, c.tone, float64(len(s))/float64(rate))
		if got < want {
			t.Errorf("%s heard %.1f s of the %.0f Hz tone, want at least %.1f s", c.listener.name, got, c.tone, want)
		}
	}
}

// TestBaresipDirect proves the phone harness and the tone check without
// the PBX: Alice calls Bob's phone directly.
func TestBaresipDirect(t *testing.T) {
	needTools(t, "baresip")
	a := startPhone(t, alice, "", 1000)
	b := startPhone(t, bob, "", 600)
	talk(t, a, b, fmt.Sprintf("sip:%s@127.0.0.1:%d", bob.Number, b.sipPort), 1000, 600, 2*time.Second)
}

// TestBaresipCall: two real phones register with the PBX, Alice calls Bob
// through it, and each must hear the other's tone, so audio crossed the
// PBX's media relay both ways; then the CDR must show the answered call.
func TestBaresipCall(t *testing.T) {
	needTools(t, "baresip")
	p := startPBX(t, alice, bob)
	a := startPhone(t, alice, p.addr(), 1000)
	b := startPhone(t, bob, p.addr(), 600)
	a.waitRegistered(10 * time.Second)
	b.waitRegistered(10 * time.Second)

	const talkTime = 3 * time.Second
	talk(t, a, b, fmt.Sprintf("sip:%s@%s", bob.Number, p.addr()), 1000, 600, talkTime)

	// Anchored media: each phone gets its RTP from a relay port of the PBX,
	// not from the other phone.
	for _, ph := range []*phone{a, b} {
		from := ph.rtpFrom()
		_, port, err := net.SplitHostPort(from)
		n, _ := strconv.Atoi(port)
		t.Logf("%s receives RTP from %s", ph.name, from)
		if err != nil || n < p.rtpLow || n >= p.rtpLow+rtpPorts {
			t.Errorf("%s received RTP from %q, want a PBX relay port in %d-%d", ph.name, from, p.rtpLow, p.rtpLow+rtpPorts-1)
		}
	}

	rec := p.waitCDR(func(r map[string]string) bool {
		return r["caller"] == alice.Number && r["callee"] == bob.Number
	})
	t.Logf("CDR: %v", rec)
	if rec["disposition"] != "ANSWERED" || rec["sip_code"] != "200" || rec["hangup_by"] != "caller" {
		t.Errorf("CDR disposition %q, sip_code %q, hangup_by %q; want ANSWERED, 200, caller", rec["disposition"], rec["sip_code"], rec["hangup_by"])
	}
	if b, err := strconv.Atoi(rec["billsec"]); err != nil || b < int(talkTime/time.Second) {
		t.Errorf("CDR billsec %q, want at least %d", rec["billsec"], int(talkTime/time.Second))
	}
}
