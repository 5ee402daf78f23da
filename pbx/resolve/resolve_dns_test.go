package resolve

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestResolver(t *testing.T, d *testDNS, cfg Config) *Resolver {
	t.Helper()
	if cfg.Servers == nil {
		cfg.Servers = []string{d.proxy.addr}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(1, 2))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// short writes targets as "udp:127.0.0.2:5070/naptr" for comparisons.
func short(ts []Target) []string {
	var out []string
	for _, t := range ts {
		s := t.Transport + ":" + t.Addr() + "/" + string(t.Source)
		if t.Dead {
			s += "/dead"
		}
		out = append(out, s)
	}
	return out
}

// siteZone is the record set the tests below resolve against.
var siteZone = []string{
	// NAPTR: TCP preferred by order, then UDP; SIPS and a non-SIP
	// service are there but not ours to use; a higher-order duplicate of
	// UDP is ignored.
	"--naptr-record=naptr.test,20,50,s,SIP+D2U,,_sip._udp.naptr.test",
	"--naptr-record=naptr.test,10,60,S,SIP+D2T,,_sip._tcp.naptr.test",
	"--naptr-record=naptr.test,5,50,s,SIPS+D2T,,_sips._tcp.naptr.test",
	"--naptr-record=naptr.test,1,50,u,E2U+sip,!^.*$!sip:info@naptr.test!,",
	"--naptr-record=naptr.test,30,50,s,SIP+D2U,,_sip._udp.naptr.test",
	"--srv-host=_sip._tcp.naptr.test,tcp1.naptr.test,5070,10,0",
	"--srv-host=_sip._udp.naptr.test,udp1.naptr.test,5080,10,0",
	"--srv-host=_sips._tcp.naptr.test,tls1.naptr.test,5061,10,0",
	"--host-record=tcp1.naptr.test,127.0.0.2",
	"--host-record=udp1.naptr.test,127.0.0.3,::1",
	"--host-record=tls1.naptr.test,127.0.0.4",
	// No NAPTR: SRV by priority, for UDP and TCP.
	"--srv-host=_sip._udp.prio.test,c.prio.test,5003,30,0",
	"--srv-host=_sip._udp.prio.test,a.prio.test,5001,10,0",
	"--srv-host=_sip._udp.prio.test,b.prio.test,5002,20,0",
	"--srv-host=_sip._tcp.prio.test,a.prio.test,5011,10,0",
	"--host-record=a.prio.test,127.0.1.1",
	"--host-record=b.prio.test,127.0.1.2",
	"--host-record=c.prio.test,127.0.1.3",
	// Neither NAPTR nor SRV: A with the default port.
	"--host-record=plain.test,127.0.2.1",
	// An SRV whose target has no address: skipped.
	"--srv-host=_sip._udp.broken.test,nowhere.broken.test,5060,10,0",
	"--srv-host=_sip._udp.broken.test,ok.broken.test,5061,20,0",
	"--host-record=ok.broken.test,127.0.3.1",
	// "Decidedly not available".
	"--srv-host=_sip._udp.none.test",
	"--host-record=none.test,127.0.4.1",
}

func TestResolveAgainstDNSMasq(t *testing.T) {
	d := startDNSMasq(t, 60, siteZone...)
	tests := []struct {
		name   string
		uri    string
		want   []string
		asked  []string // nil: not checked
		config Config
	}{
		{
			name:  "NAPTR order then SRV then A, only our transports",
			uri:   "sip:naptr.test",
			want:  []string{"tcp:127.0.0.2:5070/naptr", "udp:127.0.0.3:5080/naptr", "udp:[::1]:5080/naptr"},
			asked: []string{"NAPTR naptr.test", "SRV _sip._tcp.naptr.test", "SRV _sip._udp.naptr.test"},
		},
		{
			name:   "NAPTR with TLS enabled puts SIPS first by order",
			uri:    "sip:naptr.test",
			config: Config{Transports: []string{UDP, TCP, TLS}},
			want:   []string{"tls:127.0.0.4:5061/naptr", "tcp:127.0.0.2:5070/naptr", "udp:127.0.0.3:5080/naptr", "udp:[::1]:5080/naptr"},
		},
		{
			name:   "sips URI uses only SIPS+D2T",
			uri:    "sips:naptr.test",
			config: Config{Transports: []string{UDP, TCP, TLS}},
			want:   []string{"tls:127.0.0.4:5061/naptr"},
		},
		{
			name: "no NAPTR: SRV by priority for each transport",
			uri:  "sip:prio.test",
			want: []string{"udp:127.0.1.1:5001/srv", "udp:127.0.1.2:5002/srv", "udp:127.0.1.3:5003/srv", "tcp:127.0.1.1:5011/srv"},
		},
		{
			name:   "transport preference of the config orders the SRV queries",
			uri:    "sip:prio.test",
			config: Config{Transports: []string{TCP, UDP}},
			want:   []string{"tcp:127.0.1.1:5011/srv", "udp:127.0.1.1:5001/srv", "udp:127.0.1.2:5002/srv", "udp:127.0.1.3:5003/srv"},
		},
		{
			name:  "transport parameter: SRV of that transport only",
			uri:   "sip:prio.test;transport=tcp",
			want:  []string{"tcp:127.0.1.1:5011/srv"},
			asked: []string{"SRV _sip._tcp.prio.test"},
		},
		{
			name:  "explicit port: A/AAAA only",
			uri:   "sip:a.prio.test:5099",
			want:  []string{"udp:127.0.1.1:5099/a"},
			asked: []string{"A a.prio.test", "AAAA a.prio.test"},
		},
		{
			name:  "explicit port and transport",
			uri:   "sip:a.prio.test:5099;transport=TCP",
			want:  []string{"tcp:127.0.1.1:5099/a"},
			asked: []string{"A a.prio.test", "AAAA a.prio.test"},
		},
		{
			name:  "neither NAPTR nor SRV: A with port 5060",
			uri:   "sip:plain.test",
			want:  []string{"udp:127.0.2.1:5060/a"},
			asked: []string{"NAPTR plain.test", "SRV _sip._udp.plain.test", "SRV _sip._tcp.plain.test", "A plain.test", "AAAA plain.test"},
		},
		{
			name: "SRV target without address is skipped",
			uri:  "sip:broken.test",
			want: []string{"udp:127.0.3.1:5061/srv"},
		},
		{
			name: "SRV target '.' means no SIP over that transport",
			uri:  "sip:none.test;transport=udp",
			want: []string{"udp:127.0.4.1:5060/a"},
		},
		{
			name:  "numeric IPv4 asks nothing",
			uri:   "sip:192.0.2.7",
			want:  []string{"udp:192.0.2.7:5060/ip"},
			asked: []string{},
		},
		{
			name:  "numeric IPv6 with port and transport",
			uri:   "sip:[2001:db8::7]:5070;transport=tcp",
			want:  []string{"tcp:[2001:db8::7]:5070/ip"},
			asked: []string{},
		},
		{
			name:  "maddr overrides the host",
			uri:   "sip:user@naptr.test;maddr=192.0.2.9",
			want:  []string{"udp:192.0.2.9:5060/ip"},
			asked: []string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestResolver(t, d, tc.config)
			d.proxy.asked()
			ts, err := r.ResolveString(context.Background(), tc.uri)
			if err != nil {
				t.Fatalf("Resolve(%s): %v", tc.uri, err)
			}
			if got := short(ts); !slices.Equal(got, tc.want) {
				t.Errorf("Resolve(%s)\n got %q\nwant %q", tc.uri, got, tc.want)
			}
			if tc.asked != nil {
				if got := d.proxy.asked(); !slices.Equal(got, tc.asked) && !(len(got) == 0 && len(tc.asked) == 0) {
					t.Errorf("questions asked\n got %q\nwant %q", got, tc.asked)
				}
			}
		})
	}
}

func TestResolveUnknownDomainFails(t *testing.T) {
	d := startDNSMasq(t, 60, siteZone...)
	r := newTestResolver(t, d, Config{})
	_, err := r.ResolveString(context.Background(), "sip:nothere.test")
	if !errors.Is(err, ErrNoTargets) {
		t.Fatalf("err = %v, want ErrNoTargets", err)
	}
	if !strings.Contains(err.Error(), "nothere.test") {
		t.Errorf("error %q does not name the domain", err)
	}
}

func TestResolveCachesByTTL(t *testing.T) {
	// SRV and NAPTR live 60 s (local TTL); udp1's addresses 10 s.
	zone := append([]string{}, siteZone...)
	for i, z := range zone {
		if strings.HasPrefix(z, "--host-record=udp1.naptr.test,") {
			zone[i] = "--host-record=udp1.naptr.test,127.0.0.3,::1,10"
		}
	}
	d := startDNSMasq(t, 60, zone...)
	clk := newClock()
	r := newTestResolver(t, d, Config{Now: clk.Now})
	ctx := context.Background()
	d.proxy.asked()
	first, err := r.ResolveString(ctx, "sip:naptr.test")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(d.proxy.asked()); n == 0 {
		t.Fatal("the first resolution asked nothing")
	}
	again, err := r.ResolveString(ctx, "sip:naptr.test")
	if err != nil {
		t.Fatal(err)
	}
	if q := d.proxy.asked(); len(q) != 0 {
		t.Errorf("second resolution within the TTL asked %q", q)
	}
	if !slices.Equal(short(first), short(again)) {
		t.Errorf("cached answer differs: %q, then %q", short(first), short(again))
	}
	// Past udp1's 10 s: only its addresses are asked again (they came in
	// the SRV answer's additional section, so they are asked directly now).
	clk.Advance(11 * time.Second)
	if _, err := r.ResolveString(ctx, "sip:naptr.test"); err != nil {
		t.Fatal(err)
	}
	if got, want := d.proxy.asked(), []string{"A udp1.naptr.test", "AAAA udp1.naptr.test"}; !slices.Equal(got, want) {
		t.Errorf("after 11 s asked %q, want %q", got, want)
	}
	// Past 60 s everything is asked again.
	clk.Advance(50 * time.Second)
	if _, err := r.ResolveString(ctx, "sip:naptr.test"); err != nil {
		t.Fatal(err)
	}
	if got := d.proxy.asked(); !slices.Contains(got, "NAPTR naptr.test") || !slices.Contains(got, "SRV _sip._tcp.naptr.test") {
		t.Errorf("after 61 s asked %q, want NAPTR and SRV again", got)
	}
	// Negative answers are cached too: a domain without NAPTR or SRV.
	if _, err := r.ResolveString(ctx, "sip:plain.test"); err != nil {
		t.Fatal(err)
	}
	d.proxy.asked()
	if _, err := r.ResolveString(ctx, "sip:plain.test"); err != nil {
		t.Fatal(err)
	}
	if q := d.proxy.asked(); len(q) != 0 {
		t.Errorf("second resolution of plain.test asked %q", q)
	}
}

func TestResolveWeightDistribution(t *testing.T) {
	d := startDNSMasq(t, 3600,
		"--srv-host=_sip._udp.w.test,w0.w.test,5000,10,0",
		"--srv-host=_sip._udp.w.test,w10.w.test,5010,10,10",
		"--srv-host=_sip._udp.w.test,w30.w.test,5030,10,30",
		"--srv-host=_sip._udp.w.test,w60.w.test,5060,10,60",
		"--srv-host=_sip._udp.w.test,backup.w.test,5099,20,100",
		"--host-record=w0.w.test,127.0.5.1",
		"--host-record=w10.w.test,127.0.5.2",
		"--host-record=w30.w.test,127.0.5.3",
		"--host-record=w60.w.test,127.0.5.4",
		"--host-record=backup.w.test,127.0.5.5",
	)
	r := newTestResolver(t, d, Config{Rand: rand.New(rand.NewPCG(7, 11)), Transports: []string{UDP}})
	const n = 5000
	first := map[uint16]int{}
	for range n {
		ts, err := r.ResolveString(context.Background(), "sip:w.test;transport=udp")
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 5 || ts[4].Port != 5099 {
			t.Fatalf("want the four priority-10 servers then the backup, got %q", short(ts))
		}
		first[ts[0].Port]++
	}
	// RFC 2782: the first pick is w/(sum+1), weight 0 gets 1/(sum+1).
	expect := map[uint16]float64{5000: 1.0 / 101, 5010: 10.0 / 101, 5030: 30.0 / 101, 5060: 60.0 / 101}
	chi := 0.0
	for port, p := range expect {
		e := p * n
		diff := float64(first[port]) - e
		chi += diff * diff / e
	}
	// 3 degrees of freedom: 16.27 is the 0.1 % tail. The seed is fixed,
	// so this is a check of the algorithm, not a flaky statistic.
	if chi > 16.27 {
		t.Errorf("first picks %v are not weighted as RFC 2782 says (chi-square %.1f)", first, chi)
	}
	t.Logf("first picks %v, chi-square %.2f", first, chi)
}

func TestResolveAsksTheNextServer(t *testing.T) {
	d := startDNSMasq(t, 60, siteZone...)
	dead := startProxy(t, d.server)
	dead.drop.Store(true)
	r := newTestResolver(t, d, Config{Servers: []string{dead.addr, d.proxy.addr}, Timeout: 200 * time.Millisecond})
	ts, err := r.ResolveString(context.Background(), "sip:a.prio.test:5000")
	if err != nil {
		t.Fatal(err)
	}
	if got := short(ts); !slices.Equal(got, []string{"udp:127.0.1.1:5000/a"}) {
		t.Errorf("got %q", got)
	}
	if len(dead.asked()) == 0 {
		t.Error("the first server was not asked")
	}
}

func TestResolveAllServersSilent(t *testing.T) {
	d := startDNSMasq(t, 60, siteZone...)
	d.proxy.drop.Store(true)
	r := newTestResolver(t, d, Config{Timeout: 100 * time.Millisecond})
	_, err := r.ResolveString(context.Background(), "sip:a.prio.test:5000")
	if err == nil || !strings.Contains(err.Error(), "looking up A a.prio.test") {
		t.Fatalf("err = %v, want a lookup error naming the query", err)
	}
	// A failure is not cached: once the server answers, it resolves.
	d.proxy.drop.Store(false)
	ts, err := r.ResolveString(context.Background(), "sip:a.prio.test:5000")
	if err != nil || len(ts) != 1 || ts[0].IP != netip.MustParseAddr("127.0.1.1") {
		t.Fatalf("after the server came back: %q, %v", short(ts), err)
	}
}
