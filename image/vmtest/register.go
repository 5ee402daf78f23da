package vmtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Register registers user at domain (the box's own address) with digest
// authentication, sending to addr (the forwarded port) over UDP, and
// returns the final answer's status code. A 401 or 407 is answered once
// with the credentials.
func Register(ctx context.Context, addr, domain, user, password string) (int, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return 0, fmt.Errorf("REGISTER to %s: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, fmt.Errorf("REGISTER to %s: %w", addr, err)
	}
	defer conn.Close()
	laddr := conn.LocalAddr().String()
	callID, tag := token(), token()[:8]
	uri := "sip:" + domain
	auth := ""
	for cseq := 1; cseq <= 2; cseq++ {
		req := RegisterRequest(laddr, uri, user, callID, tag, cseq, auth)
		res, err := exchange(ctx, conn, raddr, req, callID)
		if err != nil {
			return 0, fmt.Errorf("REGISTER %s to %s: %w", user, addr, err)
		}
		hdr := "WWW-Authenticate"
		switch res.StatusCode {
		case 401:
		case 407:
			hdr = "Proxy-Authenticate"
		default:
			return res.StatusCode, nil
		}
		if cseq == 2 {
			return res.StatusCode, nil
		}
		h := res.GetHeader(hdr)
		if h == nil {
			return 0, fmt.Errorf("REGISTER %s: %d without %s", user, res.StatusCode, hdr)
		}
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil {
			return 0, fmt.Errorf("REGISTER %s: %w", user, err)
		}
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: uri, Username: user, Password: password, Count: 1, Cnonce: token()[:16]})
		if err != nil {
			return 0, fmt.Errorf("REGISTER %s: %w", user, err)
		}
		name := "Authorization"
		if hdr == "Proxy-Authenticate" {
			name = "Proxy-Authorization"
		}
		auth = name + ": " + cred.String()
	}
	return 0, errors.New("unreachable")
}

// RegisterRequest is a REGISTER of user from laddr for uri; auth, when
// set, is an Authorization header line.
func RegisterRequest(laddr, uri, user, callID, tag string, cseq int, auth string) []byte {
	host := strings.TrimPrefix(uri, "sip:")
	var b strings.Builder
	fmt.Fprintf(&b, "REGISTER %s SIP/2.0\r\n", uri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;rport;branch=z9hG4bK%s\r\n", laddr, token())
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:%s@%s>;tag=%s\r\n", user, host, tag)
	fmt.Fprintf(&b, "To: <sip:%s@%s>\r\n", user, host)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", callID)
	fmt.Fprintf(&b, "CSeq: %d REGISTER\r\n", cseq)
	fmt.Fprintf(&b, "Contact: <sip:%s@%s>\r\n", user, laddr)
	b.WriteString("Expires: 300\r\n")
	if auth != "" {
		b.WriteString(auth + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// exchange sends req until a final answer with callID comes or ctx ends.
func exchange(ctx context.Context, conn *net.UDPConn, raddr *net.UDPAddr, req []byte, callID string) (*sip.Response, error) {
	buf := make([]byte, 65535)
	var lastErr error
	for ctx.Err() == nil {
		if _, err := conn.WriteToUDP(req, raddr); err != nil {
			lastErr = err
		}
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				break // no answer yet: send again
			}
			msg, err := sip.ParseMessage(buf[:n])
			if err != nil {
				lastErr = err
				continue
			}
			res, ok := msg.(*sip.Response)
			if !ok || res.CallID() == nil || res.CallID().Value() != callID || res.StatusCode < 200 {
				continue
			}
			return res, nil
		}
	}
	return nil, fmt.Errorf("no final answer (%v): %w", lastErr, ctx.Err())
}
