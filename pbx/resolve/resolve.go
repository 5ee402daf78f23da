// Package resolve finds where to send a SIP request, per RFC 3263: a numeric
// host as is; a host with a port through A/AAAA; otherwise NAPTR (SIP+D2U,
// SIP+D2T, SIPS+D2T) for the transport, SRV for the servers (priority, then
// RFC 2782 weighted order), A/AAAA for their addresses, and A/AAAA with the
// default port when the domain publishes neither. Answers are cached for
// their TTL. Targets that timed out or answered 503 are remembered as dead
// for a while and tried last; Do walks the targets of a URI in order and
// fails over, and a Prober revives dead targets that answer OPTIONS again.
//
// The package knows no PBX: the SIP attempt and the OPTIONS probe are
// callbacks of the caller.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
)

// Transports.
const (
	UDP = "udp"
	TCP = "tcp"
	TLS = "tls"
)

// Source says which step of RFC 3263 produced a target.
type Source string

// Sources of a target.
const (
	// SourceIP: the URI's host was a numeric address.
	SourceIP Source = "ip"
	// SourceA: A/AAAA of the URI's host (explicit port, or no SRV found).
	SourceA Source = "a"
	// SourceSRV: SRV of the host for a transport the URI named or that
	// was tried because the domain has no usable NAPTR.
	SourceSRV Source = "srv"
	// SourceNAPTR: NAPTR chose the transport and the SRV name.
	SourceNAPTR Source = "naptr"
)

// Defaults of Config.
const (
	DefaultTimeout       = 2 * time.Second
	DefaultDeadFor       = 5 * time.Minute
	DefaultProbeInterval = 30 * time.Second
	DefaultNegativeTTL   = 30 * time.Second
	DefaultCacheSize     = 512
	// MaxTTL caps how long any answer is cached, whatever its TTL.
	MaxTTL = 24 * time.Hour
	// maxTargets bounds the targets of one resolution, so that a domain
	// with hundreds of records cannot make a request try them all.
	maxTargets = 32
)

// Config of a Resolver. The zero value works: the servers of
// /etc/resolv.conf, UDP and TCP, the defaults above.
type Config struct {
	// Servers are the DNS servers asked, in order ("host" or "host:port",
	// port 53 by default). Empty: the nameservers of /etc/resolv.conf.
	Servers []string
	// Timeout of one DNS query to one server.
	Timeout time.Duration
	// DeadFor is how long a target that failed is tried only after the
	// others (unless a probe finds it alive earlier).
	DeadFor time.Duration
	// ProbeInterval is how often a Prober sends OPTIONS to dead targets.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe (default Timeout).
	ProbeTimeout time.Duration
	// NegativeTTL is how long "no such record" is cached when the answer
	// carries no SOA to say so.
	NegativeTTL time.Duration
	// CacheSize bounds the cached answers (name and type pairs).
	CacheSize int
	// Transports we can send on, in order of preference when a domain has
	// SRV but no NAPTR records. Default: udp, tcp. Add "tls" once the PBX
	// has a TLS transport; SIPS URIs need it.
	Transports []string
	// Now and Rand make tests deterministic. Default: time.Now and a
	// randomly seeded generator. Rand is only used under a lock.
	Now  func() time.Time
	Rand *rand.Rand
	// Logger for failovers and revivals. Default slog.Default().
	Logger *slog.Logger
}

// Target is one place to send a request to.
type Target struct {
	Transport string // udp, tcp or tls
	// Host is the name the address was found for (the SRV target or the
	// URI's host), or the address itself for a numeric host.
	Host string
	IP   netip.Addr
	Port uint16
	// Priority and Weight of the SRV record; zero when not from SRV.
	Priority uint16
	Weight   uint16
	Source   Source
	// Dead: the target failed less than DeadFor ago; it is listed after
	// every live one.
	Dead bool
}

// AddrPort returns the target's address and port.
func (t Target) AddrPort() netip.AddrPort { return netip.AddrPortFrom(t.IP, t.Port) }

// Addr returns "ip:port" (IPv6 in brackets), as sipgo's Destination wants.
func (t Target) Addr() string { return t.AddrPort().String() }

// String describes the target for logs: "udp:192.0.2.1:5060 (pbx1.example.com, srv 10/60)".
func (t Target) String() string {
	var b strings.Builder
	b.WriteString(t.Transport + ":" + t.Addr())
	if t.Host != "" && t.Host != t.IP.String() {
		b.WriteString(" (" + t.Host)
		if t.Source == SourceSRV || t.Source == SourceNAPTR {
			fmt.Fprintf(&b, ", %s %d/%d", t.Source, t.Priority, t.Weight)
		}
		b.WriteString(")")
	}
	if t.Dead {
		b.WriteString(" dead")
	}
	return b.String()
}

// key identifies a target for the dead list: where packets go, not how
// the target was found.
func (t Target) key() string { return t.Transport + ":" + t.Addr() }

// ErrNoTargets is returned (wrapped) when a URI resolves to nothing.
var ErrNoTargets = errors.New("no targets")

// exchanger sends one DNS query and returns the answer; the real one asks
// the configured servers, tests and fuzzing substitute their own.
type exchanger interface {
	exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error)
}

// Resolver resolves SIP URIs to targets. Safe for concurrent use.
type Resolver struct {
	cfg   Config
	log   *slog.Logger
	ex    exchanger
	cache *cache

	mu   sync.Mutex // guards rnd and dead
	rnd  *rand.Rand
	dead map[string]deadEntry
}

type deadEntry struct {
	t     Target
	until time.Time
}

// New returns a Resolver for cfg, reading /etc/resolv.conf when
// cfg.Servers is empty.
func New(cfg Config) (*Resolver, error) {
	if len(cfg.Servers) == 0 {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("reading the DNS servers: %w", err)
		}
		for _, s := range cc.Servers {
			cfg.Servers = append(cfg.Servers, net.JoinHostPort(s, cc.Port))
		}
		if len(cfg.Servers) == 0 {
			return nil, errors.New("reading the DNS servers: /etc/resolv.conf names no nameserver")
		}
	}
	servers := make([]string, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		a, err := serverAddr(s)
		if err != nil {
			return nil, err
		}
		servers = append(servers, a)
	}
	cfg.Servers = servers
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	ex := &dnsClient{servers: servers, timeout: cfg.Timeout}
	return newResolver(cfg, ex)
}

func newResolver(cfg Config, ex exchanger) (*Resolver, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.DeadFor <= 0 {
		cfg.DeadFor = DefaultDeadFor
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = cfg.Timeout
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if len(cfg.Transports) == 0 {
		cfg.Transports = []string{UDP, TCP}
	}
	for i, tr := range cfg.Transports {
		tr = strings.ToLower(tr)
		if tr != UDP && tr != TCP && tr != TLS {
			return nil, fmt.Errorf("transport %q: want udp, tcp or tls", cfg.Transports[i])
		}
		cfg.Transports[i] = tr
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Resolver{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "resolve"),
		ex:    ex,
		cache: newCache(cfg.CacheSize),
		rnd:   cfg.Rand,
		dead:  make(map[string]deadEntry),
	}, nil
}

// serverAddr turns "192.0.2.53" or "[2001:db8::53]:5353" into host:port.
func serverAddr(s string) (string, error) {
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("DNS server %q: want an IP address, optionally with :port", s)
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return "", fmt.Errorf("DNS server %q: want an IP address, optionally with :port", s)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", fmt.Errorf("DNS server %q: port %q is not 1-65535", s, p)
	}
	return netip.AddrPortFrom(a, uint16(n)).String(), nil
}

// ParseTarget parses what an administrator writes for a SIP destination:
// a SIP or SIPS URI ("sip:example.com;transport=tcp"), or a bare host with
// an optional port ("example.com", "192.0.2.1:5070", "[2001:db8::1]").
func ParseTarget(s string) (sip.Uri, error) {
	var u sip.Uri
	s = strings.TrimSpace(s)
	if s == "" {
		return u, errors.New("empty SIP destination")
	}
	scheme, rest, ok := strings.Cut(s, ":")
	switch {
	case ok && (strings.EqualFold(scheme, "sip") || strings.EqualFold(scheme, "sips")):
	case ok && isScheme(scheme) && (rest == "" || rest[0] < '0' || rest[0] > '9'):
		return sip.Uri{}, fmt.Errorf("SIP destination %q: scheme %q: only sip and sips resolve", s, scheme)
	default:
		s = "sip:" + s // a bare host[:port]
	}
	if err := sip.ParseUri(s, &u); err != nil {
		return sip.Uri{}, fmt.Errorf("parsing SIP destination %q: %w", s, err)
	}
	if u.Host == "" || u.Wildcard {
		return sip.Uri{}, fmt.Errorf("SIP destination %q has no host", s)
	}
	return u, nil
}

// isScheme reports whether s looks like a URI scheme (RFC 3986: a letter,
// then letters, digits, "+", "-" or ".").
func isScheme(s string) bool {
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// ResolveString is Resolve for a destination as ParseTarget takes it.
func (r *Resolver) ResolveString(ctx context.Context, s string) ([]Target, error) {
	u, err := ParseTarget(s)
	if err != nil {
		return nil, err
	}
	return r.Resolve(ctx, u)
}

// request is what RFC 3263 looks at in a URI.
type request struct {
	secure    bool
	host      string // name or address, no brackets, no trailing dot
	ip        netip.Addr
	port      uint16 // 0: none given
	transport string // "": none given
}

func parseRequest(u sip.Uri, supported []string) (request, error) {
	var q request
	switch strings.ToLower(u.Scheme) {
	case "", "sip":
	case "sips":
		q.secure = true
	default:
		return q, fmt.Errorf("URI scheme %q: only sip and sips resolve", u.Scheme)
	}
	q.host = u.Host
	if m, ok := u.UriParams.Get("maddr"); ok && m != "" {
		q.host = m
	}
	q.host = strings.TrimSuffix(strings.Trim(q.host, "[]"), ".")
	if q.host == "" {
		return q, errors.New("URI has no host")
	}
	if a, err := netip.ParseAddr(q.host); err == nil {
		if a.Zone() != "" {
			return q, fmt.Errorf("host %q: scoped addresses are not supported", q.host)
		}
		q.ip = a.Unmap()
		q.host = q.ip.String()
	} else if _, ok := dns.IsDomainName(q.host); !ok || len(q.host) > 253 || strings.ContainsAny(q.host, " \t/\\@") {
		return q, fmt.Errorf("host %q is neither an IP address nor a domain name", q.host)
	} else {
		q.host = strings.ToLower(q.host)
	}
	if u.Port < 0 || u.Port > 65535 {
		return q, fmt.Errorf("port %d: want 1-65535", u.Port)
	}
	q.port = uint16(u.Port)
	if tr, ok := u.UriParams.Get("transport"); ok && tr != "" {
		tr = strings.ToLower(tr)
		switch {
		case tr == UDP && q.secure:
			return q, errors.New("transport=udp in a sips URI: SIPS needs TLS over TCP")
		case tr == TCP && q.secure:
			tr = TLS
		case tr != UDP && tr != TCP && tr != TLS:
			return q, fmt.Errorf("transport %q is not supported (udp, tcp, tls)", tr)
		}
		q.transport = tr
	}
	if q.transport != "" && !slices.Contains(supported, q.transport) {
		return q, fmt.Errorf("transport %s is not enabled on this box", q.transport)
	}
	if q.secure && !slices.Contains(supported, TLS) {
		return q, errors.New("sips URI: TLS is not enabled on this box")
	}
	return q, nil
}

func defaultPort(tr string) uint16 {
	if tr == TLS {
		return 5061
	}
	return 5060
}

func (q request) defaultTransport() string {
	if q.transport != "" {
		return q.transport
	}
	if q.secure {
		return TLS
	}
	return UDP
}

// Resolve returns the targets of u in the order to try them (RFC 3263 §4):
// live targets first, then those marked dead, each group in resolution
// order. It fails when nothing resolves, with every lookup's error.
func (r *Resolver) Resolve(ctx context.Context, u sip.Uri) ([]Target, error) {
	q, err := parseRequest(u, r.cfg.Transports)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", u.String(), err)
	}
	ts, err := r.resolve(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", u.String(), err)
	}
	return r.orderByLiveness(ts), nil
}

func (r *Resolver) resolve(ctx context.Context, q request) ([]Target, error) {
	if q.ip.IsValid() {
		tr := q.defaultTransport()
		port := q.port
		if port == 0 {
			port = defaultPort(tr)
		}
		return []Target{{Transport: tr, Host: q.host, IP: q.ip, Port: port, Source: SourceIP}}, nil
	}
	if q.port != 0 {
		ts, err := r.hostTargets(ctx, q.host, q.defaultTransport(), q.port)
		if len(ts) == 0 {
			return nil, errors.Join(ErrNoTargets, err)
		}
		return ts, nil
	}
	var errs []error
	// Which SRV names to ask, for which transport.
	type srvQuery struct {
		name, transport string
		src             Source
	}
	var srvs []srvQuery
	if q.transport != "" {
		srvs = append(srvs, srvQuery{srvName(q.transport, q.secure, q.host), q.transport, SourceSRV})
	} else {
		recs, err := r.naptr(ctx, q.host)
		if err != nil {
			errs = append(errs, err)
		}
		for _, n := range usableNAPTR(recs, q.secure, r.cfg.Transports) {
			srvs = append(srvs, srvQuery{n.srv, n.transport, SourceNAPTR})
		}
		if len(srvs) == 0 {
			for _, tr := range r.cfg.Transports {
				if q.secure && tr != TLS {
					continue
				}
				srvs = append(srvs, srvQuery{srvName(tr, q.secure, q.host), tr, SourceSRV})
			}
		}
	}
	var out []Target
	for _, s := range srvs {
		ts, err := r.srvTargets(ctx, s.name, s.transport, s.src)
		if err != nil {
			errs = append(errs, err)
		}
		out = appendUnique(out, ts...)
		if len(out) >= maxTargets {
			return out[:maxTargets], nil
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	tr := q.defaultTransport()
	ts, err := r.hostTargets(ctx, q.host, tr, defaultPort(tr))
	if err != nil {
		errs = append(errs, err)
	}
	if len(ts) == 0 {
		errs = append([]error{ErrNoTargets}, errs...)
		return nil, errors.Join(errs...)
	}
	return ts, nil
}

func appendUnique(out []Target, ts ...Target) []Target {
	for _, t := range ts {
		if !slices.ContainsFunc(out, func(o Target) bool { return o.key() == t.key() }) {
			out = append(out, t)
		}
	}
	return out
}

// srvName is the SRV owner name of a transport (RFC 3263 §4.2).
func srvName(tr string, secure bool, host string) string {
	if tr == TLS || secure {
		return "_sips._tcp." + host
	}
	return "_sip._" + tr + "." + host
}

// hostTargets resolves host's addresses: one target per address.
func (r *Resolver) hostTargets(ctx context.Context, host, tr string, port uint16) ([]Target, error) {
	ips, err := r.addrs(ctx, host)
	ts := make([]Target, 0, len(ips))
	for _, ip := range ips {
		ts = append(ts, Target{Transport: tr, Host: host, IP: ip, Port: port, Source: SourceA})
	}
	return ts, err
}

// srvTargets looks up the SRV records of name and returns one target per
// address of each server, in RFC 2782 order.
func (r *Resolver) srvTargets(ctx context.Context, name, tr string, src Source) ([]Target, error) {
	recs, err := r.srv(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(recs) == 1 && recs[0].Target == "." {
		return nil, nil // "decidedly not available" (RFC 2782)
	}
	r.mu.Lock()
	ordered := orderSRV(recs, r.rnd.IntN)
	r.mu.Unlock()
	var errs []error
	var out []Target
	for _, s := range ordered {
		host := strings.ToLower(strings.TrimSuffix(s.Target, "."))
		if host == "" || s.Port == 0 {
			continue
		}
		ips, err := r.addrs(ctx, host)
		if err != nil {
			errs = append(errs, err)
		}
		for _, ip := range ips {
			out = append(out, Target{Transport: tr, Host: host, IP: ip, Port: s.Port,
				Priority: s.Priority, Weight: s.Weight, Source: src})
		}
		if len(out) >= maxTargets {
			break
		}
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// orderByLiveness moves targets marked dead behind the live ones, keeping
// the order within each group, and flags them.
func (r *Resolver) orderByLiveness(ts []Target) []Target {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	live := ts[:0:0]
	var dead []Target
	for _, t := range ts {
		if e, ok := r.dead[t.key()]; ok {
			if now.Before(e.until) {
				t.Dead = true
				dead = append(dead, t)
				continue
			}
			delete(r.dead, t.key())
		}
		live = append(live, t)
	}
	return append(live, dead...)
}
