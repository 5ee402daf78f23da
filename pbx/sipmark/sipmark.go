// Package sipmark is the mark one twinpbx box puts on a SIP request it
// passes to another box, so that the other box can trust what the mark
// says: that the request came from that box (a site member forwarding a
// call, docs/SITE.md) and, optionally, a claim about it (the address and
// transport the phone really sent it from, when a twin's standby forwards
// it to the active, docs/CLUSTER.md "Both boxes take requests").
//
// A mark is one header whose value is
//
//	<sender> <unix seconds> <mac>
//	<sender> <unix seconds> <claim> <mac>
//
// where mac is base64url(HMAC-SHA256) over the sender, the time, the
// claim (only when there is one) and the request's method, Request-URI
// user, Call-ID, From tag and CSeq number, keyed by a key only the boxes
// share. A mark cannot be moved to another request, made without the
// key, or used outside a time window; the receiver also checks that the
// packet or connection came from an address of the named sender, and,
// when asked to, refuses a mark it has seen before.
package sipmark

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// DefaultWindow is how far a mark's time may be from the receiver's
// clock when Options.Window is zero; the boxes' clocks must agree (NTP).
const DefaultWindow = 30 * time.Second

// MaxField bounds the sender's name and the claim in a mark.
const MaxField = 256

// Errors of Verify. Every one but ErrNotMarked means the request claims
// to come from a box and must be refused.
var (
	ErrNotMarked = errors.New("the request carries no mark")
	ErrMalformed = errors.New("mark malformed")
	ErrBadMAC    = errors.New("mark not made with the shared key")
	ErrStale     = errors.New("mark too old or from the future")
	ErrReplayed  = errors.New("mark seen before (replayed)")
	ErrNotSender = errors.New("mark from an address that is not the named sender's")
)

// Options of a Marker.
type Options struct {
	// Header is the header's name ("X-Twinpbx-Site").
	Header string
	// Key is the shared key (at least 16 bytes).
	Key []byte
	// Senders returns the addresses a sender sends from, none when it is
	// not (or no longer) one whose marks are taken. Nil: marks are only
	// made, never accepted.
	Senders func(name string) []net.IP
	// Window is how far a mark's time may be from the clock (0:
	// DefaultWindow).
	Window time.Duration
	// RefuseReplays: a mark seen before within the window is refused.
	// Only for marks that grant something a copy must not grant again.
	RefuseReplays bool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Marker makes and checks marks. It is safe for concurrent use.
type Marker struct {
	o Options

	mu sync.Mutex
	// seen holds the MACs accepted (RefuseReplays), until they are too
	// old to be accepted again anyway; forgot is when it was last swept.
	seen   map[string]time.Time
	forgot time.Time
}

// New returns a Marker.
func New(o Options) (*Marker, error) {
	if o.Header == "" {
		return nil, errors.New("sipmark: no header name")
	}
	if len(o.Key) < 16 {
		return nil, errors.New("sipmark: the key is shorter than 16 bytes")
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Marker{o: o, seen: map[string]time.Time{}}, nil
}

// Header is the name of the header the marks are in.
func (m *Marker) Header() string { return m.o.Header }

// Mark is what a verified mark says.
type Mark struct {
	Sender string
	// Claim is what the sender says about the request ("" when nothing).
	Claim string
	At    time.Time
}

// mac computes the MAC over the mark's fields and req's key fields.
func (m *Marker) mac(req *sip.Request, sender string, ts int64, claim string) string {
	// The MAC's input, each field length-prefixed ("<len>:<field>,") so
	// that fields cannot be shifted into each other (TestMarkWire).
	var b [256]byte
	buf := appendField(b[:0], sender)
	buf = appendField(buf, strconv.FormatInt(ts, 10))
	if claim != "" {
		// Only then: a mark without a claim is the site's mark as it
		// was before claims existed, which older boxes still check.
		buf = appendField(buf, "claim="+claim)
	}
	buf = appendField(buf, string(req.Method))
	buf = appendField(buf, req.Recipient.User)
	cid := ""
	if h := req.CallID(); h != nil {
		cid = h.Value()
	}
	buf = appendField(buf, cid)
	tag := ""
	if f := req.From(); f != nil {
		tag, _ = f.Params.Get("tag")
	}
	buf = appendField(buf, tag)
	seq := uint32(0)
	if cs := req.CSeq(); cs != nil {
		seq = cs.SeqNo
	}
	buf = appendField(buf, strconv.FormatUint(uint64(seq), 10))
	h := hmac.New(sha256.New, m.o.Key)
	h.Write(buf)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// appendField appends s to the MAC's input as "<len>:<s>,".
func appendField(buf []byte, s string) []byte {
	buf = strconv.AppendInt(buf, int64(len(s)), 10)
	buf = append(buf, ':')
	buf = append(buf, s...)
	return append(buf, ',')
}

// Sign puts a mark made by sender, with claim ("" for none), on req,
// replacing any mark it had. The sender's name and the claim must be
// printable ASCII without white space or commas, at most MaxField bytes.
func (m *Marker) Sign(req *sip.Request, sender, claim string) error {
	if !token(sender) || claim != "" && !token(claim) {
		return fmt.Errorf("sipmark: sender %q or claim %q is not a token", sender, claim)
	}
	ts := m.o.Now().Unix()
	v := sender + " " + strconv.FormatInt(ts, 10) + " "
	if claim != "" {
		v += claim + " "
	}
	req.RemoveHeader(m.o.Header)
	req.AppendHeader(sip.NewHeader(m.o.Header, v+m.mac(req, sender, ts, claim)))
	return nil
}

// token says whether s can be a field of the header: printable ASCII
// without white space or commas.
func token(s string) bool {
	if s == "" || len(s) > MaxField {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == ',' {
			return false
		}
	}
	return true
}

// Parse splits a mark's value into its fields, without checking the MAC.
func Parse(value string) (sender string, ts int64, claim, mac string, err error) {
	parts := strings.Fields(value)
	switch len(parts) {
	case 3:
		sender, mac = parts[0], parts[2]
	case 4:
		sender, claim, mac = parts[0], parts[2], parts[3]
	default:
		return "", 0, "", "", ErrMalformed
	}
	if !token(sender) || claim != "" && !token(claim) || len(mac) > MaxField {
		return "", 0, "", "", ErrMalformed
	}
	ts, err = strconv.ParseInt(parts[1], 10, 64)
	if err != nil || ts < 0 {
		return "", 0, "", "", ErrMalformed
	}
	return sender, ts, claim, mac, nil
}

// Verify checks req's mark and the address req came from (the packet's
// or connection's, never its Via). With more than one mark header the
// request is refused as malformed. The Mark is returned with
// ErrNotSender and ErrReplayed too, for the log.
func (m *Marker) Verify(req *sip.Request) (Mark, error) {
	hs := req.GetHeaders(m.o.Header)
	if len(hs) == 0 {
		return Mark{}, ErrNotMarked
	}
	if len(hs) > 1 {
		return Mark{}, ErrMalformed
	}
	sender, ts, claim, mac, err := Parse(hs[0].Value())
	if err != nil {
		return Mark{}, err
	}
	if !hmac.Equal([]byte(mac), []byte(m.mac(req, sender, ts, claim))) {
		return Mark{}, ErrBadMAC
	}
	now := m.o.Now()
	at := time.Unix(ts, 0)
	if at.Before(now.Add(-m.o.Window)) || at.After(now.Add(m.o.Window)) {
		return Mark{}, ErrStale
	}
	mk := Mark{Sender: sender, Claim: claim, At: at}
	if !m.fromSender(req, sender) {
		return mk, ErrNotSender
	}
	if !m.o.RefuseReplays {
		return mk, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetLocked(now)
	if _, ok := m.seen[mac]; ok {
		return mk, ErrReplayed
	}
	m.seen[mac] = at.Add(2 * m.o.Window)
	return mk, nil
}

// Seen is how many marks the replay memory holds.
func (m *Marker) Seen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetLocked(m.o.Now())
	return len(m.seen)
}

// forgetLocked drops the MACs too old to be accepted again anyway, at
// most once a second.
func (m *Marker) forgetLocked(now time.Time) {
	if now.Sub(m.forgot) < time.Second && now.After(m.forgot) {
		return
	}
	m.forgot = now
	for k, until := range m.seen {
		if now.After(until) {
			delete(m.seen, k)
		}
	}
}

// fromSender says whether req came from an address of sender.
func (m *Marker) fromSender(req *sip.Request, sender string) bool {
	if m.o.Senders == nil {
		return false
	}
	host, _, err := net.SplitHostPort(req.MessageData.Source())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, a := range m.o.Senders(sender) {
		if a.Equal(ip) {
			return true
		}
	}
	return false
}
