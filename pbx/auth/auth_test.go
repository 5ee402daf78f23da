package auth

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// fakeTx records the responses sent through it.
type fakeTx struct {
	mu    sync.Mutex
	resps []*sip.Response
	done  chan struct{}
}

func newFakeTx() *fakeTx { return &fakeTx{done: make(chan struct{})} }

func (t *fakeTx) Respond(res *sip.Response) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resps = append(t.resps, res)
	return nil
}
func (t *fakeTx) Terminate()                         {}
func (t *fakeTx) OnTerminate(sip.FnTxTerminate) bool { return true }
func (t *fakeTx) Done() <-chan struct{}              { return t.done }
func (t *fakeTx) Err() error                         { return nil }
func (t *fakeTx) Acks() <-chan *sip.Request          { return nil }
func (t *fakeTx) OnCancel(sip.FnTxCancel) bool       { return true }

func (t *fakeTx) last(tb testing.TB) *sip.Response {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.resps) != 1 {
		tb.Fatalf("got %d responses, want 1", len(t.resps))
	}
	return t.resps[0]
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const realm = "branch.example"

var secrets = map[string]string{"100": "s3cret", "101": "other"}

func newDigest(t testing.TB, c *clock, log *bytes.Buffer) *Digest {
	t.Helper()
	if log == nil {
		log = &bytes.Buffer{}
	}
	d, err := New(Options{
		Realm:         realm,
		Key:           []byte("0123456789abcdef0123456789abcdef"),
		NonceLifetime: time.Minute,
		Secrets: func(u string) (string, bool) {
			s, ok := secrets[u]
			return s, ok
		},
		Logger:     slog.New(slog.NewTextHandler(log, nil)),
		Now:        c.Now,
		Algorithms: []string{"SHA-256", "MD5"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func register(t testing.TB, src string, hdrs ...string) *sip.Request {
	t.Helper()
	raw := "REGISTER sip:branch.example SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK776asdhds\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:100@branch.example>\r\n" +
		"From: <sip:100@branch.example>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710\r\n" +
		"CSeq: 1 REGISTER\r\n" +
		"Contact: <sip:100@10.0.0.5:5060>\r\n"
	for _, h := range hdrs {
		raw += h + "\r\n"
	}
	raw += "Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parsing test request: %v", err)
	}
	req := m.(*sip.Request)
	req.SetSource(src)
	return req
}

// challenges asks d for a challenge and returns the offered ones in order.
func challenges(t testing.TB, d *Digest, proxy bool) []*digest.Challenge {
	t.Helper()
	tx := newFakeTx()
	if _, ok := d.Authenticate(register(t, "192.0.2.1:5060"), tx, proxy); ok {
		t.Fatal("request without credentials was accepted")
	}
	res := tx.last(t)
	name, code := "WWW-Authenticate", 401
	if proxy {
		name, code = "Proxy-Authenticate", 407
	}
	if res.StatusCode != code {
		t.Fatalf("status %d, want %d", res.StatusCode, code)
	}
	var out []*digest.Challenge
	for _, h := range res.GetHeaders(name) {
		c, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatalf("parsing challenge %q: %v", h.Value(), err)
		}
		out = append(out, c)
	}
	return out
}

func TestChallengeOffersSHA256ThenMD5(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	d := newDigest(t, c, nil)
	for _, proxy := range []bool{false, true} {
		chs := challenges(t, d, proxy)
		if len(chs) != 2 || chs[0].Algorithm != "SHA-256" || chs[1].Algorithm != "MD5" {
			t.Fatalf("proxy=%v: challenges %+v, want SHA-256 then MD5", proxy, chs)
		}
		for _, ch := range chs {
			if ch.Realm != realm || !ch.SupportsQOP("auth") || ch.Stale || ch.Nonce != chs[0].Nonce {
				t.Errorf("proxy=%v: bad challenge %+v", proxy, ch)
			}
		}
	}
}

func TestDefaultChallengeIsMD5Only(t *testing.T) {
	d, err := New(Options{Realm: realm, Key: make([]byte, 16), Secrets: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	chs := challenges(t, d, false)
	if len(chs) != 1 || chs[0].Algorithm != "MD5" {
		t.Fatalf("default challenges %+v, want MD5 alone", chs)
	}
}

func TestAuthenticate(t *testing.T) {
	type tc struct {
		name    string
		algo    int  // 0: SHA-256, 1: MD5 (index into the offered challenges)
		noQOP   bool // answer like an RFC 2069 phone
		proxy   bool
		user    string
		pass    string
		mutate  func(*digest.Credentials)
		reqURI  string        // digest uri (default: the Request-URI)
		advance time.Duration // clock moves before the answer
		want    int           // 0: accepted
		stale   bool
		warn    bool // a WARN line is logged
	}
	cases := []tc{
		{name: "sha256", algo: 0},
		{name: "md5", algo: 1},
		{name: "sha256 no qop", algo: 0, noQOP: true},
		{name: "md5 no qop", algo: 1, noQOP: true},
		{name: "proxy md5", algo: 1, proxy: true},
		{name: "proxy sha256 wrong password", algo: 0, proxy: true, pass: "nope", want: 407, warn: true},
		{name: "wrong password sha256", algo: 0, pass: "nope", want: 401, warn: true},
		{name: "wrong password md5 no qop", algo: 1, noQOP: true, pass: "nope", want: 401, warn: true},
		{name: "unknown user", algo: 0, user: "999", pass: "x", want: 401, warn: true},
		{name: "stale nonce", algo: 0, advance: 2 * time.Minute, want: 401, stale: true},
		{name: "stale nonce md5", algo: 1, advance: 2 * time.Minute, want: 401, stale: true},
		{name: "stale nonce wrong password is a failure", algo: 0, pass: "nope", advance: 2 * time.Minute, want: 401, warn: true},
		{name: "wrong realm", algo: 0, mutate: func(c *digest.Credentials) { c.Realm = "elsewhere" }, want: 401},
		{name: "wrong uri", algo: 0, reqURI: "sip:other.example", want: 400},
		{name: "uri with user differs", algo: 1, reqURI: "sip:100@branch.example", want: 400},
		{name: "uri with default port matches", algo: 0, reqURI: "sip:branch.example:5060"},
		{name: "uri with params matches", algo: 0, reqURI: "sip:branch.example;transport=udp"},
		{name: "forged nonce", algo: 0, mutate: func(c *digest.Credentials) { c.Nonce = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, want: 401},
		{name: "foreign nonce", algo: 0, mutate: func(c *digest.Credentials) { c.Nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093" }, want: 401},
		{name: "unoffered algorithm", algo: 0, mutate: func(c *digest.Credentials) { c.Algorithm = "SHA-512" }, want: 401},
		{name: "auth-int", algo: 0, mutate: func(c *digest.Credentials) { c.QOP = "auth-int" }, want: 401},
		{name: "qop without cnonce", algo: 0, mutate: func(c *digest.Credentials) { c.Cnonce = "" }, want: 400},
		{name: "missing response", algo: 0, mutate: func(c *digest.Credentials) { c.Response = "" }, want: 400},
		{name: "uppercase hex response", algo: 1, mutate: func(c *digest.Credentials) { c.Response = strings.ToUpper(c.Response) }},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			var log bytes.Buffer
			d := newDigest(t, c, &log)
			chs := challenges(t, d, tt.proxy)
			ch := *chs[tt.algo]
			if tt.noQOP {
				ch.QOP = nil
			}
			user, pass := "100", "s3cret"
			if tt.user != "" {
				user = tt.user
			}
			if tt.pass != "" {
				pass = tt.pass
			}
			uri := "sip:branch.example"
			if tt.reqURI != "" {
				uri = tt.reqURI
			}
			cred, err := digest.Digest(&ch, digest.Options{Method: "REGISTER", URI: uri, Username: user, Password: pass, Count: 1})
			if err != nil {
				t.Fatal(err)
			}
			if tt.mutate != nil {
				tt.mutate(cred)
			}
			c.Add(tt.advance)
			name := "Authorization"
			if tt.proxy {
				name = "Proxy-Authorization"
			}
			tx := newFakeTx()
			got, ok := d.Authenticate(register(t, "192.0.2.1:5060", name+": "+cred.String()), tx, tt.proxy)
			if tt.want == 0 {
				if !ok || got != user {
					t.Fatalf("Authenticate = %q, %v; want %q, true (responses: %v)", got, ok, user, tx.resps)
				}
				if len(tx.resps) != 0 {
					t.Fatalf("accepted request was answered: %v", tx.resps)
				}
				return
			}
			if ok {
				t.Fatalf("Authenticate accepted %q, want status %d", got, tt.want)
			}
			res := tx.last(t)
			if res.StatusCode != tt.want {
				t.Fatalf("status %d %s, want %d", res.StatusCode, res.Reason, tt.want)
			}
			if tt.want == 401 || tt.want == 407 {
				hn := "WWW-Authenticate"
				if tt.proxy {
					hn = "Proxy-Authenticate"
				}
				hs := res.GetHeaders(hn)
				if len(hs) != 2 {
					t.Fatalf("%d %s headers, want 2", len(hs), hn)
				}
				nc, err := digest.ParseChallenge(hs[0].Value())
				if err != nil {
					t.Fatal(err)
				}
				if nc.Stale != tt.stale {
					t.Errorf("stale=%v, want %v", nc.Stale, tt.stale)
				}
				if nc.Nonce == ch.Nonce {
					t.Error("the new challenge repeats the old nonce")
				}
			}
			if logged := strings.Contains(log.String(), "level=WARN"); logged != tt.warn {
				t.Errorf("WARN logged=%v, want %v; log:\n%s", logged, tt.warn, log.String())
			}
		})
	}
}

// answer authenticates once against a fresh challenge and returns the
// header, so tests can resend or count up from it.
func answer(t *testing.T, d *Digest, ch *digest.Challenge, nc int, pass string) string {
	t.Helper()
	cred, err := digest.Digest(ch, digest.Options{Method: "REGISTER", URI: "sip:branch.example", Username: "100", Password: pass, Count: nc, Cnonce: "c0ffee"})
	if err != nil {
		t.Fatal(err)
	}
	return "Authorization: " + cred.String()
}

func TestNonceCountReplay(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	d := newDigest(t, c, nil)
	ch := challenges(t, d, false)[0]
	steps := []struct {
		nc        int
		ok, stale bool
	}{
		{nc: 1, ok: true},
		{nc: 1, stale: true}, // replay
		{nc: 3, ok: true},
		{nc: 2, ok: true},    // late but unused, inside the window
		{nc: 2, stale: true}, // replay of the late one
		{nc: 3, stale: true},
		{nc: 100, ok: true},
		{nc: 4, stale: true}, // fell out of the window
	}
	for i, s := range steps {
		tx := newFakeTx()
		_, ok := d.Authenticate(register(t, "192.0.2.1:5060", answer(t, d, ch, s.nc, "s3cret")), tx, false)
		if ok != s.ok {
			t.Fatalf("step %d nc=%d: ok=%v, want %v", i, s.nc, ok, s.ok)
		}
		if !ok {
			ch2, err := digest.ParseChallenge(tx.last(t).GetHeader("WWW-Authenticate").Value())
			if err != nil {
				t.Fatal(err)
			}
			if ch2.Stale != s.stale {
				t.Fatalf("step %d: stale=%v, want %v", i, ch2.Stale, s.stale)
			}
		}
	}
}

func TestNoQOPNonceUsedOnce(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	d := newDigest(t, c, nil)
	ch := challenges(t, d, false)[1]
	ch.QOP = nil
	h := answer(t, d, ch, 0, "s3cret")
	if _, ok := d.Authenticate(register(t, "192.0.2.1:5060", h), newFakeTx(), false); !ok {
		t.Fatal("first use rejected")
	}
	tx := newFakeTx()
	if _, ok := d.Authenticate(register(t, "192.0.2.1:5060", h), tx, false); ok {
		t.Fatal("replayed answer without qop accepted")
	}
	if ch2, _ := digest.ParseChallenge(tx.last(t).GetHeader("WWW-Authenticate").Value()); ch2 == nil || !ch2.Stale {
		t.Fatal("replay not answered with stale=true")
	}
}

func TestNonceSurvivesRestart(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	ch := challenges(t, newDigest(t, c, nil), false)[0]
	// A new instance with the same key (restart, or the twin) accepts it.
	d2 := newDigest(t, c, nil)
	if _, ok := d2.Authenticate(register(t, "192.0.2.1:5060", answer(t, d2, ch, 1, "s3cret")), newFakeTx(), false); !ok {
		t.Fatal("nonce of the previous instance rejected")
	}
}

func TestBruteForceBrake(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var log bytes.Buffer
	d := newDigest(t, c, &log)
	try := func(src, pass string) int {
		ch := challenges(t, d, false)[0]
		tx := newFakeTx()
		if _, ok := d.Authenticate(register(t, src, answer(t, d, ch, 1, pass)), tx, false); ok {
			return 200
		}
		return tx.last(t).StatusCode
	}
	for i := range 9 {
		if got := try("198.51.100.7:5060", "guess"); got != 401 {
			t.Fatalf("failure %d: status %d, want 401", i+1, got)
		}
	}
	if got := try("198.51.100.7:5060", "guess"); got != 401 {
		t.Fatalf("10th failure: status %d, want 401", got)
	}
	// Now refused, even with the right password, from any port of that host.
	if got := try("198.51.100.7:5999", "s3cret"); got != 403 {
		t.Fatalf("blocked source: status %d, want 403", got)
	}
	// Other sources are unaffected.
	if got := try("192.0.2.1:5060", "s3cret"); got != 200 {
		t.Fatalf("other source: status %d, want 200", got)
	}
	c.Add(6 * time.Minute)
	if got := try("198.51.100.7:5060", "s3cret"); got != 200 {
		t.Fatalf("after the block: status %d, want 200", got)
	}
	// Failures are logged, rate-limited: at most 10 lines a minute. The
	// first minute logged its 10; in this one 100 more failures follow.
	for range 50 {
		try("198.51.100.8:5060", "guess")
		try("198.51.100.9:5060", "guess")
	}
	if n := strings.Count(log.String(), `msg="digest authentication failed"`); n != 20 {
		t.Errorf("%d failure lines, want 10+10 (rate limit)", n)
	}
	if !strings.Contains(log.String(), `msg="too many failed authentications`) {
		t.Error("blocking a source was not logged")
	}
}

func TestFailuresOutsideWindowDoNotBlock(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	d := newDigest(t, c, nil)
	for i := range 30 {
		ch := challenges(t, d, false)[0]
		tx := newFakeTx()
		d.Authenticate(register(t, "198.51.100.7:5060", answer(t, d, ch, 1, "guess")), tx, false)
		if got := tx.last(t).StatusCode; got != 401 {
			t.Fatalf("failure %d: status %d, want 401", i, got)
		}
		c.Add(10 * time.Second) // 6 a minute, below the limit of 10
	}
}

func TestResponseGoesToPacketSource(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	d := newDigest(t, c, nil)
	tx := newFakeTx()
	d.Authenticate(register(t, "203.0.113.9:40211"), tx, false)
	res := tx.last(t)
	if res.Destination() != "203.0.113.9:40211" {
		t.Errorf("destination %q, want the packet source", res.Destination())
	}
	via := res.Via()
	if r, _ := via.Params.Get("received"); r != "203.0.113.9" {
		t.Errorf("received=%q", r)
	}
	if r, _ := via.Params.Get("rport"); r != "40211" {
		t.Errorf("rport=%q", r)
	}
}

func TestNewValidates(t *testing.T) {
	ok := func(string) (string, bool) { return "", false }
	cases := []struct {
		name string
		o    Options
		err  bool
	}{
		{"no realm", Options{Secrets: ok, Key: make([]byte, 32)}, true},
		{"no secrets", Options{Realm: "r", Key: make([]byte, 32)}, true},
		{"short key", Options{Realm: "r", Secrets: ok, Key: []byte("short")}, true},
		{"random key", Options{Realm: "r", Secrets: ok, Logger: slog.New(slog.DiscardHandler)}, false},
		{"fine", Options{Realm: "r", Secrets: ok, Key: make([]byte, 16)}, false},
		{"sha-256 only", Options{Realm: "r", Secrets: ok, Key: make([]byte, 16), Algorithms: []string{"sha-256"}}, false},
		{"unknown algorithm", Options{Realm: "r", Secrets: ok, Key: make([]byte, 16), Algorithms: []string{"SHA-512"}}, true},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.o)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
		})
	}
}

func TestNCTableEvictionStaysSafe(t *testing.T) {
	tab := newNCTable(2)
	t0 := time.Unix(1000, 0)
	if !tab.use(1, t0, 1) || !tab.use(2, t0.Add(time.Second), 1) || !tab.use(3, t0.Add(2*time.Second), 1) {
		t.Fatal("fresh nonces rejected")
	}
	// Nonce 1 was dropped: using it again must not look fresh.
	if tab.use(1, t0, 1) {
		t.Fatal("dropped nonce accepted again")
	}
	if !tab.use(4, t0.Add(3*time.Second), 1) {
		t.Fatal("newer nonce rejected")
	}
}

func FuzzAuthorizationHeader(f *testing.F) {
	for _, s := range []string{
		`Digest username="100", realm="branch.example", nonce="x", uri="sip:branch.example", response="00", qop=auth, nc=00000001, cnonce="a"`,
		`Digest username="100", realm="branch.example", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uri="sip:branch.example", response="00"`,
		`Digest username=100,realm=branch.example,nc=-1,qop=auth,cnonce=,uri=<>`,
		`Digest realm="branch.example", nc=ffffffff, qop="auth", algorithm=sha-256`,
		`Digest "`,
		`Basic abc`,
		`Digest `,
		`Digest username="a\"b", realm="branch.example", uri="sip:[::1]:99999"`,
	} {
		f.Add(s)
	}
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	d := newDigest(f, c, nil)
	f.Fuzz(func(t *testing.T, h string) {
		if strings.ContainsAny(h, "\r\n") {
			return
		}
		req := register(t, "192.0.2.1:5060")
		req.AppendHeader(sip.NewHeader("Authorization", h))
		tx := newFakeTx()
		user, ok := d.Authenticate(req, tx, false)
		if ok {
			t.Fatalf("fuzzed header %q authenticated %q", h, user)
		}
		if res := tx.last(t); res.StatusCode < 400 {
			t.Fatalf("status %d", res.StatusCode)
		}
	})
}

func BenchmarkAuthenticate(b *testing.B) {
	for _, algo := range []int{0, 1} {
		name := []string{"SHA-256", "MD5"}[algo]
		b.Run(name, func(b *testing.B) {
			c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			d := newDigest(b, c, nil)
			ch := challenges(b, d, false)[algo]
			reqs := make([]*sip.Request, b.N)
			for i := range reqs {
				cred, err := digest.Digest(ch, digest.Options{Method: "REGISTER", URI: "sip:branch.example", Username: "100", Password: "s3cret", Count: i + 1, Cnonce: "c0ffee"})
				if err != nil {
					b.Fatal(err)
				}
				reqs[i] = register(b, "192.0.2.1:5060", "Authorization: "+cred.String())
			}
			b.ResetTimer()
			for i := range b.N {
				if _, ok := d.Authenticate(reqs[i], newFakeTx(), false); !ok {
					b.Fatal("rejected")
				}
			}
		})
	}
}
