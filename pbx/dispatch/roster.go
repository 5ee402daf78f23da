package dispatch

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/resolve"
)

// roster is the set of backends at one moment: the configured addresses
// and what the configured DNS names resolve to now. Backends are only
// ever added (index i names the same backend for the life of the
// dispatcher, so the request table and the health counters stay valid);
// one that its name no longer lists is kept but not listed. A new roster
// replaces the old one whole (copy on write), so the forwarding path reads
// it without a lock.
type roster struct {
	names   []string // identity: hashed, and named in Record-Route by its tag
	weights []int
	prios   []int            // SRV priority (0 for addresses and host:port names)
	addrs   []netip.AddrPort // where its requests go now
	listed  []bool           // the backend is among its name's targets now
	entry   []int            // the Config.Backends entry it comes from
	trans   []string         // "udp", "tcp" or "tls"
	// hosts is the DNS name a backend's address was found for ("": a
	// configured address), domains the configured name it came from:
	// what a TLS backend's certificate must name.
	hosts, domains []string
	// group is the target (host:port) a backend found by DNS is one
	// address of ("" for a configured address).
	group  []string
	byAddr map[netip.AddrPort]int
	byTag  map[string]int
	byName map[string]int
}

func (r *roster) clone() *roster {
	return &roster{
		names: slices.Clone(r.names), weights: slices.Clone(r.weights), prios: slices.Clone(r.prios), addrs: slices.Clone(r.addrs),
		listed: slices.Clone(r.listed), entry: slices.Clone(r.entry),
		trans: slices.Clone(r.trans), hosts: slices.Clone(r.hosts), domains: slices.Clone(r.domains), group: slices.Clone(r.group),
		byAddr: maps.Clone(r.byAddr), byTag: maps.Clone(r.byTag), byName: maps.Clone(r.byName),
	}
}

// add appends a backend and returns its index.
func (r *roster) add(name string, weight, prio int, addr netip.AddrPort, entry int) int {
	i := len(r.names)
	r.names = append(r.names, name)
	r.weights = append(r.weights, weight)
	r.prios = append(r.prios, prio)
	r.addrs = append(r.addrs, addr)
	r.listed = append(r.listed, true)
	r.entry = append(r.entry, entry)
	r.trans = append(r.trans, "udp")
	r.hosts = append(r.hosts, "")
	r.domains = append(r.domains, "")
	r.group = append(r.group, "")
	r.byTag[backendTag(name)] = i
	r.byName[name] = i
	if _, dup := r.byAddr[addr]; !dup {
		r.byAddr[addr] = i
	}
	return i
}

// reindex rebuilds byAddr after addresses changed: the first listed
// backend with an address owns it.
func (r *roster) reindex() {
	clear(r.byAddr)
	for i, a := range r.addrs {
		if _, dup := r.byAddr[a]; !dup && r.listed[i] {
			r.byAddr[a] = i
		}
	}
	for i, a := range r.addrs {
		if _, dup := r.byAddr[a]; !dup {
			r.byAddr[a] = i
		}
	}
}

// maxPerName bounds the backends one DNS name may bring over the
// dispatcher's life (resolve returns at most 32 targets at a time).
const maxPerName = 32

// DefaultResolveEvery is how often the DNS names of backends are looked
// up again; the resolver answers from its cache until the records' TTL
// runs out, so a change is seen within TTL plus this.
const DefaultResolveEvery = time.Second

// nameTarget is a configured DNS name as the resolver takes it over
// transport tr ("udp", "tcp" or "tls"): "host:port" and "sip:host[:port]"
// with ";transport=tr"; "_sip._udp.domain", "_sip._tcp.domain" and
// "_sips._tcp.domain" as the SRV name of sip:domain over their transport,
// which must be tr.
func nameTarget(name, tr string) (sip.Uri, error) {
	s := strings.TrimSpace(name)
	if tr == "" {
		tr = "udp"
	}
	for _, p := range []struct{ prefix, tr string }{{"_sip._udp.", "udp"}, {"_sip._tcp.", "tcp"}, {"_sips._tcp.", "tls"}} {
		if len(s) > len(p.prefix) && strings.EqualFold(s[:len(p.prefix)], p.prefix) {
			if p.tr != tr {
				return sip.Uri{}, fmt.Errorf("backend %q: an SRV name for %s, to be spoken to over %s", name, p.tr, tr)
			}
			s = s[len(p.prefix):]
			break
		}
	}
	if strings.ContainsAny(s, ";?") {
		return sip.Uri{}, fmt.Errorf("backend %q: give host:port, host, sip:host or an SRV name, without parameters", name)
	}
	u, err := resolve.ParseTarget(s)
	if err != nil {
		return sip.Uri{}, err
	}
	if u.User != "" || strings.EqualFold(u.Scheme, "sips") || len(u.UriParams) > 0 || len(u.Headers) > 0 {
		return sip.Uri{}, fmt.Errorf("backend %q: give host:port, host, sip:host or an SRV name", name)
	}
	switch tr {
	case "udp", "tcp", "tls":
	default:
		return sip.Uri{}, fmt.Errorf("backend %q: transport %q (want udp, tcp or tls)", name, tr)
	}
	u.UriParams = sip.HeaderParams{{K: "transport", V: tr}}
	return u, nil
}

// group is one target host and port of a name: one backend.
type group struct {
	host   string // the target host
	name   string // host:port
	weight int    // from SRV (0 when none or not from SRV)
	prio   int    // from SRV (0 when not from SRV)
	addrs  []netip.AddrPort
}

// groups turns the resolver's targets into backends: one per host and
// port, in the order the targets came, of transport tr only.
func groups(ts []resolve.Target, tr string) []group {
	var out []group
	at := map[string]int{}
	for _, t := range ts {
		if t.Transport != tr {
			continue
		}
		name := strings.ToLower(t.Host) + ":" + strconv.Itoa(int(t.Port))
		if t.Source == resolve.SourceIP {
			name = t.AddrPort().String()
		}
		k, ok := at[name]
		if !ok {
			k = len(out)
			at[name] = k
			out = append(out, group{host: strings.ToLower(t.Host), name: name, weight: int(t.Weight), prio: int(t.Priority)})
		}
		g := &out[k]
		g.weight = max(g.weight, int(t.Weight))
		g.prio = min(g.prio, int(t.Priority))
		if a := t.AddrPort(); !slices.Contains(g.addrs, a) {
			g.addrs = append(g.addrs, a)
		}
	}
	return out
}

// resolveLoop looks the backends' DNS names up at once and then every
// ResolveEvery until ctx ends.
func (d *Dispatcher) resolveLoop(ctx context.Context) {
	tick := time.NewTicker(d.cfg.ResolveEvery)
	defer tick.Stop()
	for {
		d.resolveAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// resolveAll resolves every configured name once and takes the result.
func (d *Dispatcher) resolveAll(ctx context.Context) {
	for k, b := range d.cfg.Backends {
		if b.Name == "" {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ts, err := d.cfg.Resolver.Resolve(rctx, d.targets[k])
		cancel()
		if ctx.Err() != nil {
			return
		}
		gs := groups(ts, b.Transport)
		if err == nil && len(gs) == 0 {
			err = fmt.Errorf("no %s targets", strings.ToUpper(b.Transport))
		}
		if !d.noteLookup(k, err) {
			continue // the last good addresses stay
		}
		d.take(k, gs)
	}
}

// dnsFailure is a name's lookup failing since a time.
type dnsFailure struct {
	err   string // "": the lookup works
	since time.Time
}

// noteLookup records the outcome of entry k's lookup, logs when it starts
// or stops failing, and tells whether it worked.
func (d *Dispatcher) noteLookup(k int, err error) bool {
	d.dnsMu.Lock()
	defer d.dnsMu.Unlock()
	f := &d.dnsFail[k]
	name := d.cfg.Backends[k].Name
	if err != nil {
		if f.err == "" {
			d.log.Warn("dispatcher cannot resolve a backend's name: keeping its last addresses", "backend", name, "err", err)
			f.since = time.Now()
		}
		f.err = err.Error()
		return false
	}
	if f.err != "" {
		d.log.Info("dispatcher resolves a backend's name again", "backend", name, "failed_for", time.Since(f.since).Round(time.Second).String())
		*f = dnsFailure{}
	}
	return true
}

// take makes the backends of entry k those of gs, keeping each one's
// state: a backend whose address changed keeps its index, health and
// counts; one no longer listed stops getting new calls.
func (d *Dispatcher) take(k int, gs []group) {
	d.rosterMu.Lock()
	defer d.rosterMu.Unlock()
	old := d.roster.Load()
	r := old.clone()
	changed := false
	seen := map[int]bool{}
	for _, g := range gs {
		w := d.cfg.Backends[k].Weight
		if w == 0 {
			w = max(g.weight, DefaultWeight)
		}
		if i, ok := r.byName[g.name]; ok && r.entry[i] != k {
			continue // another entry names the same backend: it is that one's
		}
		// Each address of the target is a backend. Those the target
		// had keep their addresses; an address that left goes to a
		// new one (so a host that moves keeps its state); addresses
		// still left are new backends, the first the target's own
		// name, the others the name with their address.
		addrs := slices.Clone(g.addrs)
		slices.SortFunc(addrs, func(a, b netip.AddrPort) int { return a.Compare(b) })
		var free []int
		for i := range r.names {
			if r.entry[i] != k || r.group[i] != g.name {
				continue
			}
			if j := slices.Index(addrs, r.addrs[i]); j >= 0 {
				addrs = slices.Delete(addrs, j, j+1)
				seen[i] = true
			} else {
				free = append(free, i)
			}
		}
		// The target's own name first: it is what one address was.
		slices.SortStableFunc(free, func(a, b int) int {
			return cmpBool(r.names[a] != g.name, r.names[b] != g.name)
		})
		for len(free) > 0 && len(addrs) > 0 {
			i, a := free[0], addrs[0]
			free, addrs = free[1:], addrs[1:]
			d.log.Info("dispatcher backend has a new address", "backend", r.names[i], "was", r.addrs[i].String(), "now", a.String())
			r.addrs[i] = a
			seen[i] = true
			changed = true
			if p := d.pool(i); p != nil {
				// Its connections go to the old address: open them
				// again once the new roster is in place.
				defer p.reset()
			}
		}
		for _, a := range addrs {
			name := g.name
			if _, taken := r.byName[name]; taken {
				name = g.name + "/" + a.Addr().String()
			}
			if _, taken := r.byName[name]; taken {
				d.log.Warn("dispatcher ignores an address of a backend: its name is taken", "backend", name, "addr", a.String())
				continue
			}
			if d.perEntry[k] >= maxPerName || len(r.names) >= len(d.sent) {
				d.log.Warn("dispatcher ignores a backend: its name lists too many", "backend", d.cfg.Backends[k].Name, "target", name)
				continue
			}
			d.perEntry[k]++
			i := r.add(name, w, g.prio, a, k)
			r.trans[i], r.hosts[i], r.domains[i], r.group[i] = d.cfg.Backends[k].Transport, g.host, d.targets[k].Host, g.name
			if streamTransport(r.trans[i]) {
				d.pools[i].Store(d.newPool(i, r.trans[i]))
				defer d.startPool(i)
			}
			seen[i] = true
			changed = true
			d.log.Info("dispatcher backend added from DNS", "backend", name, "addr", a.String(), "weight", w)
		}
		for i := range r.names {
			if r.entry[i] != k || r.group[i] != g.name || !seen[i] {
				continue
			}
			if !r.listed[i] {
				r.listed[i] = true
				changed = true
				d.log.Info("dispatcher backend listed by DNS again", "backend", r.names[i])
			}
			if r.weights[i] != w || r.prios[i] != g.prio {
				r.weights[i], r.prios[i] = w, g.prio
				changed = true
			}
		}
	}
	for i := range r.names {
		if r.entry[i] == k && r.listed[i] && !seen[i] {
			r.listed[i] = false
			changed = true
			d.log.Warn("dispatcher backend no longer listed by DNS: no new calls", "backend", r.names[i])
		}
	}
	if !changed {
		return
	}
	r.reindex()
	d.roster.Store(r)
	d.sel.setNames(r.names, r.weights, r.prios, r.entry)
}

// startPool starts backend i's pool if Run is running (else Run starts
// it).
func (d *Dispatcher) startPool(i int) {
	if rs := d.run.Load(); rs != nil {
		if p := d.pool(i); p != nil {
			p.start(rs.ctx, rs.wg)
		}
	}
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}
