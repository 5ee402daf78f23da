package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// responder answers OPTIONS like the PBX does, naming node in a Server
// header, from a socket bound in node's namespace to addr.
func responder(t *testing.T, b *Bed, node Node, addr netip.AddrPort) {
	t.Helper()
	var conn *net.UDPConn
	err := b.InNS(b.NS(node), func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatalf("responder on %s: %v", node, err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			msg, err := sip.ParseMessage(buf[:n])
			req, ok := msg.(*sip.Request)
			if err != nil || !ok {
				continue
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			res.AppendHeader(sip.NewHeader("Server", "twinpbx/"+string(node)))
			_, _ = conn.WriteToUDPAddrPort([]byte(res.String()), from)
		}
	}()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, 10*time.Second, what, cond)
}

func lastAnsweredBy(p *Probe, node string) func() bool {
	return func() bool {
		r := p.Results()
		for i := len(r) - 1; i >= 0; i-- {
			if r[i].Node != "" {
				return r[i].Node == node
			}
		}
		return false
	}
}

// waitUnansweredSince waits until n probes were sent after since, a time
// when nobody held the VIP any more, and returns how long from the first
// one's sending to the last's: an outage the report must cover. Probes
// sent before since do not count: on a loaded machine one may still be
// waiting for the answer it will get.
func waitUnansweredSince(t *testing.T, p *Probe, since time.Time, n int) time.Duration {
	t.Helper()
	var span time.Duration
	waitFor(t, fmt.Sprintf("%d probes sent while nobody holds the VIP", n), func() bool {
		var after []Result
		for _, r := range p.Results() {
			if r.Sent.After(since) {
				after = append(after, r)
			}
		}
		if len(after) < n {
			return false
		}
		for _, r := range after {
			if r.Node != "" {
				t.Fatalf("probe %d, sent after the VIP was removed, answered by %s", r.Seq, r.Node)
			}
		}
		span = after[len(after)-1].Sent.Sub(after[0].Sent)
		return true
	})
	return span
}

func moveVIP(t *testing.T, b *Bed, from, to Node) {
	t.Helper()
	ctx := context.Background()
	if from != "" {
		if err := ipIn(ctx, b.NS(from), "addr", "del", b.VIP().String(), "dev", LANInterface); err != nil {
			t.Fatal(err)
		}
	}
	if to != "" {
		if err := ipIn(ctx, b.NS(to), "addr", "add", b.VIP().String(), "dev", LANInterface); err != nil {
			t.Fatal(err)
		}
		// The VIP package announces the move with gratuitous ARP; here
		// the phone forgets the old MAC instead.
		if err := ipIn(ctx, b.NS(Phone(0)), "neigh", "flush", "dev", LANInterface); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProbeFailover(t *testing.T) {
	t.Parallel()
	b := New(t, Options{})
	target := netip.AddrPortFrom(b.VIP().Addr(), 5060)
	responder(t, b, A, target)
	responder(t, b, B, target)
	moveVIP(t, b, "", A)

	p := b.NewProbe(ProbeConfig{})
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	waitFor(t, "A to answer", lastAnsweredBy(p, "a"))
	moveVIP(t, b, A, "")
	unanswered := waitUnansweredSince(t, p, time.Now(), 5)
	moveVIP(t, b, "", B)
	waitFor(t, "B to answer", lastAnsweredBy(p, "b"))

	rep := p.Report()
	t.Log(rep)
	if got := strings.Join(rep.Nodes(), ","); got != "a,b" {
		t.Errorf("answered by %s, want a,b", got)
	}
	if rep.Interleaved || rep.Switches != 1 || rep.Unrecovered {
		t.Errorf("interleaved=%v switches=%d unrecovered=%v, want false 1 false", rep.Interleaved, rep.Switches, rep.Unrecovered)
	}
	if rep.LongestOutage <= unanswered {
		t.Errorf("longest outage %v, want more than the %v of unanswered probes seen", rep.LongestOutage, unanswered)
	}

	// Back to A: the probe must see the interleaving.
	moveVIP(t, b, B, A)
	waitFor(t, "A to answer again", lastAnsweredBy(p, "a"))
	rep = p.Stop()
	if !rep.Interleaved || rep.Switches != 2 {
		t.Errorf("after failback: interleaved=%v switches=%d, want true 2", rep.Interleaved, rep.Switches)
	}
}

func TestProbeCountsAnswersNotFromTheVIP(t *testing.T) {
	t.Parallel()
	b := New(t, Options{})
	// Bound to the wildcard, the responder answers from A's own address.
	responder(t, b, A, netip.AddrPortFrom(netip.IPv4Unspecified(), 5060))
	moveVIP(t, b, "", A)
	p := b.NewProbe(ProbeConfig{})
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	waitFor(t, "stray answers", func() bool { return p.Report().Strays >= 3 })
	rep := p.Stop()
	if rep.Answered != 0 || !rep.Unrecovered {
		t.Errorf("answers from the wrong address counted: %v", rep)
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const iv = 20 * time.Millisecond
	// results builds probes from a pattern: one letter per probe, the
	// answering node, '.' for unanswered, 'L' late, '2' answered by a and b.
	results := func(pattern string) []Result {
		var rs []Result
		for i, c := range pattern {
			r := Result{Seq: i + 1, Sent: t0.Add(time.Duration(i) * iv)}
			switch c {
			case '.':
			case 'L':
				r.Late, r.Node, r.Nodes = true, "a", []string{"a"}
			case '2':
				r.Answered, r.Node, r.Nodes = true, "a", []string{"a", "b"}
			default:
				r.Answered, r.Node, r.Nodes = true, string(c), []string{string(c)}
			}
			rs = append(rs, r)
		}
		return rs
	}
	tests := []struct {
		pattern     string
		outage      time.Duration
		nodes       string
		interleaved bool
		unrecovered bool
	}{
		{"", 0, "", false, false},
		{"aaaa", 0, "a", false, false},
		{"..aa", 0, "a", false, false},
		{"aa...bb", 3 * iv, "a,b", false, false},
		{"aa.a..bb", 2 * iv, "a,b", false, false},
		{"aabab", 0, "a,b,a,b", true, false},
		{"aa2aa", 0, "a", true, false},
		{"aa..", 2 * iv, "a", false, true},
		{"....", 4 * iv, "", false, true},
		{"aaLLbb", 2 * iv, "a,b", false, false},
		{"a.b..a", 2 * iv, "a,b,a", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			rep := summarize(results(tt.pattern), iv)
			if rep.LongestOutage != tt.outage || strings.Join(rep.Nodes(), ",") != tt.nodes ||
				rep.Interleaved != tt.interleaved || rep.Unrecovered != tt.unrecovered {
				t.Errorf("got outage %v nodes %q interleaved %v unrecovered %v; want %v %q %v %v",
					rep.LongestOutage, strings.Join(rep.Nodes(), ","), rep.Interleaved, rep.Unrecovered,
					tt.outage, tt.nodes, tt.interleaved, tt.unrecovered)
			}
		})
	}
}

func reply(callID string, seq int, extra string) string {
	return fmt.Sprintf("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:p@x>;tag=1\r\nTo: <sip:v>;tag=2\r\nCall-ID: %s\r\nCSeq: %d OPTIONS\r\n%sContent-Length: 0\r\n\r\n", callID, seq, extra)
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		name string
		data string
		seq  int
		node string
		ok   bool
	}{
		{"twinpbx", reply("c1", 7, "Server: twinpbx/a\r\n"), 7, "a", true},
		{"twinpbx with version", reply("c1", 8, "Server: twinpbx/b 1.2\r\n"), 8, "b", true},
		{"other server", reply("c1", 9, "Server: kamailio\r\n"), 9, "kamailio", true},
		{"no server", reply("c1", 9, ""), 9, "?", true},
		{"other call", reply("c2", 9, "Server: twinpbx/a\r\n"), 0, "", false},
		{"request", "OPTIONS sip:x SIP/2.0\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", 0, "", false},
		{"garbage", "\x00\x01garbage", 0, "", false},
		{"empty", "", 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq, node, ok := parseReply([]byte(tt.data), "c1")
			if seq != tt.seq || node != tt.node || ok != tt.ok {
				t.Errorf("parseReply = %d %q %v, want %d %q %v", seq, node, ok, tt.seq, tt.node, tt.ok)
			}
		})
	}
	// What the probe sends parses as the request it claims to be.
	req := optionsRequest(netip.MustParseAddrPort("10.0.0.10:5060"), netip.MustParseAddrPort("10.0.0.101:4000"), "c1", 3)
	msg, err := sip.ParseMessage(req)
	if err != nil {
		t.Fatalf("probe request does not parse: %v", err)
	}
	if r, ok := msg.(*sip.Request); !ok || r.Method != sip.OPTIONS || r.CSeq().SeqNo != 3 || r.CallID().Value() != "c1" {
		t.Errorf("probe request parsed as %v", msg)
	}
}

func FuzzParseReply(f *testing.F) {
	f.Add([]byte(reply("c1", 1, "Server: twinpbx/a\r\n")))
	f.Add([]byte(reply("c1", 4294967295, "Server: \r\n")))
	f.Add([]byte("SIP/2.0 200 OK\r\n\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		seq, node, ok := parseReply(data, "c1")
		if ok && node == "" {
			t.Errorf("answer accepted without a node name (seq %d)", seq)
		}
	})
}
