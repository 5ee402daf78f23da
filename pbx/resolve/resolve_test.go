package resolve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeDNS answers from a table of zone-file lines, counting questions.
type fakeDNS struct {
	mu    sync.Mutex
	rrs   []dns.RR
	extra map[string][]dns.RR // additional section by "TYPE name"
	asked []string
	fail  error
}

func newFakeDNS(t *testing.T, lines ...string) *fakeDNS {
	t.Helper()
	f := &fakeDNS{extra: map[string][]dns.RR{}}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("zone line %q: %v", l, err)
		}
		f.rrs = append(f.rrs, rr)
	}
	return f
}

func (f *fakeDNS) exchange(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	qq := q.Question[0]
	key := dns.TypeToString[qq.Qtype] + " " + canonical(qq.Name)
	f.asked = append(f.asked, key)
	if f.fail != nil {
		return nil, f.fail
	}
	m := new(dns.Msg)
	m.SetReply(q)
	known := false
	for _, rr := range f.rrs {
		if strings.EqualFold(rr.Header().Name, qq.Name) {
			known = true
			if rr.Header().Rrtype == qq.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	// One level of CNAME is enough for the tests.
	for _, rr := range m.Answer {
		if c, ok := rr.(*dns.CNAME); ok {
			for _, x := range f.rrs {
				if strings.EqualFold(x.Header().Name, c.Target) && x.Header().Rrtype == qq.Qtype {
					m.Answer = append(m.Answer, x)
				}
			}
		}
	}
	m.Extra = f.extra[key]
	if !known {
		m.Rcode = dns.RcodeNameError
	}
	return m, nil
}

func (f *fakeDNS) questions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.asked
	f.asked = nil
	return q
}

func fakeResolver(t *testing.T, f *fakeDNS, cfg Config) *Resolver {
	t.Helper()
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(3, 4))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r, err := newResolver(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		in      string
		want    request
		wantErr string
	}{
		{in: "example.com", want: request{host: "example.com"}},
		{in: "sip:Example.COM.", want: request{host: "example.com"}},
		{in: "sips:example.com", want: request{secure: true, host: "example.com"}},
		{in: "sip:alice@example.com:5070;transport=TCP", want: request{host: "example.com", port: 5070, transport: TCP}},
		{in: "sips:example.com;transport=tcp", want: request{secure: true, host: "example.com", transport: TLS}},
		{in: "sip:[2001:db8::1]:5062", want: request{host: "2001:db8::1", ip: netip.MustParseAddr("2001:db8::1"), port: 5062}},
		{in: "192.0.2.1", want: request{host: "192.0.2.1", ip: netip.MustParseAddr("192.0.2.1")}},
		{in: "sip:x@example.com;maddr=192.0.2.2", want: request{host: "192.0.2.2", ip: netip.MustParseAddr("192.0.2.2")}},
		{in: "sips:example.com;transport=udp", wantErr: "SIPS needs TLS"},
		{in: "sip:example.com;transport=sctp", wantErr: "not supported"},
		{in: "sip:example.com;transport=tls", wantErr: "not enabled"},
		{in: "tel:+4930123", wantErr: "scheme"},
		{in: "", wantErr: "empty"},
		{in: "sip:exa mple.com", wantErr: ""}, // either the URI parser or ours refuses it
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			u, err := ParseTarget(tc.in)
			var got request
			if err == nil {
				tr := []string{UDP, TCP, TLS}
				if strings.Contains(tc.in, "transport=tls") {
					tr = tr[:2]
				}
				got, err = parseRequest(u, tr)
			}
			if tc.wantErr != "" || strings.Contains(tc.in, " ") {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func srvs(spec ...[3]uint16) []*dns.SRV {
	var out []*dns.SRV
	for i, s := range spec {
		out = append(out, &dns.SRV{Priority: s[0], Weight: s[1], Port: s[2], Target: fmt.Sprintf("h%d.", i)})
	}
	return out
}

func ports(recs []*dns.SRV) []uint16 {
	var out []uint16
	for _, r := range recs {
		out = append(out, r.Port)
	}
	return out
}

func TestOrderSRV(t *testing.T) {
	always := func(v int) func(int) int { return func(n int) int { return min(v, n-1) } }
	tests := []struct {
		name string
		recs []*dns.SRV
		intn func(int) int
		want []uint16
	}{
		{"priority first", srvs([3]uint16{20, 0, 2}, [3]uint16{10, 0, 1}, [3]uint16{30, 0, 3}), always(0), []uint16{1, 2, 3}},
		{"draw 0 picks weight 0 first", srvs([3]uint16{10, 5, 1}, [3]uint16{10, 0, 2}), always(0), []uint16{2, 1}},
		{"draw at the sum picks the last", srvs([3]uint16{10, 5, 1}, [3]uint16{10, 10, 2}, [3]uint16{10, 0, 3}), always(1000), []uint16{2, 1, 3}},
		{"running sum boundary is inclusive", srvs([3]uint16{10, 5, 1}, [3]uint16{10, 10, 2}), always(5), []uint16{1, 2}},
		{"just past the boundary", srvs([3]uint16{10, 5, 1}, [3]uint16{10, 10, 2}), always(6), []uint16{2, 1}},
		{"all weight 0 keeps the order with draw 0", srvs([3]uint16{1, 0, 1}, [3]uint16{1, 0, 2}, [3]uint16{1, 0, 3}), always(0), []uint16{1, 2, 3}},
		{"empty", nil, always(0), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.recs)
			got := ports(orderSRV(tc.recs, tc.intn))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if !slices.Equal(in, tc.recs) {
				t.Error("orderSRV changed its argument")
			}
		})
	}
}

func TestUsableNAPTR(t *testing.T) {
	n := func(order, pref uint16, flags, service, regexp, repl string) *dns.NAPTR {
		return &dns.NAPTR{Order: order, Preference: pref, Flags: flags, Service: service, Regexp: regexp, Replacement: repl}
	}
	recs := []*dns.NAPTR{
		n(50, 50, "s", "SIP+D2U", "", "_sip._udp.example.com."),
		n(10, 90, "S", "sip+d2t", "", "_sip._tcp.example.com."),
		n(10, 10, "s", "SIPS+D2T", "", "_sips._tcp.example.com."),
		n(5, 5, "s", "SIP+D2S", "", "_sip._sctp.example.com."),   // SCTP: not ours
		n(5, 5, "u", "E2U+sip", "!^.*$!sip:a@b!", "."),           // ENUM: not for SIP resolution
		n(5, 5, "s", "SIP+D2U", "!x!y!", "_x._udp.example.com."), // regexp: not supported
		n(5, 5, "a", "SIP+D2U", "", "a.example.com."),            // A flag: not RFC 3263
		n(60, 1, "s", "SIP+D2U", "", "_sip._udp.example.com."),   // duplicate of a better one
		n(70, 1, "s", "SIP+D2U", "", "."),
	}
	tests := []struct {
		name       string
		secure     bool
		transports []string
		want       []string
	}{
		{"sip, udp and tcp", false, []string{UDP, TCP}, []string{"tcp _sip._tcp.example.com", "udp _sip._udp.example.com", "udp ."}},
		{"sip, tls too", false, []string{UDP, TCP, TLS}, []string{"tls _sips._tcp.example.com", "tcp _sip._tcp.example.com", "udp _sip._udp.example.com", "udp ."}},
		{"sips", true, []string{UDP, TCP, TLS}, []string{"tls _sips._tcp.example.com"}},
		{"udp only", false, []string{UDP}, []string{"udp _sip._udp.example.com", "udp ."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range usableNAPTR(recs, tc.secure, tc.transports) {
				name := c.srv
				if name == "" {
					name = "."
				}
				got = append(got, c.transport+" "+name)
			}
			// "." canonicalises to "": skipped by usableNAPTR.
			want := slices.DeleteFunc(slices.Clone(tc.want), func(s string) bool { return strings.HasSuffix(s, " .") })
			if !slices.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestResolveUsesAdditionalSectionAndCNAME(t *testing.T) {
	f := newFakeDNS(t,
		"example.com. 300 IN NAPTR 10 10 \"s\" \"SIP+D2U\" \"\" _sip._udp.example.com.",
		"_sip._udp.example.com. 300 IN SRV 10 0 5060 pbx.example.com.",
		"_sip._udp.example.com. 300 IN SRV 20 0 5060 alias.example.com.",
		"pbx.example.com. 300 IN A 192.0.2.1",
		"alias.example.com. 300 IN CNAME real.example.com.",
		"real.example.com. 300 IN A 192.0.2.2",
	)
	glue, _ := dns.NewRR("pbx.example.com. 300 IN A 192.0.2.1")
	f.extra["SRV _sip._udp.example.com"] = []dns.RR{glue}
	r := fakeResolver(t, f, Config{})
	ts, err := r.ResolveString(context.Background(), "sip:example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := short(ts), []string{"udp:192.0.2.1:5060/naptr", "udp:192.0.2.2:5060/naptr"}; !slices.Equal(got, want) {
		t.Errorf("targets %q, want %q", got, want)
	}
	want := []string{"NAPTR example.com", "SRV _sip._udp.example.com", "A alias.example.com", "AAAA alias.example.com"}
	if got := f.questions(); !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q (pbx's address came with the SRV answer)", got, want)
	}
}

func TestDeadTargetsGoLastAndComeBack(t *testing.T) {
	f := newFakeDNS(t,
		"_sip._udp.example.com. 300 IN SRV 10 0 5060 a.example.com.",
		"_sip._udp.example.com. 300 IN SRV 20 0 5060 b.example.com.",
		"a.example.com. 300 IN A 192.0.2.1",
		"b.example.com. 300 IN A 192.0.2.2",
	)
	clk := newClock()
	r := fakeResolver(t, f, Config{Now: clk.Now, DeadFor: time.Minute, Transports: []string{UDP}})
	ctx := context.Background()
	ts, err := r.ResolveString(ctx, "example.com")
	if err != nil || len(ts) != 2 {
		t.Fatalf("Resolve: %v, %v", ts, err)
	}
	r.MarkDead(ts[0])
	got, _ := r.ResolveString(ctx, "example.com")
	if want := []string{"udp:192.0.2.2:5060/srv", "udp:192.0.2.1:5060/srv/dead"}; !slices.Equal(short(got), want) {
		t.Errorf("after MarkDead: %q, want %q", short(got), want)
	}
	if d := r.Dead(); len(d) != 1 || d[0].IP != ts[0].IP || !d[0].Dead {
		t.Errorf("Dead() = %v", d)
	}
	clk.Advance(time.Minute)
	got, _ = r.ResolveString(ctx, "example.com")
	if want := []string{"udp:192.0.2.1:5060/srv", "udp:192.0.2.2:5060/srv"}; !slices.Equal(short(got), want) {
		t.Errorf("after DeadFor: %q, want %q", short(got), want)
	}
	r.MarkDead(ts[0])
	if !r.MarkAlive(ts[0]) || r.IsDead(ts[0]) || r.MarkAlive(ts[0]) {
		t.Error("MarkAlive did not revive exactly once")
	}
}

func TestDoWalksTargets(t *testing.T) {
	f := newFakeDNS(t,
		"_sip._udp.example.com. 300 IN SRV 10 0 5060 a.example.com.",
		"_sip._udp.example.com. 300 IN SRV 20 0 5060 b.example.com.",
		"a.example.com. 300 IN A 192.0.2.1",
		"b.example.com. 300 IN A 192.0.2.2",
	)
	u, _ := ParseTarget("sip:example.com;transport=udp")
	errTimeout := errors.New("transaction timeout")
	tests := []struct {
		name      string
		results   map[string]error // by IP; absent: success
		retryable bool
		wantIP    string // "" : Do fails
		wantDead  []string
		wantTries int
	}{
		{"first answers", nil, true, "192.0.2.1", nil, 1},
		{"first times out", map[string]error{"192.0.2.1": errTimeout}, true, "192.0.2.2", []string{"192.0.2.1"}, 2},
		{"both time out", map[string]error{"192.0.2.1": errTimeout, "192.0.2.2": errTimeout}, true, "", []string{"192.0.2.1", "192.0.2.2"}, 2},
		{"final answer stops", map[string]error{"192.0.2.1": errors.New("404")}, false, "", nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := fakeResolver(t, f, Config{})
			tries := 0
			tg, err := r.Do(context.Background(), u, func(tg Target) (bool, error) {
				tries++
				if e := tc.results[tg.IP.String()]; e != nil {
					return tc.retryable, e
				}
				return false, nil
			})
			if tc.wantIP == "" {
				if err == nil {
					t.Fatalf("Do succeeded with %s", tg)
				}
			} else if err != nil || tg.IP.String() != tc.wantIP {
				t.Fatalf("Do = %s, %v; want %s", tg, err, tc.wantIP)
			}
			var dead []string
			for _, d := range r.Dead() {
				dead = append(dead, d.IP.String())
			}
			if !slices.Equal(dead, tc.wantDead) || tries != tc.wantTries {
				t.Errorf("dead %v after %d tries, want %v after %d", dead, tries, tc.wantDead, tc.wantTries)
			}
		})
	}
}

func TestProberOnce(t *testing.T) {
	r := fakeResolver(t, newFakeDNS(t), Config{})
	a := Target{Transport: UDP, IP: netip.MustParseAddr("192.0.2.1"), Port: 5060}
	b := Target{Transport: UDP, IP: netip.MustParseAddr("192.0.2.2"), Port: 5060}
	r.MarkDead(a)
	r.MarkDead(b)
	p := NewProber(r, func(ctx context.Context, tg Target) error {
		if tg.IP == a.IP {
			return nil
		}
		<-ctx.Done() // b stays silent until the probe's deadline
		return ctx.Err()
	})
	revived := p.ProbeOnce(context.Background())
	if len(revived) != 1 || revived[0].IP != a.IP {
		t.Fatalf("revived %v, want only %s", revived, a)
	}
	if r.IsDead(a) || !r.IsDead(b) {
		t.Errorf("after the probe: a dead %v, b dead %v", r.IsDead(a), r.IsDead(b))
	}
}

func TestCacheIsBounded(t *testing.T) {
	c := newCache(4)
	now := time.Now()
	for i := range 10 {
		c.put(cacheKey{fmt.Sprint(i), dns.TypeA}, nil, time.Duration(i+1)*time.Second, now)
	}
	if c.len() != 4 {
		t.Fatalf("cache holds %d entries, want 4", c.len())
	}
	// The longest-lived survive.
	if _, ok := c.get(cacheKey{"9", dns.TypeA}, now); !ok {
		t.Error("the newest entry was evicted")
	}
	if _, ok := c.get(cacheKey{"0", dns.TypeA}, now); ok {
		t.Error("the entry closest to expiry survived")
	}
	if _, ok := c.get(cacheKey{"9", dns.TypeA}, now.Add(10*time.Second)); ok {
		t.Error("an expired entry was returned")
	}
}

func TestLookupErrorsAreNotCached(t *testing.T) {
	f := newFakeDNS(t, "a.example.com. 300 IN A 192.0.2.1")
	f.fail = errors.New("i/o timeout")
	r := fakeResolver(t, f, Config{})
	if _, err := r.ResolveString(context.Background(), "sip:a.example.com:5060"); err == nil || !strings.Contains(err.Error(), "i/o timeout") {
		t.Fatalf("err = %v, want the lookup's error", err)
	}
	f.fail = nil
	if ts, err := r.ResolveString(context.Background(), "sip:a.example.com:5060"); err != nil || len(ts) != 1 {
		t.Fatalf("after the server recovered: %v, %v", ts, err)
	}
}

func TestNewChecksConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg     Config
		wantErr string
	}{
		{Config{Servers: []string{"192.0.2.53"}}, ""},
		{Config{Servers: []string{"[2001:db8::53]:5353", "2001:db8::54"}}, ""},
		{Config{Servers: []string{"dns.example.com"}}, "want an IP address"},
		{Config{Servers: []string{"192.0.2.53:0"}}, "port"},
		{Config{Servers: []string{"192.0.2.53"}, Transports: []string{"sctp"}}, "transport"},
	} {
		_, err := New(tc.cfg)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("New(%v) = %v, want error containing %q", tc.cfg.Servers, err, tc.wantErr)
		}
	}
}
