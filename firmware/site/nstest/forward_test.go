package nstest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
	"github.com/twinpbx/twinpbx/internal/testphone"
)

// natOnlyFrom makes a phone's namespace drop every IPv4 packet that does
// not come from addr, as a NAT that only lets in the box the phone
// registered with (endpoint-dependent filtering).
func (s *site) natOnlyFrom(phone testbed.Node, addr string) {
	s.t.Helper()
	ruleset := fmt.Sprintf("table inet tpnat {\n\tchain in {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tip saddr != %s drop\n\t}\n}\n", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", s.bed.NS(phone), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("nftables in %s: %v: %s", phone, err, out)
	}
}

// cdrs returns box i's CDRs as CSV.
func (s *site) cdrs(i int) (string, error) {
	out, err := exec.Command(binary, "cdr", "export", "--data", s.dirs[i]).Output()
	if err != nil {
		return "", fmt.Errorf("box%d's CDRs: %w", i+1, err)
	}
	return string(out), nil
}

// TestSiteForwardThroughNAT: bob's phone is behind a NAT that only lets
// in box 1, where it registered. Alice calls him through box 3: box 3
// forwards the call to box 1, which rings bob over his NAT binding and
// relays the media, so RTP flows both ways (bob's phone echoes it). Both
// boxes' CDRs name the other. An INVITE from a phone carrying a forged
// site mark is refused with 403.
func TestSiteForwardThroughNAT(t *testing.T) {
	s := newSite(t)
	s.waitFormed([]int{0, 1, 2}, 3, 60*time.Second)
	bobPhone := s.phones[1]
	s.natOnlyFrom(bobPhone, s.addr(0))
	if err := s.bed.PingWithin(s.nodes[2], s.bed.Addr(bobPhone), time.Second); err == nil {
		t.Fatal("box 3 reaches bob's phone through the NAT")
	}

	reg := s.sipp(bobPhone, 0, "register.xml", bob, bob.Number, "-key", "expires", "600")
	waitSipp(t, reg, "registering bob on box 1 through the NAT")
	waitFor(t, 30*time.Second, "bob's registration in box 3's site table", func() (bool, string) {
		st, err := s.status(2)
		if err != nil {
			return false, err.Error()
		}
		return st.Site.Bindings >= 1, fmt.Sprintf("bindings %d", st.Site.Bindings)
	})

	uas := s.sipp(bobPhone, 0, "uas.xml", config.Extension{}, bob.Number, "-rtp_echo")
	// sipp uses ports 5070 and 6000 on the phones.
	box3 := s.bed.Addr(s.nodes[2])
	caller := testphone.New(t, s.bed, s.phones[0], alice, testphone.Options{SIPPort: 5080, RTPPort: 40000, Server: box3})
	// Bounds the phone's transactions; the test's own waits are below.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	media, err := caller.Call(ctx, bob.Number)
	if err != nil {
		t.Fatal(err)
	}
	if media.Addr() != box3 {
		t.Errorf("alice's media goes to %v, want box 3 (which anchors it)", media)
	}
	caller.Media.Send(media)
	waitFor(t, 30*time.Second, "RTP echoed back from bob's phone", func() (bool, string) {
		n := len(caller.Media.Received())
		return n >= 25, fmt.Sprintf("%d packets back", n)
	})
	caller.Media.StopSending()
	if code, err := caller.HangUp(ctx); err != nil || code != 200 {
		t.Errorf("hanging up: %d, %v", code, err)
	}
	waitSipp(t, uas, "bob's phone")

	for _, c := range []struct {
		box  int
		want string
	}{{2, "box1"}, {0, "box3"}} {
		waitFor(t, 30*time.Second, fmt.Sprintf("box%d's CDR of the forwarded call", c.box+1), func() (bool, string) {
			text, err := s.cdrs(c.box)
			if err != nil {
				return false, err.Error()
			}
			for _, line := range strings.Split(text, "\n") {
				if strings.Contains(line, ",ANSWERED,") && strings.HasSuffix(strings.TrimSpace(line), ","+c.want) {
					return true, ""
				}
			}
			return false, text
		})
	}

	// A stranger (alice's phone, not a member) forges the mark.
	forged := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: bob.Number, Host: s.addr(0), Port: 5060})
	aor := sip.Uri{Scheme: "sip", User: alice.Number, Host: s.addr(0)}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	forged.AppendHeader(from)
	forged.AppendHeader(&sip.ToHeader{Address: forged.Recipient, Params: sip.NewParams()})
	forged.AppendHeader(caller.Contact())
	forged.AppendHeader(sip.NewHeader("X-Twinpbx-Site", fmt.Sprintf("box3 %d AAAAforgedAAAA", time.Now().Unix())))
	res, err := caller.Do(ctx, forged)
	if err != nil {
		t.Fatalf("sending the forged INVITE: %v", err)
	}
	if res.StatusCode != 403 {
		t.Errorf("forged forwarded INVITE answered %d, want 403", res.StatusCode)
	}
	waitFor(t, 30*time.Second, "box 1 logs the refusal", func() (bool, string) {
		return strings.Contains(s.procs[0].Output(), "forwarded INVITE refused"), "not logged"
	})
}
