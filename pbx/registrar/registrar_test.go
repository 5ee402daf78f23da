package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/auth"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// memStore is a location.Persister in memory that can be made to fail.
type memStore struct {
	mu       sync.Mutex
	m        map[string]location.Binding
	failSave bool
	// failIn > 0: that many saves pass, the next one fails, then all pass.
	failIn int
}

func newMemStore() *memStore { return &memStore{m: map[string]location.Binding{}} }

var errDisk = errors.New("disk on fire")

func (s *memStore) SaveBinding(b location.Binding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failSave {
		return errDisk
	}
	if s.failIn > 0 {
		s.failIn--
		if s.failIn == 0 {
			return errDisk
		}
	}
	s.m[b.AOR+"\x00"+b.Contact] = b
	return nil
}

func (s *memStore) DeleteBinding(aor, contact string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, aor+"\x00"+contact)
	return nil
}

func (s *memStore) LoadBindings() ([]location.Binding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []location.Binding
	for _, b := range s.m {
		out = append(out, b)
	}
	return out, nil
}

func (s *memStore) setFail(v bool) {
	s.mu.Lock()
	s.failSave = v
	s.mu.Unlock()
}

// failAfter lets n saves pass, fails the next one, then lets all pass
// (so that a rollback can be saved).
func (s *memStore) failAfter(n int) {
	s.mu.Lock()
	s.failIn = n + 1
	s.mu.Unlock()
}

func (s *memStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func TestMain(m *testing.M) {
	// sipgo's client side warns about its own connection reference
	// counts when user agents close; keep the test output readable.
	sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

type directory map[string]config.Extension

func (d directory) Extension(n string) (config.Extension, bool) {
	e, ok := d[n]
	return e, ok
}

var testDir = directory{
	"100": {Number: "100", Secret: "s3cret"},
	"101": {Number: "101", Secret: "other"},
	"102": {Number: "102", Secret: "two", MaxContacts: 2},
}

// clock is a settable clock shared by the location service and the
// registrar, starting at the real time.
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

type env struct {
	clock   *clock
	store   *memStore
	loc     *location.Service
	reg     *Registrar
	addr    string // UDP address of the registrar
	tcpAddr string // its TCP address
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWithStore(t, newMemStore())
}

// newEnvWithStore challenges SHA-256 first, then MD5, so the sipgo phones
// of these tests answer in SHA-256.
func newEnvWithStore(t *testing.T, store *memStore) *env {
	t.Helper()
	return newEnvAlgos(t, store, []string{"SHA-256", "MD5"})
}

func newEnvAlgos(t *testing.T, store *memStore, algos []string) *env {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	clk := &clock{t: time.Now()}
	loc, err := location.New(store, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Options{
		Realm: "branch.example",
		Key:   []byte("0123456789abcdef0123456789abcdef"),
		Secrets: func(u string) (string, bool) {
			e, ok := testDir[u]
			return e.Secret, ok
		},
		Logger:     log,
		Algorithms: algos,
	})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := New(Options{
		Location: loc, Auth: a, Directory: testDir,
		MinExpires: 60 * time.Second, MaxExpires: time.Hour, DefaultExpires: 30 * time.Minute,
		Logger: log, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("twinpbx-test"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	srv.OnRegister(reg.ServeRegister)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = conn.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = srv.ServeUDP(conn)
	}()
	go func() {
		defer wg.Done()
		_ = srv.ServeTCP(ln)
	}()
	t.Cleanup(func() {
		_ = ua.Close()
		_ = conn.Close()
		_ = ln.Close()
		wg.Wait()
	})
	return &env{clock: clk, store: store, loc: loc, reg: reg, addr: conn.LocalAddr().String(), tcpAddr: ln.Addr().String()}
}

// phone is a sipgo client acting as a SIP phone of one extension.
type phone struct {
	t      *testing.T
	client *sipgo.Client
	server sip.Uri
	user   string
	pass   string
	callID string
	cseq   uint32
	last   *sip.Request // the last REGISTER sent
}

func newPhone(t *testing.T, e *env, user, pass string, opts ...sipgo.ClientOption) *phone {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(user))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ua.Close() })
	opts = append([]sipgo.ClientOption{sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(slog.New(slog.DiscardHandler))}, opts...)
	c, err := sipgo.NewClient(ua, opts...)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.addr)
	p, _ := strconv.Atoi(port)
	return &phone{
		t: t, client: c, server: sip.Uri{Scheme: "sip", Host: host, Port: p},
		user: user, pass: pass, callID: fmt.Sprintf("%s-%d@test", user, time.Now().UnixNano()), cseq: 1,
	}
}

// register sends a REGISTER for the phone's own extension (or to, if not
// empty) and answers a challenge; it returns the final response.
func (p *phone) register(to string, contacts []string, hdrs ...string) *sip.Response {
	p.t.Helper()
	if to == "" {
		to = p.user
	}
	req := sip.NewRequest(sip.REGISTER, p.server)
	req.AppendHeader(sip.NewHeader("To", "<sip:"+to+"@branch.example>"))
	req.AppendHeader(sip.NewHeader("From", "<sip:"+to+"@branch.example>;tag=f"+p.user))
	cid := sip.CallIDHeader(p.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: p.cseq, MethodName: sip.REGISTER})
	for _, c := range contacts {
		req.AppendHeader(sip.NewHeader("Contact", c))
	}
	for _, h := range hdrs {
		k, v, _ := strings.Cut(h, ":")
		req.AppendHeader(sip.NewHeader(k, strings.TrimSpace(v)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err != nil {
		p.t.Fatalf("REGISTER: %v", err)
	}
	if res.StatusCode == sip.StatusUnauthorized {
		res, err = p.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.user, Password: p.pass})
		if err != nil {
			p.t.Fatalf("REGISTER with credentials: %v", err)
		}
	}
	p.cseq = req.CSeq().SeqNo + 1
	p.last = req
	return res
}

// contactsOf returns the Contact values of a 200 OK by URI, with expires.
func contactsOf(t *testing.T, res *sip.Response) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, h := range res.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			t.Fatalf("Contact %q not parsed", h.Value())
		}
		v, _ := ch.Params.Get("expires")
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("Contact %q without expires", h.Value())
		}
		out[ch.Address.String()] = n
	}
	return out
}

func wantStatus(t *testing.T, res *sip.Response, code int) {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("status %d %s, want %d", res.StatusCode, res.Reason, code)
	}
}

func near(got, want int) bool { return got <= want && got >= want-5 }

func TestRegisterRefreshAndQuery(t *testing.T) {
	e := newEnv(t)
	p := newPhone(t, e, "100", "s3cret")

	res := p.register("", []string{"<sip:100@10.0.0.5:5062>"}, "Expires: 600", "User-Agent: DeskPhone 1.0")
	wantStatus(t, res, 200)
	if got := contactsOf(t, res); len(got) != 1 || !near(got["sip:100@10.0.0.5:5062"], 600) {
		t.Fatalf("contacts %v", got)
	}
	if res.GetHeader("Date") == nil {
		t.Error("200 OK without Date")
	} else if _, err := time.Parse(dateFormat, res.GetHeader("Date").Value()); err != nil {
		t.Errorf("Date %q: %v", res.GetHeader("Date").Value(), err)
	}
	bs := e.loc.Lookup("100")
	if len(bs) != 1 || bs[0].UserAgent != "DeskPhone 1.0" || !strings.HasPrefix(bs[0].Source, "udp:127.0.0.1:") || bs[0].CallID != p.callID {
		t.Fatalf("bindings %+v", bs)
	}
	if e.store.len() != 1 {
		t.Fatalf("%d persisted bindings, want 1", e.store.len())
	}
	first := bs[0]

	// Refresh: same Call-ID, higher CSeq, contact expires param wins
	// over the header.
	res = p.register("", []string{"<sip:100@10.0.0.5:5062>;expires=1200"}, "Expires: 600")
	wantStatus(t, res, 200)
	if got := contactsOf(t, res); !near(got["sip:100@10.0.0.5:5062"], 1200) {
		t.Fatalf("after refresh: %v", got)
	}
	if b := e.loc.Lookup("100")[0]; b.CSeq <= first.CSeq {
		t.Errorf("CSeq not updated: %d <= %d", b.CSeq, first.CSeq)
	}

	// Query: no Contact lists the bindings and changes nothing.
	res = p.register("", nil)
	wantStatus(t, res, 200)
	if got := contactsOf(t, res); len(got) != 1 {
		t.Fatalf("query: %v", got)
	}

	// Above the maximum: capped.
	res = p.register("", []string{"<sip:100@10.0.0.5:5062>"}, "Expires: 99999")
	wantStatus(t, res, 200)
	if got := contactsOf(t, res); !near(got["sip:100@10.0.0.5:5062"], 3600) {
		t.Fatalf("not capped to MaxExpires: %v", got)
	}

	// No expiry given: DefaultExpires.
	res = p.register("", []string{"<sip:100@10.0.0.5:5062>"})
	wantStatus(t, res, 200)
	if got := contactsOf(t, res); !near(got["sip:100@10.0.0.5:5062"], 1800) {
		t.Fatalf("default expiry not applied: %v", got)
	}
}

func TestSeveralContactsAndRemoval(t *testing.T) {
	e := newEnv(t)
	desk := newPhone(t, e, "100", "s3cret")
	soft := newPhone(t, e, "100", "s3cret")
	wantStatus(t, desk.register("", []string{"<sip:100@10.0.0.5:5062>"}), 200)
	res := soft.register("", []string{"<sip:100@10.0.0.6:5070;transport=udp>;q=0.5", "<sip:100@10.0.0.6:5072>"})
	wantStatus(t, res, 200)
	if got := contactsOf(t, res); len(got) != 3 {
		t.Fatalf("contacts %v, want 3", got)
	}
	if b, ok := e.loc.Get("100", "sip:100@10.0.0.6:5070;transport=udp"); !ok || b.Q != 500 {
		t.Fatalf("q not kept: %+v %v", b, ok)
	}

	// Expires 0 on one contact removes only that one.
	res = soft.register("", []string{"<sip:100@10.0.0.6:5072>;expires=0"})
	wantStatus(t, res, 200)
	if got := contactsOf(t, res); len(got) != 2 {
		t.Fatalf("after removing one: %v", got)
	}

	// "*" with Expires: 0 removes all, from any device.
	res = desk.register("", []string{"*"}, "Expires: 0")
	wantStatus(t, res, 200)
	if got := contactsOf(t, res); len(got) != 0 {
		t.Fatalf("after *: %v", got)
	}
	if n := e.store.len(); n != 0 {
		t.Fatalf("%d bindings still persisted", n)
	}
}

func TestRejections(t *testing.T) {
	cases := []struct {
		name     string
		user     string
		pass     string
		to       string
		contacts []string
		hdrs     []string
		want     int
		check    func(t *testing.T, res *sip.Response)
	}{
		{name: "too brief", contacts: []string{"<sip:100@10.0.0.5>"}, hdrs: []string{"Expires: 30"}, want: 423,
			check: func(t *testing.T, res *sip.Response) {
				if h := res.GetHeader("Min-Expires"); h == nil || h.Value() != "60" {
					t.Errorf("Min-Expires %v, want 60", h)
				}
			}},
		{name: "too brief param", contacts: []string{"<sip:100@10.0.0.5>;expires=5"}, want: 423},
		{name: "star without expires 0", contacts: []string{"*"}, hdrs: []string{"Expires: 60"}, want: 400},
		{name: "star without expires header", contacts: []string{"*"}, want: 400},
		{name: "star with other contacts", contacts: []string{"*", "<sip:100@10.0.0.5>"}, hdrs: []string{"Expires: 0"}, want: 400},
		{name: "bad expires header", contacts: []string{"<sip:100@10.0.0.5>"}, hdrs: []string{"Expires: soon"}, want: 400},
		{name: "bad expires param", contacts: []string{"<sip:100@10.0.0.5>;expires=-1"}, want: 400},
		{name: "bad q", contacts: []string{"<sip:100@10.0.0.5>;q=7"}, want: 400},
		{name: "tel contact", contacts: []string{"<tel:+4930123>"}, want: 400},
		{name: "wrong password", pass: "guess", contacts: []string{"<sip:100@10.0.0.5>"}, want: 401},
		{name: "unknown user", user: "999", pass: "x", contacts: []string{"<sip:999@10.0.0.5>"}, want: 401},
		{name: "unknown extension", to: "999", contacts: []string{"<sip:999@10.0.0.5>"}, want: 404},
		{name: "another extension", to: "101", contacts: []string{"<sip:101@10.0.0.5>"}, want: 403},
		{name: "more contacts than allowed", user: "102", pass: "two", contacts: []string{"<sip:102@10.0.0.5:1>", "<sip:102@10.0.0.5:2>", "<sip:102@10.0.0.5:3>"}, want: 403},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			user, pass := "100", "s3cret"
			if tt.user != "" {
				user = tt.user
			}
			if tt.pass != "" {
				pass = tt.pass
			}
			res := newPhone(t, e, user, pass).register(tt.to, tt.contacts, tt.hdrs...)
			wantStatus(t, res, tt.want)
			if tt.check != nil {
				tt.check(t, res)
			}
			if n := len(e.loc.All()); n != 0 {
				t.Errorf("%d bindings after a rejected REGISTER", n)
			}
		})
	}
}

func TestContactLimitEvictsOldest(t *testing.T) {
	e := newEnv(t)
	// Extension 102 allows two devices; a third (say, the first phone
	// after a reboot on a new port) pushes out the oldest.
	for _, c := range []string{"<sip:102@10.0.0.5:1>", "<sip:102@10.0.0.5:2>", "<sip:102@10.0.0.5:3>"} {
		wantStatus(t, newPhone(t, e, "102", "two").register("", []string{c}), 200)
		e.clock.Add(time.Second)
	}
	var got []string
	for _, b := range e.loc.All() {
		got = append(got, b.Contact)
	}
	if strings.Join(got, " ") != "sip:102@10.0.0.5:2 sip:102@10.0.0.5:3" {
		t.Fatalf("bindings %v, want ports 2 and 3", got)
	}
}

// rawRegister parses a REGISTER from extension 100 with one contact.
func rawRegister(t testing.TB, callID string, contact string) *sip.Request {
	t.Helper()
	raw := "REGISTER sip:branch.example SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK" + callID + "\r\n" +
		"To: <sip:100@branch.example>\r\n" +
		"From: <sip:100@branch.example>;tag=1\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 REGISTER\r\n" +
		"Contact: " + contact + "\r\n" +
		"Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	req.SetSource("192.0.2.1:5060")
	return req
}

func TestConcurrentRegistrationsKeepTheLimit(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := rawRegister(t, fmt.Sprintf("c%d", i), fmt.Sprintf("<sip:100@10.0.1.%d>", i))
			res, err := e.reg.register(req, "100")
			if err == nil && res.StatusCode != 200 {
				err = fmt.Errorf("status %d", res.StatusCode)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.loc.Lookup("100")); n != DefaultMaxContacts {
		t.Fatalf("%d bindings, want %d", n, DefaultMaxContacts)
	}
	if n := e.store.len(); n != DefaultMaxContacts {
		t.Fatalf("%d persisted bindings, want %d", n, DefaultMaxContacts)
	}
}

func TestLoweredLimitEvictsSeveral(t *testing.T) {
	e := newEnv(t)
	for i := range 4 {
		if _, err := e.reg.register(rawRegister(t, fmt.Sprintf("c%d", i), fmt.Sprintf("<sip:100@10.0.1.%d>", i)), "100"); err != nil {
			t.Fatal(err)
		}
		e.clock.Add(time.Second)
	}
	e.reg.dir = directory{"100": {Number: "100", MaxContacts: 2}}
	if _, err := e.reg.register(rawRegister(t, "new", "<sip:100@10.0.1.99>"), "100"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range e.loc.All() {
		got = append(got, b.Contact)
	}
	if strings.Join(got, " ") != "sip:100@10.0.1.3 sip:100@10.0.1.99" {
		t.Fatalf("bindings %v, want the newest old one and the new one", got)
	}
}

func TestCSeqOrdering(t *testing.T) {
	e := newEnv(t)
	p := newPhone(t, e, "100", "s3cret")
	p.cseq = 10
	wantStatus(t, p.register("", []string{"<sip:100@10.0.0.5>"}, "Expires: 600"), 200)
	stored, _ := e.loc.Get("100", "sip:100@10.0.0.5")

	// Same Call-ID, lower CSeq: out of order, refused, binding unchanged.
	p.cseq = 3
	wantStatus(t, p.register("", []string{"<sip:100@10.0.0.5>;expires=0"}), 500)
	if b, ok := e.loc.Get("100", "sip:100@10.0.0.5"); !ok || b.CSeq != stored.CSeq {
		t.Fatalf("binding changed by an out-of-order REGISTER: %+v %v", b, ok)
	}

	// Another Call-ID (the phone rebooted) replaces it whatever the CSeq.
	q := newPhone(t, e, "100", "s3cret")
	wantStatus(t, q.register("", []string{"<sip:100@10.0.0.5>"}, "Expires: 900"), 200)
	if b, _ := e.loc.Get("100", "sip:100@10.0.0.5"); b.CallID != q.callID {
		t.Fatalf("binding not replaced: %+v", b)
	}
}

func TestLateRetransmissionIsRechallenged(t *testing.T) {
	e := newEnv(t)
	p := newPhone(t, e, "100", "s3cret")
	wantStatus(t, p.register("", []string{"<sip:100@10.0.0.5>"}, "Expires: 600"), 200)
	b, _ := e.loc.Get("100", "sip:100@10.0.0.5")

	// The very same authenticated REGISTER again, after its transaction
	// ended (its 200 was lost): the used nonce-count gets a stale
	// challenge, not a second write.
	again := p.last.Clone()
	again.RemoveHeader("Via")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.client.Do(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, 401)
	if h := res.GetHeader("WWW-Authenticate"); h == nil || !strings.Contains(h.Value(), "stale=true") {
		t.Fatalf("challenge %v, want stale=true", h)
	}
	if b2, _ := e.loc.Get("100", "sip:100@10.0.0.5"); !b2.Updated.Equal(b.Updated) {
		t.Fatal("binding rewritten by a replay")
	}
}

func TestEqualCSeqRefused(t *testing.T) {
	e := newEnv(t)
	wantStatus(t, newPhone(t, e, "100", "s3cret").register("", []string{"<sip:100@10.0.0.5>"}, "Expires: 600"), 200)
	b, _ := e.loc.Get("100", "sip:100@10.0.0.5")
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "branch.example"})
	req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKagain"))
	req.AppendHeader(sip.NewHeader("To", "<sip:100@branch.example>"))
	cid := sip.CallIDHeader(b.CallID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: b.CSeq, MethodName: sip.REGISTER})
	req.AppendHeader(sip.NewHeader("Contact", "<sip:100@10.0.0.5>;expires=0"))
	_, err := e.reg.register(req, "100")
	var re *regError
	if !errors.As(err, &re) || re.code != 500 {
		t.Fatalf("register = %v, want a 500", err)
	}
	if _, ok := e.loc.Get("100", "sip:100@10.0.0.5"); !ok {
		t.Fatal("binding removed by a REGISTER with an old CSeq")
	}
}

func TestNATAnswerGoesToPacketSource(t *testing.T) {
	e := newEnv(t)
	// The phone names a private address in its Via (and asks for no
	// rport); only the packet source reaches it.
	p := newPhone(t, e, "100", "s3cret", sipgo.WithClientHostname("10.99.99.99"), sipgo.WithClientPort(5099))
	res := p.register("", []string{"<sip:100@10.99.99.99:5099>"})
	wantStatus(t, res, 200)
	via := res.Via()
	if r, _ := via.Params.Get("received"); r != "127.0.0.1" {
		t.Errorf("received=%q, want 127.0.0.1", r)
	}
	b, ok := e.loc.Get("100", "sip:100@10.99.99.99:5099")
	if !ok {
		t.Fatal("no binding")
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(b.Source, "udp:"))
	if r, _ := via.Params.Get("rport"); r == "" || r != port {
		t.Errorf("rport=%q, want the source port %s", r, port)
	}
	if port == "5099" || !strings.HasPrefix(b.Source, "udp:127.0.0.1:") {
		t.Errorf("Source %q is not the packet source", b.Source)
	}
}

func TestTCPSource(t *testing.T) {
	e := newEnv(t)
	p := newPhone(t, e, "100", "s3cret")
	host, port, _ := net.SplitHostPort(e.tcpAddr)
	p.server.Port, _ = strconv.Atoi(port)
	p.server.Host = host
	p.server.UriParams = sip.NewParams()
	p.server.UriParams.Add("transport", "tcp")
	wantStatus(t, p.register("", []string{"<sip:100@10.0.0.5:5062;transport=tcp>"}), 200)
	b, ok := e.loc.Get("100", "sip:100@10.0.0.5:5062;transport=tcp")
	if !ok || !strings.HasPrefix(b.Source, "tcp:127.0.0.1:") {
		t.Fatalf("binding %+v, want a tcp source", b)
	}
}

func TestPersistenceFailure(t *testing.T) {
	e := newEnv(t)
	e.store.setFail(true)
	p := newPhone(t, e, "100", "s3cret")
	wantStatus(t, p.register("", []string{"<sip:100@10.0.0.5>"}), 500)
	if n := len(e.loc.All()); n != 0 {
		t.Fatalf("%d bindings after a failed save", n)
	}

	// With two contacts, the first saved and the second failing: the
	// first is rolled back, nothing half-written.
	e.store.setFail(false)
	wantStatus(t, p.register("", []string{"<sip:100@10.0.0.5>"}, "Expires: 600"), 200)
	before, _ := e.loc.Get("100", "sip:100@10.0.0.5")
	e.store.failAfter(1)
	wantStatus(t, p.register("", []string{"<sip:100@10.0.0.5>;expires=900", "<sip:100@10.0.0.7>"}), 500)
	after, ok := e.loc.Get("100", "sip:100@10.0.0.5")
	if !ok || !after.Expires.Equal(before.Expires) || after.CSeq != before.CSeq {
		t.Fatalf("first contact not restored: %+v, want %+v", after, before)
	}
	if _, ok := e.loc.Get("100", "sip:100@10.0.0.7"); ok {
		t.Fatal("second contact registered despite the failure")
	}
	if n := e.store.len(); n != 1 {
		t.Fatalf("%d persisted bindings, want 1", n)
	}
	e.store.mu.Lock()
	persisted := e.store.m["100\x00sip:100@10.0.0.5"]
	e.store.mu.Unlock()
	if persisted.CSeq != before.CSeq {
		t.Fatalf("persisted binding not restored: %+v", persisted)
	}
}

func TestRestartKeepsBindings(t *testing.T) {
	store := newMemStore()
	e := newEnvWithStore(t, store)
	wantStatus(t, newPhone(t, e, "100", "s3cret").register("", []string{"<sip:100@10.0.0.5>"}, "Expires: 600"), 200)

	// A new registrar over the same store (a restart) knows the phone.
	e2 := newEnvWithStore(t, store)
	bs := e2.loc.Lookup("100")
	if len(bs) != 1 || bs[0].Contact != "sip:100@10.0.0.5" {
		t.Fatalf("after restart: %+v", bs)
	}
	res := newPhone(t, e2, "100", "s3cret").register("", nil)
	wantStatus(t, res, 200)
	if got := contactsOf(t, res); len(got) != 1 {
		t.Fatalf("query after restart: %v", got)
	}
}

func TestNewValidates(t *testing.T) {
	loc, err := location.New(newMemStore(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := fakeAuth{}
	cases := []struct {
		name string
		o    Options
		err  bool
	}{
		{"defaults", Options{Location: loc, Auth: a, Directory: testDir}, false},
		{"missing location", Options{Auth: a, Directory: testDir}, true},
		{"missing auth", Options{Location: loc, Directory: testDir}, true},
		{"min above max", Options{Location: loc, Auth: a, Directory: testDir, MinExpires: time.Hour, MaxExpires: time.Minute}, true},
		{"default below min", Options{Location: loc, Auth: a, Directory: testDir, MinExpires: time.Hour, MaxExpires: 2 * time.Hour, DefaultExpires: time.Minute}, true},
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

type fakeAuth struct{}

func (fakeAuth) Authenticate(*sip.Request, sip.ServerTransaction, bool) (string, bool) {
	return "100", true
}

func FuzzRegister(f *testing.F) {
	for _, s := range [][2]string{
		{"<sip:100@10.0.0.5:5062>", "600"},
		{"<sip:100@10.0.0.5>;expires=0", ""},
		{"*", "0"},
		{"*, <sip:100@10.0.0.5>", "0"},
		{"<sip:100@a>;q=0.5, <sip:100@b>;q=1.0;expires=3600", "99999999999"},
		{`"Bob" <sips:100@[::1]:5061;transport=tls>;+sip.instance="<urn:uuid:1>"`, "120"},
		{"<tel:+49301234>", "60"},
		{"<sip:100@x>;expires=NaN;q=-0", " 7 "},
		{"<>", "-1"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, contact, expires string) {
		if strings.ContainsAny(contact+expires, "\r\n") {
			return
		}
		raw := "REGISTER sip:branch.example SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKfuzz\r\n" +
			"To: <sip:100@branch.example>\r\n" +
			"From: <sip:100@branch.example>;tag=1\r\n" +
			"Call-ID: fuzz\r\n" +
			"CSeq: 1 REGISTER\r\n" +
			"Contact: " + contact + "\r\n"
		if expires != "" {
			raw += "Expires: " + expires + "\r\n"
		}
		raw += "Content-Length: 0\r\n\r\n"
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		req.SetSource("192.0.2.1:5060")
		loc, err := location.New(newMemStore(), nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(Options{Location: loc, Auth: fakeAuth{}, Directory: testDir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		res, err := r.register(req, "100")
		if err != nil {
			var re *regError
			if !errors.As(err, &re) || re.code < 400 {
				t.Fatalf("unexpected error %v", err)
			}
			if len(loc.All()) != 0 {
				t.Fatal("bindings written by a refused REGISTER")
			}
			return
		}
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		if n := len(loc.All()); n > DefaultMaxContacts {
			t.Fatalf("%d bindings, above the limit", n)
		}
	})
}
