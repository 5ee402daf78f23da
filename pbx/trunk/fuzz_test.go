package trunk

import (
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// FuzzAuthorize feeds arbitrary challenges to Authorize: a malformed one
// is an error, never a panic, and an accepted one yields a header.
func FuzzAuthorize(f *testing.F) {
	for _, s := range []string{
		`Digest realm="r", nonce="n", algorithm=MD5`,
		`Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256`,
		`Digest realm="r", nonce="n", qop="auth-int"`,
		`Basic realm="x"`, `Digest`, `Digest realm=`, ``,
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, chal string, proxy bool) {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "1", Host: "h"})
		code, name, auth := 401, "WWW-Authenticate", "Authorization"
		if proxy {
			code, name, auth = 407, "Proxy-Authenticate", "Proxy-Authorization"
		}
		res := sip.NewResponseFromRequest(req, code, "x", nil)
		res.AppendHeader(sip.NewHeader(name, chal))
		if err := Authorize(req, res, "u", "p"); err == nil && req.GetHeader(auth) == nil {
			t.Fatalf("challenge %q accepted without a %s header", chal, auth)
		}
	})
}

// FuzzIdentify feeds arbitrary sources and numbers to Identify.
func FuzzIdentify(f *testing.F) {
	f.Add("127.0.0.1:5062", "201", "201")
	f.Add("[::1]:5060", "", "x")
	f.Add("garbage", "1", "2")
	m := &Manager{log: nil}
	for _, l := range []config.TrunkLine{
		{Name: "isdn", Type: config.LineISDN, Host: "127.0.0.1:5062"},
		{Name: "office", Host: "sip.example.test", Trusted: []string{"::1"}},
	} {
		t, err := m.newTrunk(l)
		if err != nil {
			f.Fatal(err)
		}
		m.trunks = append(m.trunks, t)
	}
	f.Fuzz(func(t *testing.T, src, ruser, to string) {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: ruser, Host: "pbx"})
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: to, Host: "pbx"}, Params: sip.NewParams()})
		req.SetSource(src)
		if tr, _, ok := m.Identify(req); ok && tr == nil {
			t.Fatal("identified without a trunk")
		}
	})
}
