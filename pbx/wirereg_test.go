package pbx

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// regPhone is a phone's UDP socket towards one PBX.
type regPhone struct {
	conn net.PacketConn
	to   net.Addr
	port string
}

func newRegPhone(t *testing.T, to string) *regPhone {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ua, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	return &regPhone{conn: c, to: ua, port: port}
}

// send writes msg with PORT replaced by the phone's port and returns the
// answer read by sipgo, or nil when none comes within wait (or it could
// not be sent or read: reported with t.Error, so that phones may run on
// goroutines of their own).
func (ph *regPhone) send(t *testing.T, msg string, wait time.Duration) *sip.Response {
	t.Helper()
	msg = strings.ReplaceAll(msg, "PORT", ph.port)
	if _, err := ph.conn.WriteTo([]byte(msg), ph.to); err != nil {
		t.Error(err)
		return nil
	}
	_ = ph.conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, _, err := ph.conn.ReadFrom(buf)
	if err != nil {
		return nil
	}
	m, err := sip.ParseMessage(buf[:n])
	res, ok := m.(*sip.Response)
	if err != nil || !ok {
		t.Errorf("answer %q is no readable response: %v", buf[:n], err)
		return nil
	}
	return res
}

// regStep is one REGISTER of the comparison: its headers after the
// request line, with PORT for the phone's port and, when auth is set,
// an Authorization line computed for the last challenge.
type regStep struct {
	name    string
	headers string
	auth    *digestAnswer
	// head replaces the request line and Via (a format with %s for the
	// branch); extra comes after headers, before the Authorization line.
	head, extra string
	// toSipgo: a form regwire leaves to sipgo's parser.
	toSipgo bool
}

type digestAnswer struct {
	user, secret, uri string
	nc                int
	// reuseNonce: answer the challenge before the last one.
	reuseNonce bool
}

func (d *digestAnswer) header(realm, nonce string) string {
	h := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	ha1 := h(d.user + ":" + realm + ":" + d.secret)
	ha2 := h("REGISTER:" + d.uri)
	nc := fmt.Sprintf("%08x", d.nc)
	resp := h(ha1 + ":" + nonce + ":" + nc + ":c0ffee:auth:" + ha2)
	return fmt.Sprintf("Authorization: Digest username=%q, realm=%q, nonce=%q, uri=%q, response=%q, algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc=%s\r\n",
		d.user, realm, nonce, d.uri, resp, nc)
}

// TestWireRegisterAsSipgo: the same REGISTERs sent to a PBX that reads
// them with regwire and to one that parses them with sipgo get the same
// answers and leave the same bindings, step by step: challenges, stale
// and reused nonces, wrong passwords, refreshes, CSeq order, the contact
// limit, Min-Expires, Contact *, queries, refused contacts, To tags, Via
// forms, digest uris spelled otherwise, forged forwarding marks, the
// brute-force brake, and the forms regwire leaves to sipgo.
func TestWireRegisterAsSipgo(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	edit := func(sipgoParser bool) func(*config.Config, *Options) {
		return func(c *config.Config, o *Options) {
			c.SIP.Realm = "pbx"
			c.Extensions = []config.Extension{{Number: "100", Secret: "secret-100-x", MaxContacts: 2}, {Number: "101", Secret: "secret-101-x"}}
			o.AuthKey = key
			o.sipgoRegister = sipgoParser
			o.Forwarded = testMarker(t, "twin-key-0123456789")
		}
	}
	wp, wireAddr := runTestPBX(t, "31040-31059", edit(false))
	sp, sipgoAddr := runTestPBX(t, "31060-31079", edit(true))
	if wp.wire == nil || sp.wire != nil {
		t.Fatal("the PBXs do not read REGISTER as meant")
	}
	wPhone, sPhone := newRegPhone(t, wireAddr), newRegPhone(t, sipgoAddr)

	const head = "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bK-%s;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:100@127.0.0.1>;tag=f1\r\n"
	to100 := "To: <sip:100@127.0.0.1>\r\n"
	contactPort := "Contact: <sip:100@127.0.0.1:PORT>\r\n"
	auth := func(nc int) *digestAnswer {
		return &digestAnswer{user: "100", secret: "secret-100-x", uri: "sip:127.0.0.1", nc: nc}
	}
	steps := []regStep{
		{name: "challenge", headers: to100 + "Call-ID: a1\r\nCSeq: 1 REGISTER\r\nContact: <sip:100@127.0.0.1:PORT>\r\nExpires: 3600\r\nUser-Agent: phone A\r\n"},
		{name: "register", headers: to100 + "Call-ID: a1\r\nCSeq: 2 REGISTER\r\nContact: <sip:100@127.0.0.1:PORT>\r\nExpires: 3600\r\nUser-Agent: phone A\r\n", auth: auth(1)},
		{name: "refresh", headers: to100 + "Call-ID: a1\r\nCSeq: 3 REGISTER\r\nContact: <sip:100@127.0.0.1:PORT>\r\nExpires: 3600\r\nUser-Agent: phone A\r\n", auth: auth(2)},
		{name: "CSeq not above", headers: to100 + "Call-ID: a1\r\nCSeq: 3 REGISTER\r\nContact: <sip:100@127.0.0.1:PORT>\r\nExpires: 3600\r\n", auth: auth(3)},
		{name: "nonce count reused", headers: to100 + "Call-ID: a1\r\nCSeq: 4 REGISTER\r\nContact: <sip:100@127.0.0.1:PORT>\r\n", auth: auth(2)},
		{name: "second contact with q and expires", headers: to100 + "Call-ID: a1\r\nCSeq: 5 REGISTER\r\nContact: <sip:100@10.0.0.2:5062>;q=0.5;expires=120\r\n", auth: auth(4)},
		{name: "third contact over the limit", headers: to100 + "Call-ID: b1\r\nCSeq: 1 REGISTER\r\nContact: <sip:100@10.0.0.3:5062;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\"\r\nExpires: 600\r\n", auth: auth(5)},
		{name: "too brief", headers: to100 + "Call-ID: b1\r\nCSeq: 2 REGISTER\r\nContact: <sip:100@10.0.0.3:5062>\r\nExpires: 10\r\n", auth: auth(6)},
		{name: "query", headers: to100 + "Call-ID: b1\r\nCSeq: 3 REGISTER\r\n", auth: auth(7)},
		{name: "wrong password", headers: to100 + "Call-ID: b1\r\nCSeq: 4 REGISTER\r\n", auth: &digestAnswer{user: "100", secret: "guess", uri: "sip:127.0.0.1", nc: 8}},
		{name: "another extension", headers: "To: <sip:101@127.0.0.1>\r\nCall-ID: b1\r\nCSeq: 5 REGISTER\r\n", auth: auth(1)},
		{name: "unknown extension", headers: "To: <sip:999@127.0.0.1>\r\nCall-ID: b1\r\nCSeq: 6 REGISTER\r\n", auth: auth(2)},
		{name: "no extension in To", headers: "To: <sip:127.0.0.1>\r\nCall-ID: b1\r\nCSeq: 7 REGISTER\r\n", auth: auth(3)},
		{name: "digest uri not the Request-URI", headers: to100 + "Call-ID: b1\r\nCSeq: 8 REGISTER\r\n", auth: &digestAnswer{user: "100", secret: "secret-100-x", uri: "sip:10.9.9.9", nc: 4}},
		{name: "contact not sip", headers: to100 + "Call-ID: b1\r\nCSeq: 9 REGISTER\r\nContact: <tel:+15550100>\r\n", auth: auth(5)},
		{name: "contact expires unreadable", headers: to100 + "Call-ID: b1\r\nCSeq: 10 REGISTER\r\nContact: <sip:100@10.0.0.4>;expires=soon\r\n", auth: auth(6)},
		{name: "q out of range", headers: to100 + "Call-ID: b1\r\nCSeq: 11 REGISTER\r\nContact: <sip:100@10.0.0.4>;q=2\r\n", auth: auth(7)},
		{name: "wildcard without Expires", headers: to100 + "Call-ID: b1\r\nCSeq: 12 REGISTER\r\nContact: *\r\n", auth: auth(8)},
		{name: "wildcard with another contact", headers: to100 + "Call-ID: b1\r\nCSeq: 13 REGISTER\r\nContact: *\r\nContact: <sip:100@10.0.0.4>\r\nExpires: 0\r\n", auth: auth(9)},
		{name: "expires over the maximum", headers: to100 + "Call-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:100@10.0.0.5>\r\nExpires: 4294967295\r\n", auth: auth(10)},
		{name: "compact form", headers: "t: <sip:100@127.0.0.1>\r\ni: c1\r\nCSeq: 2 REGISTER\r\nm: <sip:100@10.0.0.5>;expires=300\r\n", auth: auth(11)},
		{name: "left to sipgo: two contacts in one header", headers: to100 + "Call-ID: c1\r\nCSeq: 3 REGISTER\r\nContact: <sip:100@10.0.0.5>, <sip:100@10.0.0.6>\r\nExpires: 300\r\n", auth: auth(12), toSipgo: true},
		{name: "stale nonce", headers: to100 + "Call-ID: c1\r\nCSeq: 4 REGISTER\r\n", auth: &digestAnswer{user: "100", secret: "secret-100-x", uri: "sip:127.0.0.1", nc: 1, reuseNonce: true}},
		{name: "remove one", headers: to100 + "Call-ID: c1\r\nCSeq: 5 REGISTER\r\nContact: <sip:100@10.0.0.5>;expires=0\r\n", auth: auth(13)},
		{name: "remove all", headers: to100 + "Call-ID: d1\r\nCSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\n", auth: auth(14)},
		{name: "unreadable credentials", headers: to100 + "Call-ID: d1\r\nCSeq: 2 REGISTER\r\nAuthorization: Digest username=\"100\", realm=\"pbx\", nonce=\"x\r\n"},
		{name: "To with a tag", headers: "To: <sip:100@127.0.0.1>;tag=t0\r\nCall-ID: e1\r\nCSeq: 1 REGISTER\r\n" + contactPort + "Expires: 600\r\n", auth: auth(15)},
		{name: "Via without rport naming another host", head: "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bK-%s\r\n",
			headers: to100 + "Call-ID: e1\r\nCSeq: 2 REGISTER\r\n" + contactPort, auth: auth(16)},
		{name: "Via with an rport value", head: "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;rport=5070;branch=z9hG4bK-%s\r\n",
			headers: to100 + "Call-ID: e1\r\nCSeq: 3 REGISTER\r\n" + contactPort, auth: auth(17)},
		{name: "digest uri spelled otherwise", headers: to100 + "Call-ID: e1\r\nCSeq: 4 REGISTER\r\n" + contactPort,
			auth: &digestAnswer{user: "100", secret: "secret-100-x", uri: "SIP:127.0.0.1:5060", nc: 18}},
		{name: "Request-URI with a parameter, digest uri as sent", head: "REGISTER sip:127.0.0.1;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bK-%s;rport\r\n",
			headers: to100 + "Call-ID: e1\r\nCSeq: 5 REGISTER\r\n" + contactPort,
			auth:    &digestAnswer{user: "100", secret: "secret-100-x", uri: "sip:127.0.0.1;transport=udp", nc: 19}},
		{name: "Request-URI with a parameter, digest uri without", head: "REGISTER sip:127.0.0.1;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bK-%s;rport\r\n",
			headers: to100 + "Call-ID: e1\r\nCSeq: 6 REGISTER\r\n" + contactPort, auth: auth(20)},
		{name: "digest uri names another port", headers: to100 + "Call-ID: e1\r\nCSeq: 7 REGISTER\r\n" + contactPort,
			auth: &digestAnswer{user: "100", secret: "secret-100-x", uri: "sip:127.0.0.1:5062", nc: 21}},
		{name: "credentials for another realm first", headers: to100 + "Call-ID: e1\r\nCSeq: 8 REGISTER\r\n" + contactPort,
			extra: "Authorization: Digest username=\"100\", realm=\"elsewhere\", nonce=\"n\", uri=\"sip:127.0.0.1\", response=\"00\"\r\n", auth: auth(22)},
		{name: "forged forwarding mark", headers: to100 + "Call-ID: e1\r\nCSeq: 9 REGISTER\r\n" + contactPort,
			extra: "X-Test-Twin: forged\r\n", auth: auth(23), toSipgo: true},
		{name: "forged forwarding mark, name in lower case", headers: to100 + "Call-ID: e1\r\nCSeq: 10 REGISTER\r\n" + contactPort,
			extra: "x-test-twin: twin-b;1;x\r\n", auth: auth(24), toSipgo: true},
	}
	// Password guessing: the failures that reach the brake's limit, then
	// the right password refused from the blocked address.
	for i := range 9 {
		steps = append(steps, regStep{name: fmt.Sprintf("guess %d", i+2), headers: to100 + "Call-ID: g1\r\nCSeq: " + strconv.Itoa(i+1) + " REGISTER\r\n",
			auth: &digestAnswer{user: "100", secret: "guess", uri: "sip:127.0.0.1", nc: 1}})
	}
	steps = append(steps, regStep{name: "right password from a blocked address", headers: to100 + "Call-ID: g1\r\nCSeq: 10 REGISTER\r\n", auth: auth(2)})
	var nonces []string // the challenges so far, per PBX alike (same key, same clock second)
	realm := "pbx"
	for i, st := range steps {
		h := head
		if st.head != "" {
			h = st.head + "Max-Forwards: 70\r\nFrom: <sip:100@127.0.0.1>;tag=f1\r\n"
		}
		msg := fmt.Sprintf(h, strconv.Itoa(i)) + st.headers + st.extra
		if st.auth != nil {
			if len(nonces) == 0 {
				t.Fatalf("%s: no challenge yet", st.name)
			}
			nonce := nonces[len(nonces)-1]
			if st.auth.reuseNonce {
				nonce = nonces[0]
			}
			msg += st.auth.header(realm, nonce)
		}
		msg += "Content-Length: 0\r\n\r\n"
		w := wPhone.send(t, msg, 5*time.Second)
		s := sPhone.send(t, msg, 5*time.Second)
		if w == nil || s == nil {
			t.Fatalf("%s: answered by the regwire PBX: %v, by the sipgo PBX: %v", st.name, w != nil, s != nil)
		}
		t.Logf("%s: %d %s", st.name, w.StatusCode, w.Reason)
		if got, want := summary(w, wPhone.port), summary(s, sPhone.port); got != want {
			t.Errorf("%s: regwire PBX answered\n%s\nsipgo PBX answered\n%s", st.name, got, want)
		}
		if h := w.GetHeader("WWW-Authenticate"); h != nil {
			v := h.Value()
			if i := strings.Index(v, `nonce="`); i >= 0 {
				n := v[i+7:]
				nonces = append(nonces, n[:strings.IndexByte(n, '"')])
			}
		}
		if got, want := bindings(wp.loc.All(), wPhone.port), bindings(sp.loc.All(), sPhone.port); !slices.Equal(got, want) {
			t.Errorf("%s: regwire PBX holds\n%q\nsipgo PBX holds\n%q", st.name, got, want)
		}
	}
	var wired uint64
	for _, st := range steps {
		if !st.toSipgo {
			wired++
		}
	}
	if n := wp.wire.served.Load(); n != wired {
		t.Errorf("regwire served %d of %d REGISTERs, want %d", n, len(steps), wired)
	}
}

// summary is what an answer says, with the phone's port as PORT and the
// nonce, To tag and Date left out.
func summary(res *sip.Response, port string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s\n", res.StatusCode, res.Reason)
	via := res.Via()
	rport, _ := via.Params.Get("rport")
	received, _ := via.Params.Get("received")
	branch, _ := via.Params.Get("branch")
	fmt.Fprintf(&b, "Via %s rport=%s received=%s branch=%s\n", via.SentBy(), rport, received, branch)
	fmt.Fprintf(&b, "From %s To %s tagged=%v Call-ID %s CSeq %s\n", res.From().Address.String(), res.To().Address.String(),
		res.To().Params.Has("tag"), res.CallID().Value(), res.CSeq().Value())
	for _, h := range res.Headers() {
		switch strings.ToLower(h.Name()) {
		case "via", "from", "to", "call-id", "cseq", "content-length":
		case "date":
			if _, err := time.Parse(time.RFC1123, h.Value()); err != nil {
				fmt.Fprintf(&b, "bad Date %q\n", h.Value())
			}
		case "www-authenticate":
			v := h.Value()
			if i := strings.Index(v, `nonce="`); i >= 0 {
				n := v[i+7:]
				v = v[:i] + `nonce="N"` + n[strings.IndexByte(n, '"')+1:]
			}
			fmt.Fprintf(&b, "%s: %s\n", h.Name(), v)
		default:
			fmt.Fprintf(&b, "%s: %s\n", h.Name(), h.Value())
		}
	}
	return strings.ReplaceAll(b.String(), port, "PORT")
}

// bindings lists what a table holds, with the phone's port as PORT and
// expiries rounded to 10 s (the two PBXs answer a moment apart).
func bindings(bs []location.Binding, port string) []string {
	var out []string
	for _, b := range bs {
		left := time.Until(b.Expires).Round(10 * time.Second)
		out = append(out, strings.ReplaceAll(fmt.Sprintf("%s %s %s %s/%d %v q=%d %q", b.AOR, b.Contact, b.Source, b.CallID, b.CSeq, left, b.Q, b.UserAgent), port, "PORT"))
	}
	return out
}

// TestWireRegisterConcurrent: phones register and refresh at once through
// the regwire path (run with -race): every REGISTER is answered, each
// phone ends with its own binding.
func TestWireRegisterConcurrent(t *testing.T) {
	const phones, rounds = 8, 30
	var exts []config.Extension
	for i := range phones {
		exts = append(exts, config.Extension{Number: strconv.Itoa(200 + i), Secret: fmt.Sprintf("secret-%d-x", 200+i)})
	}
	p, addr := runTestPBX(t, "31080-31099", func(c *config.Config, o *Options) {
		c.SIP.Realm = "pbx"
		c.Extensions = exts
	})
	errs := make(chan error, phones)
	for i := range phones {
		ph := newRegPhone(t, addr)
		user := strconv.Itoa(200 + i)
		go func() {
			errs <- func() error {
				head := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bK-%d;rport\r\n" +
					"From: <sip:" + user + "@127.0.0.1>;tag=f\r\nTo: <sip:" + user + "@127.0.0.1>\r\nCall-ID: conc-" + user + "\r\n" +
					"CSeq: %d REGISTER\r\nContact: <sip:" + user + "@127.0.0.1:PORT>\r\nExpires: 600\r\n"
				for r := range rounds {
					res := ph.send(t, fmt.Sprintf(head, 2*r, 2*r+1)+"Content-Length: 0\r\n\r\n", 5*time.Second)
					if res == nil || res.StatusCode != 401 {
						return fmt.Errorf("%s round %d: challenge %v", user, r, res)
					}
					v := res.GetHeader("WWW-Authenticate").Value()
					n := v[strings.Index(v, `nonce="`)+7:]
					a := &digestAnswer{user: user, secret: "secret-" + user + "-x", uri: "sip:127.0.0.1", nc: 1}
					res = ph.send(t, fmt.Sprintf(head, 2*r+1, 2*r+2)+a.header("pbx", n[:strings.IndexByte(n, '"')])+"Content-Length: 0\r\n\r\n", 5*time.Second)
					if res == nil || res.StatusCode != 200 {
						return fmt.Errorf("%s round %d: register %v", user, r, res)
					}
				}
				return nil
			}()
		}()
	}
	for range phones {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := len(p.loc.All()); got != phones {
		t.Errorf("%d bindings, want %d", got, phones)
	}
	if n := p.wire.served.Load(); n != 2*phones*rounds {
		t.Errorf("regwire served %d REGISTERs, want %d", n, 2*phones*rounds)
	}
}
