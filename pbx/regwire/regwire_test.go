package regwire

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/nat"
)

// seeds are REGISTERs as phones send them (testdata/*.sip, with LF line
// ends turned into CRLF).
func seeds(t testing.TB) map[string]string {
	t.Helper()
	files, err := filepath.Glob("testdata/*.sip")
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed requests: %v", err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = strings.ReplaceAll(string(b), "\n", "\r\n")
	}
	return out
}

// TestParseSeeds: every seed is taken, with the values sipgo reads.
func TestParseSeeds(t *testing.T) {
	for name, msg := range seeds(t) {
		t.Run(name, func(t *testing.T) {
			var p Parser
			var r Request
			if !p.Parse(msg, &r) {
				t.Fatal("refused")
			}
			sameAsSipgo(t, msg, &r)
		})
	}
}

// TestParseRefuses: forms left to sipgo, and broken ones.
func TestParseRefuses(t *testing.T) {
	base := seeds(t)["sipp.sip"]
	tests := []struct {
		name     string
		old, new string
	}{
		{"not REGISTER", "REGISTER sip:", "OPTIONS sip:"},
		{"other SIP version", "SIP/2.0\r\nVia", "SIP/3.0\r\nVia"},
		{"folded header", "\r\nCall-ID:", "\r\n Call-ID:"},
		{"LF alone", "\r\nCall-ID:", "\nCall-ID:"},
		{"body", "Content-Length: 0\r\n\r\n", "Content-Length: 4\r\n\r\nbody"},
		{"two Vias", "\r\nFrom:", "\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nFrom:"},
		{"Via with two values", ";branch=", ", SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK2;branch="},
		{"Via over TCP", "SIP/2.0/UDP", "SIP/2.0/TCP"},
		{"Via received", ";branch=", ";received=10.9.9.9;branch="},
		{"Via RPORT", ";branch=", ";RPORT;branch="},
		{"quoted Via parameter", ";branch=", `;x="a b";branch=`},
		{"two From", "\r\nTo:", "\r\nFrom: <sip:1@x>;tag=2\r\nTo:"},
		{"two Contacts in one header", "\r\nMax-Forwards:", ", <sip:10000@10.0.0.8>\r\nMax-Forwards:"},
		{"CSeq of another method", "1 REGISTER", "1 INVITE"},
		{"CSeq too large", "1 REGISTER", "2147483648 REGISTER"},
		{"Expires not a number", "Expires: 3600", "Expires: soon"},
		{"Content-Type", "\r\nMax-Forwards:", "\r\nContent-Type: text/plain\r\nMax-Forwards:"},
		{"Route", "\r\nMax-Forwards:", "\r\nRoute: <sip:proxy;lr>\r\nMax-Forwards:"},
		{"refused header", "\r\nMax-Forwards:", "\r\nX-Twinpbx-Forwarded: x\r\nMax-Forwards:"},
		{"no Call-ID", "Call-ID:", "X-Call-ID:"},
		{"unreadable To", "To: <sip:10000@127.0.0.1:5060>", "To: <sip:10000@127.0.0.1:5060"},
		{"unreadable Request-URI", "REGISTER sip:127.0.0.1:5060 ", "REGISTER sip:[::1 "},
		{"header name with a space", "Call-ID:", "Call-ID :"},
		{"8-bit byte", "User-Agent: sipp", "User-Agent: s\xe9pp"},
		{"cut short", "Content-Length: 0\r\n\r\n", "Content-Length: 0\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(base, tt.old) {
				t.Fatalf("the seed has no %q", tt.old)
			}
			msg := strings.Replace(base, tt.old, tt.new, 1)
			p := Parser{Refuse: []string{"x-twinpbx-forwarded"}}
			var r Request
			if p.Parse(msg, &r) {
				t.Errorf("taken: %q", msg)
			}
		})
	}
}

// TestResponse: the answer written here and the one sipgo builds (with
// nat.Symmetric) say the same, for each seed and several sources.
func TestResponse(t *testing.T) {
	extra := []Header{{"WWW-Authenticate", `Digest realm="pbx", nonce="abc", algorithm=MD5, qop="auth"`}, {"Date", "Mon, 02 Jan 2006 15:04:05 GMT"}}
	for name, msg := range seeds(t) {
		for _, src := range []string{"127.0.0.1:25590", "203.0.113.7:40211", "[2001:db8::7]:5062"} {
			t.Run(name+"/"+src, func(t *testing.T) {
				var p Parser
				var r Request
				if !p.Parse(msg, &r) {
					t.Fatal("refused")
				}
				sameResponse(t, msg, &r, src, extra)
			})
		}
	}
}

// FuzzParse: whatever Parse takes, sipgo parses to the same values, and
// the answer written here says what sipgo's says. A Request used before
// (as the pool hands them out) reads msg as a fresh one does, and what
// msg left in it does not leak into the next request read.
func FuzzParse(f *testing.F) {
	all := seeds(f)
	for _, msg := range all {
		f.Add(msg)
	}
	warm := all["deskphone.sip"]
	f.Fuzz(func(t *testing.T, msg string) {
		var p Parser
		var r Request
		ok := p.Parse(msg, &r)
		var used Request
		if !p.Parse(warm, &used) {
			t.Fatal("the deskphone seed refused")
		}
		if p.Parse(msg, &used) != ok {
			t.Fatalf("taken by a fresh Request: %v, by a used one: %v\n%q", ok, !ok, msg)
		}
		if ok {
			sameAsSipgo(t, msg, &r)
			sameAsSipgo(t, msg, &used)
			sameResponse(t, msg, &r, "203.0.113.7:40211", []Header{{"Date", "x"}})
		}
		if !p.Parse(warm, &used) {
			t.Fatal("the deskphone seed refused after msg")
		}
		sameAsSipgo(t, warm, &used)
	})
}

func sipgoRequest(t *testing.T, msg string) *sip.Request {
	t.Helper()
	m, err := sip.NewParser().ParseSIP([]byte(msg))
	if err != nil {
		t.Fatalf("taken here, refused by sipgo: %v\n%q", err, msg)
	}
	req, ok := m.(*sip.Request)
	if !ok || req.Method != sip.REGISTER {
		t.Fatalf("taken here, sipgo reads %T %v", m, m)
	}
	return req
}

func sameAsSipgo(t *testing.T, msg string, r *Request) {
	t.Helper()
	req := sipgoRequest(t, msg)
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %q here, %q by sipgo\n%q", what, got, want, msg)
		}
	}
	check("Request-URI", r.Recipient.String(), req.Recipient.String())
	vias := req.GetHeaders("Via")
	if len(vias) != 1 {
		t.Fatalf("sipgo reads %d Vias", len(vias))
	}
	via := req.Via()
	check("Via host", r.ViaHost, via.Host)
	branch, _ := via.Params.Get("branch")
	check("branch", r.Branch, branch)
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil {
		t.Fatalf("sipgo misses a mandatory header\n%q", msg)
	}
	check("To user", r.ToUser, req.To().Address.User)
	if r.ToTagged != req.To().Params.Has("tag") {
		t.Errorf("To tagged %v here, %v by sipgo", r.ToTagged, req.To().Params.Has("tag"))
	}
	check("Call-ID", r.CallID, req.CallID().Value())
	if r.Seq != req.CSeq().SeqNo || req.CSeq().MethodName != sip.REGISTER {
		t.Errorf("CSeq %d here, %v by sipgo", r.Seq, req.CSeq())
	}
	var contacts []string
	for _, h := range req.GetHeaders("Contact") {
		ch := h.(*sip.ContactHeader)
		if ch.Address.Wildcard {
			contacts = append(contacts, "*")
			continue
		}
		contacts = append(contacts, ch.Address.String()+";"+ch.Params.String())
	}
	var ours []string
	for _, ch := range r.Contacts {
		if ch.Address.Wildcard {
			ours = append(ours, "*")
			continue
		}
		ours = append(ours, ch.Address.String()+";"+ch.Params.String())
	}

	if !slices.Equal(ours, contacts) {
		t.Errorf("Contacts %q here, %q by sipgo", ours, contacts)
	}
	if h := req.GetHeader("Expires"); (h != nil) != r.HasExpires || (h != nil && h.Value() != r.Expires) {
		t.Errorf("Expires %q (%v) here, %v by sipgo", r.Expires, r.HasExpires, h)
	}
	var auths []string
	for _, h := range req.GetHeaders("Authorization") {
		auths = append(auths, h.Value())
	}
	if !slices.Equal(auths, r.Authorization) && !(len(auths) == 0 && len(r.Authorization) == 0) {
		t.Errorf("Authorization %q here, %q by sipgo", r.Authorization, auths)
	}
	if h := req.GetHeader("User-Agent"); (h != nil) != r.HasUserAgent || (h != nil && h.Value() != r.UserAgent) {
		t.Errorf("User-Agent %q (%v) here, %v by sipgo", r.UserAgent, r.HasUserAgent, h)
	}
}

// sameResponse compares the answer written here with sipgo's, both read
// back by sipgo.
func sameResponse(t *testing.T, msg string, r *Request, src string, extra []Header) {
	t.Helper()
	req := sipgoRequest(t, msg)
	req.SetSource(src)
	want := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
	nat.Symmetric(req, want)
	for _, h := range extra {
		want.AppendHeader(sip.NewHeader(h.Name, h.Value))
	}
	wire := AppendResponse(nil, r, src, 401, "Unauthorized", []byte("t4g"), extra)
	m, err := sip.NewParser().ParseSIP(wire)
	if err != nil {
		t.Fatalf("sipgo cannot read the answer: %v\n%s", err, wire)
	}
	got, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("the answer is a %T", m)
	}
	check := func(what, g, w string) {
		t.Helper()
		if g != w {
			t.Errorf("%s: %q here, %q by sipgo\nrequest %q\nanswer %q", what, g, w, msg, wire)
		}
	}
	check("status", got.StartLine(), want.StartLine())
	gv, wv := got.Via(), want.Via()
	check("Via sent-by", gv.Transport+" "+gv.SentBy(), wv.Transport+" "+wv.SentBy())
	for _, p := range []string{"branch", "rport", "received"} {
		g, gok := gv.Params.Get(p)
		w, wok := wv.Params.Get(p)
		if gok != wok || g != w {
			t.Errorf("Via %s: %q (%v) here, %q (%v) by sipgo\nanswer %q", p, g, gok, w, wok, wire)
		}
	}
	if gv.Params.Length() != wv.Params.Length() {
		t.Errorf("Via parameters %q here, %q by sipgo", gv.Params.String(), wv.Params.String())
	}
	check("From", got.From().Value(), want.From().Value())
	gt, wt := got.To(), want.To()
	check("To address", gt.Address.String(), wt.Address.String())
	if tag, _ := gt.Params.Get("tag"); !gt.Params.Has("tag") || (r.ToTagged && tag != func() string { s, _ := wt.Params.Get("tag"); return s }()) {
		t.Errorf("To tag %q, request's To %q", tag, r.To)
	}
	check("Call-ID", got.CallID().Value(), want.CallID().Value())
	check("CSeq", got.CSeq().Value(), want.CSeq().Value())
	for _, h := range extra {
		g := got.GetHeader(h.Name)
		if g == nil || g.Value() != h.Value {
			t.Errorf("%s: %v here, want %q", h.Name, g, h.Value)
		}
	}
	if cl := got.ContentLength(); cl == nil || *cl != 0 || len(got.Body()) != 0 {
		t.Errorf("Content-Length %v, body %q", cl, got.Body())
	}
}

// printable8 answers as a byte-by-byte check does: every byte value at
// every place among printable neighbours, and random words.
func TestPrintable8(t *testing.T) {
	byByte := func(w string) bool {
		for i := range len(w) {
			if w[i] < 0x20 || w[i] > 0x7e {
				return false
			}
		}
		return true
	}
	check := func(w string) {
		if got, want := printable8(le64(w)), byByte(w); got != want {
			t.Fatalf("printable8(%q) = %v, want %v", w, got, want)
		}
	}
	for _, fill := range []byte{' ', 'a', '~', 0x1f, 0x7f, 0x80, 0xff, 0x00} {
		for c := range 256 {
			for at := range 8 {
				w := bytes.Repeat([]byte{fill}, 8)
				w[at] = byte(c)
				check(string(w))
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		var w [8]byte
		for i := range w {
			w[i] = byte(rng.IntN(256))
			if rng.IntN(4) > 0 {
				w[i] = byte(0x1e + rng.IntN(0x63)) // mostly near the edges
			}
		}
		check(string(w[:]))
	}
}

// FuzzPlainAddress: whatever plainAddress takes, sipgo's parser reads to
// the same URI and header parameters; what it refuses it leaves alone.
func FuzzPlainAddress(f *testing.F) {
	for _, s := range []string{
		"<sip:10001@127.0.0.1:5999>", "<sip:100@192.0.2.5:5062>;tag=1-2", "<sips:desk@pbx.example>",
		"<sip:pbx.example>;expires=600;q=0.5", "<sip:100@h>;+sip.ice", "<sip:+4930123@h:5060>;tag=a;tag=b",
		"<sip:100@h:05060>", "<sip:100@h:99999>", "<sip:100@h>;tag=", "<sip:100@h>x", "<SIP:100@h>",
		"<sip:100:pw@h>", "<sip:100@[2001:db8::1]:5060>", "<sip:100@h;transport=udp>", `"A" <sip:100@h>`,
		"<sip:@h>", "<sip:100@>", "<sip:100@h:>", "<sip:a@b@c>", "<sip:100@h>;a=b=c", "<sip://100@h>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		sentinel := sip.Uri{Scheme: "x", User: "sentinel"}
		u, ps := sentinel, sip.HeaderParams{{K: " ", V: "v"}}
		if !plainAddress(v, &u, &ps) {
			if !reflect.DeepEqual(u, sentinel) || len(ps) != 1 || ps[0] != (sip.HeaderKV{K: " ", V: "v"}) {
				t.Fatalf("refused %q but changed it to %+v %v", v, u, ps)
			}
			return
		}
		ps = ps[1:] // what plainAddress added after the sentinel
		var su sip.Uri
		var sps sip.HeaderParams
		if _, err := sip.ParseAddressValue(v, &su, &sps); err != nil {
			t.Fatalf("taken here, refused by sipgo: %v\n%q", err, v)
		}
		if !reflect.DeepEqual(u, su) {
			t.Errorf("URI %+v here, %+v by sipgo\n%q", u, su, v)
		}
		if !slices.Equal(ps, sps) {
			t.Errorf("params %v here, %v by sipgo\n%q", ps, sps, v)
		}
	})
}
