// Package regwire reads the REGISTER requests phones send over UDP straight
// from the datagram, and writes the answers to them, for the registrar's
// fast path (pbx.registerConn). It takes only the plain forms phones send:
// a request line, headers without line folding, exactly one Via with one
// value, no body. Parse returns false for anything else, and the request
// then takes the general path through sipgo's parser, which answers every
// form the RFC allows (or 400). What Parse accepts, sipgo parses to the
// same values: FuzzParse holds it to that with sipgo as the judge.
//
// Why by hand, next to sipgo: REGISTERs are most of what a PBX receives,
// and sipgo's general message model (every header parsed into its own
// object, looked up by lower-cased name, the answer built as a message and
// serialised again) was the largest share of the registrar's CPU time per
// REGISTER after the kernel's (docs/BENCHMARKS.md). The Request-URI is
// read by sipgo's URI parser. From, To and Contact are read here when they
// have the plain form <sip:user@host:port> with token parameters (the
// form phones send most; FuzzPlainAddress holds it to sipgo's reading),
// and by sipgo's address parser in every other form.
package regwire

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Request is a REGISTER read by Parse. Every string is a piece of the
// datagram (the text given to Parse), trimmed of surrounding white space.
type Request struct {
	// Recipient is the Request-URI, parsed by sipgo; RecipientText as
	// sent.
	Recipient     sip.Uri
	RecipientText string
	// Via is the value of the one Via header; ViaHost is its host
	// (without brackets), Branch its branch parameter ("" if none).
	Via, ViaHost, Branch string
	From, To             string
	// ToUser is the user part of the To URI; ToTagged says whether To
	// has a tag parameter.
	ToUser   string
	ToTagged bool
	// rport says how the Via names the rport parameter: absent,
	// without a value, or with one.
	rport  rport
	CallID string
	// CSeq is the CSeq header's value; Seq its number.
	CSeq string
	Seq  uint32
	// Contacts are the Contact headers, one contact each, as sipgo's
	// parser reads them ("*" as a wildcard).
	Contacts []sip.ContactHeader
	// Expires is the Expires header's value (digits), if HasExpires.
	Expires    string
	HasExpires bool
	// Authorization holds the values of the Authorization headers.
	Authorization []string
	UserAgent     string
	HasUserAgent  bool

	// scratch holds From and To while they are read.
	scratch sip.ContactHeader
}

// Parser reads REGISTER requests. Refuse names headers (lower case, full
// form) whose presence sends a request down the general path: e.g. a
// forwarding mark, which only the general path checks.
type Parser struct {
	Refuse []string
}

// Parse reads msg into r (reusing r's slices) and reports whether it is a
// REGISTER in a form this package handles.
func (p *Parser) Parse(msg string, r *Request) bool {
	contacts, auths := r.Contacts[:0], r.Authorization[:0]
	scratch := sip.ContactHeader{Params: r.scratch.Params[:0]}
	*r = Request{Contacts: contacts, Authorization: auths, scratch: scratch}
	if !plain(msg) {
		return false
	}
	line, rest, ok := cutLine(msg)
	if !ok {
		return false
	}
	uri, found := strings.CutPrefix(line, "REGISTER ")
	if !found {
		return false
	}
	uri, found = strings.CutSuffix(uri, " SIP/2.0")
	if !found || uri == "" || strings.ContainsAny(uri, " \t") {
		return false
	}
	if sip.ParseUri(uri, &r.Recipient) != nil || r.Recipient.Wildcard || !sipScheme(r.Recipient.Scheme) {
		return false
	}
	r.RecipientText = uri
	var seen [hCount]bool
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return false
		}
		if line == "" {
			break
		}
		if rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return false // a folded header
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return false
		}
		name := line[:colon]
		if !isToken(name) {
			return false
		}
		value := trim(line[colon+1:])
		h := lookup(name)
		if h == hOther {
			for _, ref := range p.Refuse {
				if strings.EqualFold(name, ref) {
					return false
				}
			}
			continue
		}
		if h == hRefused {
			return false
		}
		if seen[h] && h != hContact && h != hAuthorization {
			return false
		}
		seen[h] = true
		if !r.set(h, value) {
			return false
		}
	}
	if rest != "" {
		return false // a body
	}
	return seen[hVia] && seen[hFrom] && seen[hTo] && seen[hCallID] && seen[hCSeq]
}

type rport int

const (
	rportAbsent rport = iota
	rportEmpty
	rportValue
)

type header int

const (
	hOther header = iota
	hRefused
	hVia
	hFrom
	hTo
	hCallID
	hCSeq
	hContact
	hExpires
	hAuthorization
	hUserAgent
	hContentLength
	hMaxForwards
	hCount
)

// lookup names the headers this package reads, and refuses the ones
// sipgo parses that a plain REGISTER does not carry.
func lookup(name string) header {
	if len(name) == 1 {
		switch name[0] | 0x20 {
		case 'v':
			return hVia
		case 'f':
			return hFrom
		case 't':
			return hTo
		case 'i':
			return hCallID
		case 'm':
			return hContact
		case 'l':
			return hContentLength
		case 'c', 'r':
			return hRefused
		}
		return hOther
	}
	if len(name) < len(namesByLength) {
		for _, n := range namesByLength[len(name)] {
			if n.name[0]|0x20 == name[0]|0x20 && strings.EqualFold(name, n.name) {
				return n.h
			}
		}
	}
	return hOther
}

// headerName is a full header name lookup knows.
type headerName struct {
	name string
	h    header
}

var headerNames = []headerName{
	{"Via", hVia}, {"From", hFrom}, {"To", hTo}, {"Call-ID", hCallID}, {"CSeq", hCSeq},
	{"Contact", hContact}, {"Expires", hExpires}, {"Authorization", hAuthorization},
	{"User-Agent", hUserAgent}, {"Content-Length", hContentLength}, {"Max-Forwards", hMaxForwards},
	{"Content-Type", hRefused}, {"Route", hRefused}, {"Record-Route", hRefused},
	{"Refer-To", hRefused}, {"Referred-By", hRefused},
}

// namesByLength lists headerNames by length: a name is compared with the
// few of its own length (at most three) whose first letter it shares.
var namesByLength = func() (t [16][]headerName) {
	for _, n := range headerNames {
		t[len(n.name)] = append(t[len(n.name)], n)
	}
	return t
}()

func (r *Request) set(h header, v string) bool {
	switch h {
	case hVia:
		return r.setVia(v)
	case hFrom:
		if !address(v, &r.scratch.Address, &r.scratch.Params) {
			return false
		}
		r.From = v
	case hTo:
		u, ps := &r.scratch.Address, &r.scratch.Params
		if !address(v, u, ps) || !sipScheme(u.Scheme) {
			return false
		}
		r.To, r.ToUser, r.ToTagged = v, u.User, ps.Has("tag")
	case hCallID:
		if v == "" {
			return false
		}
		r.CallID = v
	case hCSeq:
		num, method, ok := strings.Cut(v, " ")
		if !ok || method != "REGISTER" || !digits(num) || len(num) > 10 {
			return false
		}
		n, err := strconv.ParseUint(num, 10, 32)
		if err != nil || n > 1<<31-1 {
			return false
		}
		r.CSeq, r.Seq = v, uint32(n)
	case hContact:
		if v == "" || strings.IndexByte(v, ',') >= 0 {
			return false
		}
		// The next element of Contacts, keeping the parameter list an
		// earlier request left there.
		n := len(r.Contacts)
		if n < cap(r.Contacts) {
			r.Contacts = r.Contacts[:n+1]
		} else {
			r.Contacts = append(r.Contacts, sip.ContactHeader{})
		}
		ch := &r.Contacts[n]
		*ch = sip.ContactHeader{Params: ch.Params[:0]}
		if v == "*" {
			ch.Address.Wildcard = true
		} else if !address(v, &ch.Address, &ch.Params) {
			return false
		}
	case hExpires:
		if !digits(v) || len(v) > 10 {
			return false
		}
		if _, err := strconv.ParseUint(v, 10, 32); err != nil {
			return false
		}
		r.Expires, r.HasExpires = v, true
	case hAuthorization:
		r.Authorization = append(r.Authorization, v)
	case hUserAgent:
		r.UserAgent, r.HasUserAgent = v, true
	case hContentLength:
		return v == "0"
	case hMaxForwards:
		return digits(v) && len(v) <= 3
	}
	return true
}

// address reads a From, To or Contact value (one address, not "*") into
// u and ps with sipgo's parser; ps keeps its capacity.
func address(v string, u *sip.Uri, ps *sip.HeaderParams) bool {
	if v == "" || strings.IndexByte(v, ',') >= 0 {
		return false
	}
	*u, *ps = sip.Uri{}, (*ps)[:0]
	if plainAddress(v, u, ps) {
		return true
	}
	if _, err := sip.ParseAddressValue(v, u, ps); err != nil || u.Wildcard {
		return false
	}
	return true
}

// plainAddress reads v into u and ps if it has the form phones use most,
// <sip:user@host:port> followed by header parameters of token characters
// (no display name, password, URI parameters, IPv6 address, quoting or
// white space), exactly as sipgo's ParseAddressValue reads it
// (FuzzPlainAddress holds it to that). For any other form it reports
// false and leaves u and ps alone. Why: sipgo's parser allocates and runs
// a state machine per character class, a tenth of the CPU time of a
// REGISTER read here (three addresses per request).
func plainAddress(v string, u *sip.Uri, ps *sip.HeaderParams) bool {
	if len(v) < 2 || v[0] != '<' {
		return false
	}
	end := strings.IndexByte(v, '>')
	if end < 0 {
		return false
	}
	uri, params := v[1:end], v[end+1:]
	var scheme string
	switch {
	case strings.HasPrefix(uri, "sip:"):
		scheme, uri = "sip", uri[len("sip:"):]
	case strings.HasPrefix(uri, "sips:"):
		scheme, uri = "sips", uri[len("sips:"):]
	default:
		return false
	}
	user := ""
	if at := strings.IndexByte(uri, '@'); at >= 0 {
		user, uri = uri[:at], uri[at+1:]
		if !every(user, func(c byte) bool { return userChars[c] }) {
			return false
		}
	}
	host, port := uri, 0
	if colon := strings.IndexByte(uri, ':'); colon >= 0 {
		digs := uri[colon+1:]
		if !digits(digs) || len(digs) > 5 {
			return false
		}
		host, port = uri[:colon], atoi(digs)
	}
	if !isHost(host) {
		return false
	}
	// The parameters are checked before anything is set, then added.
	for rest := params; rest != ""; {
		if rest[0] != ';' {
			return false
		}
		var param string
		param, rest = cutParam(rest)
		name, val, hasVal := strings.Cut(param, "=")
		if !isToken(name) || hasVal && !isToken(val) {
			return false
		}
	}
	*u = sip.Uri{Scheme: scheme, User: user, Host: host, Port: port}
	for rest := params; rest != ""; {
		var param string
		param, rest = cutParam(rest)
		name, val, _ := strings.Cut(param, "=")
		ps.Add(name, val)
	}
	return true
}

// cutParam splits s, which starts with ";", into its first parameter
// (without the ";") and what follows it.
func cutParam(s string) (param, rest string) {
	s = s[1:]
	if i := strings.IndexByte(s, ';'); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// userChars are the characters plainAddress takes in a URI's user part:
// RFC 3261's unreserved and user-unreserved ones, without the escape.
var userChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = alnum(byte(c)) || strings.IndexByte("-_.!~*'()&=+$,", byte(c)) >= 0
	}
	return t
}()

// atoi reads up to 5 decimal digits.
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// setVia takes "SIP/2.0/UDP host[:port][;param[=value]]..." with a token
// host or a bracketed IPv6 address, and token parameters.
func (r *Request) setVia(v string) bool {
	rest, ok := strings.CutPrefix(v, "SIP/2.0/UDP ")
	if !ok {
		return false
	}
	hostport, params, _ := strings.Cut(rest, ";")
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return false
		}
		a, err := netip.ParseAddr(hostport[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return false
		}
		host, port = hostport[1:end], hostport[end+1:]
		if port != "" {
			if port[0] != ':' || len(port) == 1 {
				return false
			}
			port = port[1:]
		}
	} else {
		if i := strings.IndexByte(hostport, ':'); i >= 0 {
			host, port = hostport[:i], hostport[i+1:]
			if port == "" {
				return false
			}
		}
		if !isHost(host) {
			return false
		}
	}
	if port != "" && !port16(port) {
		return false
	}
	if hostport == "" || strings.HasSuffix(rest, ";") || strings.Contains(rest, ";;") {
		return false
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, val, hasVal := strings.Cut(p, "=")
		if !isToken(name) || (hasVal && !isToken(val)) {
			return false
		}
		switch {
		case name == "branch":
			if r.Branch != "" || !hasVal {
				return false
			}
			r.Branch = val
		case name == "rport":
			if r.rport != rportAbsent || (hasVal && !port16(val)) {
				return false
			}
			r.rport = rportEmpty
			if hasVal {
				r.rport = rportValue
			}
		case strings.EqualFold(name, "branch"), strings.EqualFold(name, "rport"),
			strings.EqualFold(name, "received"), strings.EqualFold(name, "maddr"):
			// Spelled otherwise, or set by a proxy: sipgo's reading
			// of these is left to sipgo.
			return false
		}
	}
	r.Via, r.ViaHost = v, host
	return true
}

// cutLine returns the text up to the next CRLF and the text after it
// (the message is plain: every LF follows a CR).
func cutLine(s string) (line, rest string, ok bool) {
	i := strings.IndexByte(s, '\n')
	if i < 1 {
		return "", "", false
	}
	return s[:i-1], s[i+1:], true
}

// plain reports a text of printable 7-bit ASCII, HT and CRLF line ends:
// no other control character, no lone CR or LF, and nothing beyond ASCII
// (left to sipgo, which knows its UTF-8 rules). Eight bytes at a time
// where all are printable (most of a message), byte by byte elsewhere.
func plain(s string) bool {
	i := 0
	for {
		for i+8 <= len(s) && printable8(le64(s[i:i+8])) {
			i += 8
		}
		if i == len(s) {
			return true
		}
		// At most eight bytes up to the next word, or the tail.
		for end := min(i+8, len(s)); i < end; i++ {
			c := s[i]
			if c >= 0x20 && c < 0x7f || c == '\t' {
				continue
			}
			switch {
			case c == '\r' && i+1 < len(s) && s[i+1] == '\n':
			case c == '\n' && i > 0 && s[i-1] == '\r':
			default:
				return false
			}
		}
	}
}

// printable8 reports whether each of the 8 bytes of x is within
// 0x20..0x7e, on the word: a byte below 0x20 borrows into its top bit
// when 0x20 is taken from it, a byte above 0x7e carries into its top bit
// when 1 is added, and a byte from 0x80 up has it set already (the tests
// of "Bit Twiddling Hacks", hasless and hasmore, which are exact as
// answers for the whole word).
func printable8(x uint64) bool {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	below := (x - 0x20*ones) &^ x
	above := x + (0x7f-0x7e)*ones | x
	return (below|above)&tops == 0
}

// le64 is the first 8 bytes of w as a little-endian word.
func le64(w string) uint64 {
	_ = w[7]
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

func trim(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func sipScheme(s string) bool { return s == "sip" || s == "sips" }

// port16: a port number as sipgo writes it back (1-65535, no leading
// zero).
func port16(s string) bool {
	if !digits(s) || len(s) > 5 || s[0] == '0' {
		return false
	}
	n, _ := strconv.Atoi(s)
	return n <= 65535
}

func digits(s string) bool {
	return every(s, func(c byte) bool { return c >= '0' && c <= '9' })
}

// isToken: RFC 3261 token characters.
func isToken(s string) bool {
	return every(s, func(c byte) bool { return tokenChars[c] })
}

var tokenChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = alnum(byte(c)) || strings.IndexByte("-.!%*_+`'~", byte(c)) >= 0
	}
	return t
}()

// isHost: a host name or IPv4 address as a phone writes it.
func isHost(s string) bool {
	return every(s, func(c byte) bool { return alnum(c) || c == '.' || c == '-' })
}

func alnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// every reports whether s is not empty and each of its bytes is ok.
func every(s string, ok func(byte) bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// Header is one header of an answer.
type Header struct {
	Name, Value string
}

// AppendResponse appends to b the answer to r with code and reason, sent
// back to src ("host:port", where the request came from): r's Via with
// received and rport set to src (RFC 3581, whether or not the phone asked,
// as nat.Symmetric does), From, To (with tag added when it has none),
// Call-ID, CSeq, the extra headers in order, and Content-Length: 0. These
// are the headers and parameters sipgo's NewResponseFromRequest followed
// by nat.Symmetric give the same answer.
func AppendResponse(b []byte, r *Request, src string, code int, reason string, tag []byte, extra []Header) []byte {
	host, port := splitHostPort(src)
	b = append(b, "SIP/2.0 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, reason...)
	b = append(b, "\r\nVia: "...)
	b = appendVia(b, r, host, port)
	b = append(b, "\r\nFrom: "...)
	b = append(b, r.From...)
	b = append(b, "\r\nTo: "...)
	b = append(b, r.To...)
	if !r.ToTagged {
		b = append(b, ";tag="...)
		b = append(b, tag...)
	}
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, r.CallID...)
	b = append(b, "\r\nCSeq: "...)
	b = append(b, r.CSeq...)
	for _, h := range extra {
		b = append(b, "\r\n"...)
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
	}
	return append(b, "\r\nContent-Length: 0\r\n\r\n"...)
}

// appendVia writes r's Via with its rport parameter given port, and
// received=host where sipgo and nat.Symmetric set it: when the Via's host
// differs from host, and whenever the phone sent rport without a value.
func appendVia(b []byte, r *Request, host, port string) []byte {
	head, params, _ := strings.Cut(r.Via, ";")
	b = append(b, head...)
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		b = append(b, ';')
		if name, _, _ := strings.Cut(p, "="); name == "rport" {
			b = append(b, "rport="...)
			b = append(b, port...)
			continue
		}
		b = append(b, p...)
	}
	received := host != "" && (r.rport == rportEmpty || r.ViaHost != host)
	if received {
		b = append(b, ";received="...)
		b = append(b, host...)
	}
	if r.rport == rportAbsent && port != "" {
		b = append(b, ";rport="...)
		b = append(b, port...)
	}
	return b
}

// splitHostPort splits "host:port" or "[v6]:port"; an address without a
// port gives "", "" (nothing to record, as net.SplitHostPort fails).
func splitHostPort(s string) (host, port string) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", ""
	}
	host, port = s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	} else if strings.IndexByte(host, ':') >= 0 {
		return "", ""
	}
	return host, port
}
