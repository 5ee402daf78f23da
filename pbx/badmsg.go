package pbx

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// sipgo drops a UDP datagram it cannot parse, logging it as "failed to
// parse" from the goroutine that read it, before it reads the next one.
// RFC 3261 §8.2 wants a 400 for a malformed request wherever one can be
// built. Parsing every datagram twice to find the bad ones would cost the
// hot path; instead the listener's socket remembers the datagram it just
// returned, and a log handler in front of the SIP stack's log answers the
// one that failed, from the same socket.

// parseFailureMsg is the message sipgo v1.7.2 logs for an unparseable
// datagram; the e2e bad-input test fails if a new sipgo renames it.
const parseFailureMsg = "failed to parse"

// recordingConn remembers the last datagram it returned.
type recordingConn struct {
	net.PacketConn
	mu   sync.Mutex
	last []byte
	from net.Addr
}

func (c *recordingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	c.mu.Lock()
	if err == nil {
		c.last, c.from = b[:n], a
	} else {
		c.last, c.from = nil, nil
	}
	c.mu.Unlock()
	return n, a, err
}

// badRequests answers unparseable requests with 400, at most burst per
// second, and passes every record on to next.
type badRequests struct {
	next slog.Handler
	st   *badState
}

type badState struct {
	// serving, when not nil, gates the answers like the request guard.
	serving func() bool
	mu      sync.Mutex
	conns   []*recordingConn
	window  time.Time
	answers int
}

const badAnswersPerSecond = 20

func newBadRequests(next slog.Handler, serving func() bool) *badRequests {
	return &badRequests{next: next, st: &badState{serving: serving}}
}

func (h *badRequests) add(c *recordingConn) {
	h.st.mu.Lock()
	h.st.conns = append(h.st.conns, c)
	h.st.mu.Unlock()
}

func (h *badRequests) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.next.Enabled(ctx, l)
}

func (h *badRequests) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelError && r.Message == parseFailureMsg {
		var data, reason string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "data":
				data = a.Value.String()
			case "error":
				reason = a.Value.String()
			}
			return true
		})
		h.answer(data, reason)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *badRequests) answer(data, reason string) {
	st := h.st
	if data == "" || st.serving != nil && !st.serving() {
		return
	}
	st.mu.Lock()
	now := time.Now()
	if now.Sub(st.window) >= time.Second {
		st.window, st.answers = now, 0
	}
	if st.answers >= badAnswersPerSecond {
		st.mu.Unlock()
		return
	}
	var conn *recordingConn
	var to net.Addr
	for _, c := range st.conns {
		c.mu.Lock()
		if c.from != nil && string(c.last) == data {
			conn, to = c, c.from
		}
		c.mu.Unlock()
		if conn != nil {
			break
		}
	}
	if conn == nil {
		st.mu.Unlock()
		return
	}
	res := badRequestResponse([]byte(data), reason)
	if res == nil {
		st.mu.Unlock()
		return
	}
	st.answers++
	st.mu.Unlock()
	_, _ = conn.PacketConn.WriteTo(res, to)
}

func (h *badRequests) WithAttrs(as []slog.Attr) slog.Handler {
	return &badRequests{next: h.next.WithAttrs(as), st: h.st}
}

func (h *badRequests) WithGroup(name string) slog.Handler {
	return &badRequests{next: h.next.WithGroup(name), st: h.st}
}

// badRequestResponse builds a 400 for a malformed request from the header
// lines that can be read as text, or returns nil when the datagram is not
// a request (responses, ACKs and garbage are never answered).
func badRequestResponse(msg []byte, reason string) []byte {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	lines := strings.Split(strings.ReplaceAll(string(head), "\r\n", "\n"), "\n")
	first := strings.Fields(lines[0])
	if len(first) != 3 || first[2] != "SIP/2.0" || first[0] == "ACK" || !isToken(first[0]) {
		return nil
	}
	var vias, rest []string
	for _, l := range lines[1:] {
		name, _, ok := strings.Cut(l, ":")
		if !ok || strings.ContainsAny(l, "\r\x00") {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v":
			vias = append(vias, l)
		case "from", "f", "to", "t", "call-id", "i", "cseq":
			rest = append(rest, l)
		}
	}
	if len(vias) == 0 {
		return nil // no way to route an answer
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 400 Bad Request (" + phrase(reason) + ")\r\n")
	for _, l := range append(vias, rest...) {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// phrase makes an error text safe for a reason phrase: printable ASCII,
// at most 80 characters.
func phrase(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 80 {
			break
		}
		if r >= 0x20 && r < 0x7f && r != '(' && r != ')' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "malformed message"
	}
	return b.String()
}

func isToken(s string) bool {
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-.!%*_+`'~", r)) {
			return false
		}
	}
	return s != ""
}
