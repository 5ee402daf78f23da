package isdn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/hw/isdn/isdntest"
	"github.com/twinpbx/twinpbx/hw/isdn/lapd"
	"github.com/twinpbx/twinpbx/hw/isdn/pcap"
	"github.com/twinpbx/twinpbx/hw/isdn/q931"
)

// buildPRIPeer compiles testdata/libpri/pripeer.c (libpri as the network
// side) into a temporary folder. Without gcc or libpri the test is skipped,
// or fails when TWINPBX_LIBPRI=require (scripts/test.sh sets it, having
// installed the isdn group).
func buildPRIPeer(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		msg := what + " missing: run scripts/install-deps.sh isdn (gcc, libc6-dev, libpri-dev)"
		if os.Getenv("TWINPBX_LIBPRI") == "require" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		missing("gcc")
	}
	if _, err := os.Stat("/usr/include/libpri.h"); err != nil {
		missing("libpri")
	}
	bin := filepath.Join(t.TempDir(), "pripeer")
	out, err := exec.Command(gcc, "-Wall", "-O1", "-o", bin, filepath.Join("testdata", "libpri", "pripeer.c"), "-lpri").CombinedOutput()
	if err != nil {
		t.Fatalf("building the libpri peer: %v\n%s", err, out)
	}
	return bin
}

// priPeer is a running libpri peer joined to us by a SOCK_SEQPACKET pair.
type priPeer struct {
	conn  *net.UnixConn
	mu    sync.Mutex
	lines []string
	done  chan error
}

func startPRIPeer(t *testing.T, bin, mode, span string) *priPeer {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "d-channel"), os.NewFile(uintptr(fds[1]), "d-channel-peer")
	fc, err := net.FileConn(ours)
	_ = ours.Close()
	if err != nil {
		_ = theirs.Close()
		t.Fatalf("socket as conn: %v", err)
	}
	p := &priPeer{conn: fc.(*net.UnixConn), done: make(chan error, 1)}
	t.Cleanup(func() { _ = p.conn.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, mode, span)
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting the libpri peer: %v", err)
	}
	_ = theirs.Close()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() || os.Getenv("TWINPBX_LIBPRI_LOG") != "" {
			t.Logf("libpri peer said:\n%s\nstderr:\n%s", strings.Join(p.output(), "\n"), stderr.String())
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		p.done <- cmd.Wait()
	}()
	return p
}

func (p *priPeer) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

// drive runs our user-side endpoint against the peer in real time until
// cond holds, recording every frame in the capture.
func drive(t *testing.T, ep *Endpoint, p *priPeer, pw *pcap.Writer, react func(now time.Time, ev Event), cond func() bool) {
	t.Helper()
	end := time.Now().Add(15 * time.Second)
	buf := make([]byte, 1024)
	for !cond() {
		now := time.Now()
		if now.After(end) {
			t.Fatalf("condition not met within 15 s; peer said %q", p.output())
		}
		for _, f := range ep.Outgoing(now) {
			if err := pw.Write(pcap.Packet{Time: now, Direction: pcap.Sent, Frame: f}); err != nil {
				t.Fatal(err)
			}
			// libpri strips two FCS octets from every frame it reads.
			if _, err := p.conn.Write(append(slices.Clone(f), 0, 0)); err != nil {
				t.Fatalf("writing to the libpri peer: %v", err)
			}
		}
		for _, ev := range ep.Events(now) {
			if react != nil {
				react(now, ev)
			}
		}
		if len(ep.out) > 0 || len(ep.events) > 0 {
			continue
		}
		wake := now.Add(50 * time.Millisecond)
		if d, ok := ep.Deadline(); ok && d.Before(wake) {
			wake = d
		}
		_ = p.conn.SetReadDeadline(wake)
		n, err := p.conn.Read(buf)
		now = time.Now()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			ep.Tick(now)
			continue
		case err != nil:
			t.Fatalf("reading from the libpri peer: %v (peer said %q)", err, p.output())
		case n < 3+2:
			t.Fatalf("libpri sent %d octets", n)
		}
		frame := slices.Clone(buf[:n-2]) // drop libpri's FCS placeholder
		if err := pw.Write(pcap.Packet{Time: now, Direction: pcap.Received, Frame: frame}); err != nil {
			t.Fatal(err)
		}
		if err := ep.Receive(now, frame); err != nil {
			t.Errorf("receiving % x from libpri: %v", frame, err)
		}
		ep.Tick(now)
	}
}

func (p *priPeer) has(line string) func() bool {
	return func() bool { return slices.Contains(p.output(), line) }
}

// TestLibpriInterop sets up and clears a PRI call in both directions
// between our user side and libpri's network side.
func TestLibpriInterop(t *testing.T) {
	bin := buildPRIPeer(t)
	tests := []struct {
		name string
		span SpanType
		mode string // the peer's: "answer" our call, or "call" us
		want []string
	}{
		{"PRI: we call, libpri answers, we hang up", PRI, "answer", []string{"UP", "RING 30123456 7001 1", "HANGUP_REQ 16", "DONE"}},
		{"PRI: libpri calls, we answer, libpri hangs up", PRI, "call", []string{"UP", "PROCEEDING", "RINGING", "ANSWER", "DONE"}},
		{"BRI PTP: we call, libpri answers, we hang up", BRIPointToPoint, "answer", []string{"UP", "RING 30123456 7001 1", "HANGUP_REQ 16", "DONE"}},
		{"BRI PTP: libpri calls, we answer, libpri hangs up", BRIPointToPoint, "call", []string{"UP", "PROCEEDING", "RINGING", "ANSWER", "DONE"}},
		{"BRI PTMP: we call, libpri answers, we hang up", BRIPointToMultipoint, "answer", []string{"RING 30123456 7001 1", "HANGUP_REQ 16", "DONE"}},
		{"BRI PTMP: libpri calls, we answer, libpri hangs up", BRIPointToMultipoint, "call", []string{"PROCEEDING", "RINGING", "ANSWER", "DONE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			span := map[SpanType]string{PRI: "pri", BRIPointToPoint: "bri-ptp", BRIPointToMultipoint: "bri-ptmp"}[tt.span]
			peer := startPRIPeer(t, bin, tt.mode, span)
			ep, err := New(Config{Type: tt.span, Rand: func() uint16 { return 0x1234 }})
			if err != nil {
				t.Fatal(err)
			}
			var capture bytes.Buffer
			pw, err := pcap.NewWriter(&capture)
			if err != nil {
				t.Fatal(err)
			}
			var released []q931.Cause
			var incoming *q931.Call
			linkUp := false
			react := func(now time.Time, ev Event) {
				if ev.Call == nil {
					linkUp = linkUp || ev.Link == lapd.Up.String()
					return
				}
				switch ev.Call.Kind {
				case q931.EventIncoming:
					incoming = ev.Call.Call
					c := ep.Calls()
					for _, err := range []error{c.Proceeding(now, incoming), c.Alert(now, incoming), c.Answer(now, incoming)} {
						if err != nil {
							t.Error(err)
						}
					}
				case q931.EventReleased:
					released = append(released, ev.Call.Cause)
				}
			}
			ep.Start(time.Now())
			// Our data link is up (on point-to-multipoint, once libpri has
			// assigned us a TEI): the call goes out on it.
			drive(t, ep, peer, pw, react, func() bool { return linkUp && peer.has("UP")() })
			if tt.mode == "answer" {
				tei, ok := ep.TEI()
				if !ok {
					t.Fatal("data link up without a TEI")
				}
				call, err := ep.Calls().Setup(time.Now(), int(tei), q931.SetupParams{
					Bearer:          q931.BearerCapability{Capability: q931.Speech, Layer1: q931.ALawG711},
					Channel:         q931.ChannelID{Exclusive: true, Channel: 1},
					Calling:         q931.PartyNumber{Type: q931.TypeNational, Plan: q931.PlanISDN, Digits: "30123456"},
					Called:          q931.PartyNumber{Type: q931.TypeNational, Plan: q931.PlanISDN, Digits: "7001"},
					SendingComplete: true,
				})
				if err != nil {
					t.Fatal(err)
				}
				drive(t, ep, peer, pw, react, func() bool { return call.State == q931.Active })
				if err := ep.Calls().Hangup(time.Now(), call, q931.CauseNormalClearing); err != nil {
					t.Fatal(err)
				}
			}
			drive(t, ep, peer, pw, react, func() bool {
				return len(released) > 0 && len(ep.Calls().Calls()) == 0 && peer.has("DONE")()
			})
			if got := peer.output(); !isSubsequence(tt.want, got) {
				t.Errorf("libpri said %q, want %q in that order", got, tt.want)
			}
			if released[0].Value != q931.CauseNormalClearing {
				t.Errorf("call released with cause %d, want 16", released[0].Value)
			}
			if tt.mode == "call" {
				if incoming == nil || incoming.Calling.Digits != "30123456" || incoming.Called.Digits != "7001" || incoming.Channel.Channel != 1 {
					t.Errorf("incoming call %+v", incoming)
				}
			}
			// Both sides' frames, as tshark sees them.
			isdntest.Tshark(t)
			path := filepath.Join(t.TempDir(), "libpri.pcap")
			if err := os.WriteFile(path, capture.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			isdntest.CheckClean(t, path)
		})
	}
}

// isSubsequence reports whether want appears in got in order.
func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}
