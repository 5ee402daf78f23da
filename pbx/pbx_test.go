package pbx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/pbxtest"
)

// startPBX runs a PBX on a free UDP port of 127.0.0.1 and returns its address.
func startPBX(t *testing.T) string {
	t.Helper()
	_, addr := runTestPBX(t, "31000-31019", nil)
	return addr
}

// runTestPBX runs a PBX with extension 100 on a free UDP port of
// 127.0.0.1, its RTP on ports, until the test ends, and returns it with
// its address. edit, when set, changes the config and the options first.
func runTestPBX(t testing.TB, ports string, edit func(*config.Config, *Options)) (*PBX, string) {
	t.Helper()
	probe, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.LocalAddr().String()
	probe.Close()
	cfg := &config.Config{
		Node:       config.Node{Name: "t"},
		SIP:        config.SIP{Listen: []string{"udp:" + addr}, RTPPorts: ports},
		Extensions: []config.Extension{{Number: "100", Secret: "secret-100-x"}},
	}
	o := Options{Config: cfg, Store: pbxtest.NewStore(), AuthKey: make([]byte, 32),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if edit != nil {
		edit(cfg, &o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, func([]Listener) { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("PBX did not start: %v", err)
	}
	return p, addr
}

// exchange sends one datagram and returns the first answer, or "" after
// the timeout.
func exchange(t *testing.T, to, msg string, timeout time.Duration) string {
	t.Helper()
	c, err := net.Dial("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	if _, err := c.Write([]byte(strings.ReplaceAll(msg, "LOCAL", local))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func request(method, extra string) string {
	return fmt.Sprintf("%s sip:100@127.0.0.1 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK-%d\r\n"+
		"Max-Forwards: 70\r\n%s"+
		"Content-Length: 0\r\n\r\n", method, time.Now().UnixNano(), extra)
}

const fullHeaders = "From: <sip:100@127.0.0.1>;tag=a1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: c1@x\r\n"

func TestBadInputAnswered(t *testing.T) {
	pbx := startPBX(t)
	tests := []struct {
		name string
		msg  string
		want string // start of the answer; "" means no answer
	}{
		{"options", request("OPTIONS", fullHeaders+"CSeq: 1 OPTIONS\r\n"), "SIP/2.0 200 OK"},
		{"cseq not a number", request("REGISTER", fullHeaders+"CSeq: notanumber REGISTER\r\n"), "SIP/2.0 400 Bad Request"},
		{"broken contact", request("REGISTER", fullHeaders+"CSeq: 1 REGISTER\r\nContact: <sip:100@[not-an-address>\r\n"), "SIP/2.0 400 Bad Request"},
		{"missing call-id", request("REGISTER", "From: <sip:100@127.0.0.1>;tag=a1\r\nTo: <sip:100@127.0.0.1>\r\nCSeq: 1 REGISTER\r\n"), "SIP/2.0 400 Missing Call-ID"},
		{"missing from", request("INVITE", "To: <sip:100@127.0.0.1>\r\nCall-ID: c2@x\r\nCSeq: 1 INVITE\r\n"), "SIP/2.0 400 Missing From"},
		{"cseq method mismatch", request("OPTIONS", fullHeaders+"CSeq: 1 INVITE\r\n"), "SIP/2.0 400 CSeq method"},
		{"garbage", "\x16\x03\x01 hello", ""},
		{"broken response", "SIP/2.0 200 OK\r\nCSeq: x\r\n\r\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wait := 2 * time.Second
			if tc.want == "" {
				wait = 300 * time.Millisecond // proving silence costs a wait
			}
			got := exchange(t, pbx, tc.msg, wait)
			if tc.want == "" && got != "" || !strings.HasPrefix(got, tc.want) {
				t.Fatalf("answer %q, want it to start with %q", got, tc.want)
			}
		})
	}
	// The PBX still works afterwards.
	if got := exchange(t, pbx, request("OPTIONS", fullHeaders+"CSeq: 2 OPTIONS\r\n"), 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 200") || !strings.Contains(got, "Server: twinpbx/t") {
		t.Fatalf("after bad input: %q", got)
	}
}

func TestBadRequestResponse(t *testing.T) {
	msg := "REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nv: SIP/2.0/UDP 10.0.0.2\r\nCall-ID: abc\r\nCSeq: x REGISTER\r\nX-Other: y\r\n\r\nbody"
	got := string(badRequestResponse([]byte(msg), "parsing \"x\": (bad)\x00"))
	for _, want := range []string{"SIP/2.0 400 Bad Request (parsing \"x\": bad)\r\n", "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n", "v: SIP/2.0/UDP 10.0.0.2\r\n", "Call-ID: abc\r\n", "CSeq: x REGISTER\r\n", "Content-Length: 0\r\n\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "X-Other") || strings.Contains(got, "body") {
		t.Errorf("copied more than the routing headers:\n%s", got)
	}
	for _, m := range []string{"ACK sip:x SIP/2.0\r\nVia: v\r\n\r\n", "SIP/2.0 200 OK\r\nVia: v\r\n\r\n", "INVITE sip:x SIP/2.0\r\nTo: x\r\n\r\n", "", "\xff\xfe"} {
		if r := badRequestResponse([]byte(m), "e"); r != nil {
			t.Errorf("answered %q with %q", m, r)
		}
	}
}

func FuzzBadRequestResponse(f *testing.F) {
	f.Add([]byte("REGISTER sip:x SIP/2.0\r\nVia: a\r\n\r\n"), "err")
	f.Add([]byte("INVITE sip:x SIP/2.0\nv: a\nf: b\n\n"), "")
	f.Fuzz(func(t *testing.T, msg []byte, reason string) {
		r := badRequestResponse(msg, reason)
		if r == nil {
			return
		}
		if !strings.HasPrefix(string(r), "SIP/2.0 400 ") || !strings.HasSuffix(string(r), "\r\n\r\n") {
			t.Fatalf("not a 400: %q", r)
		}
		firstLine, _, _ := strings.Cut(string(r), "\r\n")
		if strings.Count(string(r), "\r") != strings.Count(string(r), "\r\n") {
			t.Fatalf("bare CR in the answer: %q", r)
		}
		if strings.ContainsAny(firstLine, "\n\x00") {
			t.Fatalf("reason phrase not sanitised: %q", firstLine)
		}
	})
}

// An isdn trunk whose config gives no channels has its span's B channels
// (the i-th isdn trunk on the i-th span), also after a config change;
// channels written in the config win.
func TestISDNTrunkChannelsFromTheBoard(t *testing.T) {
	p, _ := runTestPBX(t, "31160-31179", func(c *config.Config, o *Options) {
		c.Trunks = []config.TrunkLine{
			{Name: "pri", Type: config.LineISDN, Host: "127.0.0.1:5070"},
			{Name: "given", Type: config.LineISDN, Host: "127.0.0.1:5071", Channels: 1},
			{Name: "beyond", Type: config.LineISDN, Host: "127.0.0.1:5072"},
		}
		o.SpanChannels = []int{config.PRIChannels, config.BRIChannels}
	})
	channels := func() map[string]int {
		out := map[string]int{}
		for _, s := range p.Status().Trunks {
			out[s.Name] = s.Channels
		}
		return out
	}
	want := map[string]int{"pri": config.PRIChannels, "given": 1, "beyond": config.BRIChannels}
	if got := channels(); !maps.Equal(got, want) {
		t.Fatalf("trunk channels %v, want %v", got, want)
	}
	c := *p.cfg.Load()
	c.Extensions = append(slices.Clone(c.Extensions), config.Extension{Number: "101", Secret: "secret-101-x"})
	if restart := p.SetConfig(&c); restart {
		t.Error("a config that changes no trunk asks for a restart")
	}
}
