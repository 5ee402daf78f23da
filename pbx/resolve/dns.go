package resolve

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// dnsClient asks the configured servers in turn until one answers with a
// usable code (NOERROR or NXDOMAIN), over UDP and again over TCP when the
// UDP answer was truncated.
type dnsClient struct {
	servers []string
	timeout time.Duration
}

func (c *dnsClient) exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	var errs []error
	for _, srv := range c.servers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		udp := &dns.Client{Net: "udp", Timeout: c.timeout, UDPSize: 1232}
		resp, _, err := udp.ExchangeContext(ctx, q, srv)
		if err == nil && resp.Truncated {
			tcp := &dns.Client{Net: "tcp", Timeout: c.timeout}
			resp, _, err = tcp.ExchangeContext(ctx, q, srv)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("asking %s: %w", srv, err))
			continue
		}
		if !sameQuestion(q, resp) {
			errs = append(errs, fmt.Errorf("asking %s: the answer is for another question", srv))
			continue
		}
		if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
			errs = append(errs, fmt.Errorf("asking %s: %s", srv, dns.RcodeToString[resp.Rcode]))
			continue
		}
		return resp, nil
	}
	return nil, errors.Join(errs...)
}

func sameQuestion(q, a *dns.Msg) bool {
	return len(a.Question) == 1 && len(q.Question) == 1 &&
		a.Question[0].Qtype == q.Question[0].Qtype &&
		strings.EqualFold(a.Question[0].Name, q.Question[0].Name)
}

// cache holds answers (the records of one name and type, or none) until
// their TTL runs out. When full, expired entries go first, then the one
// closest to expiry.
type cache struct {
	mu      sync.Mutex
	max     int
	entries map[cacheKey]cacheEntry
}

type cacheKey struct {
	name  string // lower case, no trailing dot
	qtype uint16
}

type cacheEntry struct {
	rrs     []dns.RR // nil: the name has no such records
	expires time.Time
}

func newCache(max int) *cache { return &cache{max: max, entries: make(map[cacheKey]cacheEntry)} }

func (c *cache) get(k cacheKey, now time.Time) ([]dns.RR, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, k)
		return nil, false
	}
	return e.rrs, true
}

func (c *cache) put(k cacheKey, rrs []dns.RR, ttl time.Duration, now time.Time) {
	if ttl <= 0 {
		return
	}
	ttl = min(ttl, MaxTTL)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		c.evict(now)
	}
	c.entries[k] = cacheEntry{rrs: rrs, expires: now.Add(ttl)}
}

// evict makes room for one entry. Caller holds mu.
func (c *cache) evict(now time.Time) {
	var oldest cacheKey
	var first time.Time
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
			continue
		}
		if first.IsZero() || e.expires.Before(first) {
			oldest, first = k, e.expires
		}
	}
	if len(c.entries) >= c.max {
		delete(c.entries, oldest)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func canonical(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// lookup returns the records of type qtype for name, from the cache or a
// query, following CNAMEs within the answer. It also returns the answer's
// additional section when it came from the network (nil from the cache).
// "No such records" is not an error: the result is empty.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (rrs, extra []dns.RR, err error) {
	k := cacheKey{canonical(name), qtype}
	now := r.cfg.Now()
	if rrs, ok := r.cache.get(k, now); ok {
		return rrs, nil, nil
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(k.name), qtype)
	q.RecursionDesired = true
	q.SetEdns0(1232, false)
	qctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout*time.Duration(max(1, len(r.cfg.Servers)))*2)
	defer cancel()
	resp, err := r.ex.exchange(qctx, q)
	if err != nil {
		return nil, nil, fmt.Errorf("looking up %s %s: %w", dns.TypeToString[qtype], k.name, err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		r.cache.put(k, nil, r.negativeTTL(resp), now)
		return nil, nil, nil
	default:
		return nil, nil, fmt.Errorf("looking up %s %s: %s", dns.TypeToString[qtype], k.name, dns.RcodeToString[resp.Rcode])
	}
	rrs, ttl := matching(resp.Answer, k.name, qtype)
	if len(rrs) == 0 {
		r.cache.put(k, nil, r.negativeTTL(resp), now)
		return nil, resp.Extra, nil
	}
	r.cache.put(k, rrs, ttl, now)
	return rrs, resp.Extra, nil
}

// matching returns the records of type qtype owned by name or by a name
// the answer's CNAME chain leads to from it, and the smallest TTL among
// them and the CNAMEs followed.
func matching(answer []dns.RR, name string, qtype uint16) ([]dns.RR, time.Duration) {
	owners := map[string]bool{name: true}
	ttl := uint32(1<<32 - 1)
	for range 8 { // a CNAME chain longer than this is broken
		grew := false
		for _, rr := range answer {
			c, ok := rr.(*dns.CNAME)
			if !ok || !owners[canonical(c.Hdr.Name)] || owners[canonical(c.Target)] {
				continue
			}
			owners[canonical(c.Target)] = true
			ttl = min(ttl, c.Hdr.Ttl)
			grew = true
		}
		if !grew {
			break
		}
	}
	var out []dns.RR
	for _, rr := range answer {
		h := rr.Header()
		if h.Rrtype == qtype && h.Class == dns.ClassINET && owners[canonical(h.Name)] {
			out = append(out, rr)
			ttl = min(ttl, h.Ttl)
		}
	}
	return out, time.Duration(ttl) * time.Second
}

// negativeTTL is how long "no such record" is believed (RFC 2308: the
// SOA's TTL or MINIMUM, the smaller), or Config.NegativeTTL without SOA.
func (r *Resolver) negativeTTL(resp *dns.Msg) time.Duration {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, time.Hour)
		}
	}
	return r.cfg.NegativeTTL
}

// naptr returns the NAPTR records of name, and keeps SRV and address
// records the server added for them.
func (r *Resolver) naptr(ctx context.Context, name string) ([]*dns.NAPTR, error) {
	rrs, extra, err := r.lookup(ctx, name, dns.TypeNAPTR)
	var out []*dns.NAPTR
	for _, rr := range rrs {
		if n, ok := rr.(*dns.NAPTR); ok {
			out = append(out, n)
		}
	}
	if len(extra) > 0 {
		var srvs []string
		for _, n := range out {
			if strings.EqualFold(n.Flags, "s") {
				srvs = append(srvs, canonical(n.Replacement))
			}
		}
		r.stash(extra, dns.TypeSRV, srvs)
		var hosts []string
		for _, rr := range extra {
			if s, ok := rr.(*dns.SRV); ok {
				hosts = append(hosts, canonical(s.Target))
			}
		}
		r.stashAddrs(extra, hosts)
	}
	return out, err
}

// srv returns the SRV records of name, and keeps the addresses the server
// added for their targets.
func (r *Resolver) srv(ctx context.Context, name string) ([]*dns.SRV, error) {
	rrs, extra, err := r.lookup(ctx, name, dns.TypeSRV)
	var out []*dns.SRV
	var hosts []string
	for _, rr := range rrs {
		if s, ok := rr.(*dns.SRV); ok {
			out = append(out, s)
			hosts = append(hosts, canonical(s.Target))
		}
	}
	r.stashAddrs(extra, hosts)
	return out, err
}

// stash caches the records of type qtype that extra holds for each name.
func (r *Resolver) stash(extra []dns.RR, qtype uint16, names []string) {
	now := r.cfg.Now()
	for _, name := range names {
		if rrs, ttl := matching(extra, name, qtype); len(rrs) > 0 {
			r.cache.put(cacheKey{name, qtype}, rrs, ttl, now)
		}
	}
}

// stashAddrs caches the addresses extra holds for each host. A host with
// A records there but no AAAA (or the reverse) is taken to have none of
// the other kind, for as long as the addresses given live: the server
// told us what to use, and asking again would cost a round trip per
// server on every call set-up.
func (r *Resolver) stashAddrs(extra []dns.RR, hosts []string) {
	now := r.cfg.Now()
	for _, h := range hosts {
		a, ttlA := matching(extra, h, dns.TypeA)
		aaaa, ttl6 := matching(extra, h, dns.TypeAAAA)
		if len(a) == 0 && len(aaaa) == 0 {
			continue
		}
		ttl := min(ttlA, ttl6)
		r.cache.put(cacheKey{h, dns.TypeA}, a, ttl, now)
		r.cache.put(cacheKey{h, dns.TypeAAAA}, aaaa, ttl, now)
	}
}

// addrs returns host's IPv4 addresses, then its IPv6 ones.
func (r *Resolver) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	var errs []error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, _, err := r.lookup(ctx, host, qt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range rrs {
			var ip []byte
			switch v := rr.(type) {
			case *dns.A:
				ip = v.A
			case *dns.AAAA:
				ip = v.AAAA
			}
			if a, ok := netip.AddrFromSlice(ip); ok && a.IsValid() && !a.IsUnspecified() {
				out = append(out, a.Unmap())
			}
		}
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
