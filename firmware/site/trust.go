package site

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

// TrustHeader is the header a box adds to a request it forwards to
// another box of the site, so that the other box takes it without digest
// authentication (docs/SITE.md, "Forwarding"). Its value is
//
//	<member> <unix seconds> <mac>
//
// where mac is base64url(HMAC-SHA256) over the member, the time and the
// request's method, Request-URI user, Call-ID, From tag and CSeq, keyed
// by a key derived from the site key. Only a box with the site key can
// make one; a copy is refused once seen, and a header older or newer than
// trustWindow is refused, so a captured INVITE cannot be played again.
const TrustHeader = "X-Twinpbx-Site"

// trustWindow is how far a forwarded request's time may be from the
// receiving box's clock; the boxes' clocks must agree (NTP).
const trustWindow = 30 * time.Second

// Errors of Verify; each is logged by the receiving box with the source.
var (
	ErrNotForwarded = errors.New("the request carries no site header")
	errBadHeader    = errors.New("site header malformed")
	errBadMAC       = errors.New("site header not signed with the site key")
	errStale        = errors.New("site header too old or from the future")
	errReplayed     = errors.New("site header seen before (replayed)")
	errNotMember    = errors.New("site header from an address that is not the named member's")
)

// trust signs and checks forwarded requests.
type trust struct {
	key []byte
	now func() time.Time
	// member returns the addresses (IPs) a member of the site sends
	// from, or none when it is not an alive member.
	member func(name string) []net.IP

	mu sync.Mutex
	// seen holds the MACs accepted, until they are too old to be
	// accepted again anyway.
	seen map[string]time.Time
	// forgot is when seen was last swept.
	forgot time.Time
}

func newTrust(key []byte, now func() time.Time, member func(string) []net.IP) *trust {
	return &trust{key: key, now: now, member: member, seen: map[string]time.Time{}}
}

// mac computes the header's MAC over req's key fields.
func (t *trust) mac(req *sip.Request, member string, ts int64) string {
	h := hmac.New(sha256.New, t.key)
	field := func(s string) {
		// Length-prefixed, so fields cannot be shifted into each other.
		fmt.Fprintf(h, "%d:%s,", len(s), s)
	}
	field(member)
	field(strconv.FormatInt(ts, 10))
	field(string(req.Method))
	field(req.Recipient.User)
	if cid := req.CallID(); cid != nil {
		field(cid.Value())
	} else {
		field("")
	}
	tag := ""
	if f := req.From(); f != nil {
		tag, _ = f.Params.Get("tag")
	}
	field(tag)
	seq := uint32(0)
	if cs := req.CSeq(); cs != nil {
		seq = cs.SeqNo
	}
	field(strconv.FormatUint(uint64(seq), 10))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// sign adds the header to req as sent by member.
func (t *trust) sign(req *sip.Request, member string) {
	ts := t.now().Unix()
	req.RemoveHeader(TrustHeader)
	req.AppendHeader(sip.NewHeader(TrustHeader, member+" "+strconv.FormatInt(ts, 10)+" "+t.mac(req, member, ts)))
}

// verify checks req's header and its source address, and returns the
// member that forwarded it.
func (t *trust) verify(req *sip.Request) (string, error) {
	h := req.GetHeader(TrustHeader)
	if h == nil {
		return "", ErrNotForwarded
	}
	now := t.now()
	t.forget(now)
	parts := strings.Fields(h.Value())
	if len(parts) != 3 || len(parts[0]) > maxField {
		return "", errBadHeader
	}
	member, mac := parts[0], parts[2]
	ts, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return "", errBadHeader
	}
	if !hmac.Equal([]byte(mac), []byte(t.mac(req, member, ts))) {
		return "", errBadMAC
	}
	at := time.Unix(ts, 0)
	if at.Before(now.Add(-trustWindow)) || at.After(now.Add(trustWindow)) {
		return "", errStale
	}
	if !t.fromMember(req, member) {
		return member, errNotMember
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.seen[mac]; ok {
		return member, errReplayed
	}
	t.seen[mac] = at.Add(2 * trustWindow)
	return member, nil
}

// forget drops the MACs too old to be accepted again anyway.
func (t *trust) forget(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.forgot) < time.Second && now.After(t.forgot) {
		return
	}
	t.forgot = now
	for m, until := range t.seen {
		if now.After(until) {
			delete(t.seen, m)
		}
	}
}

// fromMember says whether req came from an address of the member: the
// address the packet or connection came from, never its Via.
func (t *trust) fromMember(req *sip.Request, member string) bool {
	host, _, err := net.SplitHostPort(req.MessageData.Source())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, a := range t.member(member) {
		if a.Equal(ip) {
			return true
		}
	}
	return false
}
