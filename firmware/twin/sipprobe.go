package twin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// sipProber sends SIP OPTIONS from this box's LAN address to the VIP and
// reads which node answered from the "Server: twinpbx/<node>" header the
// PBX puts in its answer.
type sipProber struct {
	from   netip.Addr     // this box's LAN address
	target netip.AddrPort // the VIP's SIP port
}

// optionsRequest builds one OPTIONS request from laddr to target.
func optionsRequest(laddr netip.AddrPort, target netip.AddrPort, branch, callID string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "OPTIONS sip:%s SIP/2.0\r\n", target)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n", laddr, branch)
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:twin-probe@%s>;tag=%s\r\n", laddr.Addr(), branch[:8])
	fmt.Fprintf(&b, "To: <sip:%s>\r\n", target)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", callID)
	b.WriteString("CSeq: 1 OPTIONS\r\n")
	b.WriteString("Accept: application/sdp\r\n")
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// answeringNode returns the node named in an OPTIONS answer's Server
// header ("twinpbx/<node>"), and whether the datagram was such an answer
// to callID.
func answeringNode(data []byte, callID string) (string, bool) {
	msg, err := sip.ParseMessage(data)
	if err != nil {
		return "", false
	}
	res, ok := msg.(*sip.Response)
	if !ok || res.CallID() == nil || res.CallID().Value() != callID {
		return "", false
	}
	h := res.GetHeader("Server")
	if h == nil {
		return "", false
	}
	node, ok := strings.CutPrefix(strings.TrimSpace(h.Value()), "twinpbx/")
	if !ok || node == "" {
		return "", false
	}
	return node, true
}

func randomToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ask sends up to tries OPTIONS, gap apart, each waiting up to gap for its
// answer, and returns the first node that answered.
func (p sipProber) ask(ctx context.Context, tries int, gap time.Duration) (string, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.from, 0)))
	if err != nil {
		return "", fmt.Errorf("opening the probe socket on %s: %w", p.from, err)
	}
	defer conn.Close()
	laddr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	callID := randomToken()
	buf := make([]byte, 4096)
	var lastErr error
	for i := 0; i < tries; i++ {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		req := optionsRequest(laddr, p.target, randomToken(), callID)
		if _, err := conn.WriteToUDPAddrPort(req, p.target); err != nil {
			lastErr = err
		}
		deadline := time.Now().Add(gap)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = conn.SetReadDeadline(deadline)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					lastErr = err
					// An ICMP error arrived early: wait out the gap
					// before the next try.
					select {
					case <-ctx.Done():
					case <-time.After(time.Until(deadline)):
					}
				}
				break
			}
			if from.Addr().Unmap() != p.target.Addr() {
				continue
			}
			if node, ok := answeringNode(buf[:n], callID); ok {
				return node, nil
			}
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no answer")
	}
	return "", fmt.Errorf("probing %s with OPTIONS: %w", p.target, lastErr)
}
