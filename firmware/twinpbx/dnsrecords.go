package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
)

// Modes of dns-records: where the records point.
const (
	recordsVIP  = "vip"  // a twin pair's VIP: the active box, whichever it is
	recordsBoth = "both" // both boxes' own LAN addresses, equal priority
	recordsBox  = "box"  // a standalone box's address
)

// siteRecords is the record set that makes SRV-capable phones find the
// PBX of one site: NAPTR per transport, SRV per transport and host, and
// the hosts' addresses.
type siteRecords struct {
	domain string
	mode   string
	rrs    []dns.RR
	notes  []string // said before the records, as comments
}

// siteHost is one name the SRV records point at.
type siteHost struct {
	label string
	addr  netip.Addr
}

// buildSiteRecords works out the records of cfg for domain. mode is
// recordsVIP or recordsBoth on a twin pair, recordsBox (or "") standalone;
// "" on a twin pair means recordsVIP.
func buildSiteRecords(cfg *config.Config, domain, mode string, ttl uint32) (*siteRecords, error) {
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if _, ok := dns.IsDomainName(domain); !ok || !strings.Contains(domain, ".") || strings.ContainsAny(domain, " \t,/\\\"") {
		return nil, fmt.Errorf("domain %q: want a DNS domain such as branch.example.com", domain)
	}
	ports := map[string]uint16{}
	var transports []string
	for _, l := range cfg.SIP.Listen {
		ln, err := config.ParseListen(l)
		if err != nil {
			return nil, fmt.Errorf("sip.listen: %w", err)
		}
		if _, ok := ports[ln.Transport]; !ok {
			ports[ln.Transport] = uint16(ln.Port)
			transports = append(transports, ln.Transport)
		}
	}
	if len(transports) == 0 {
		return nil, errors.New("sip.listen is empty: the PBX listens nowhere")
	}
	sr := &siteRecords{domain: domain}
	var hosts []siteHost
	var weight uint16
	cl := cfg.Cluster
	switch {
	case cl == nil && (mode == "" || mode == recordsBox):
		a, err := standaloneAddr(cfg)
		if err != nil {
			return nil, err
		}
		sr.mode = recordsBox
		hosts = []siteHost{{"pbx", a}}
	case cl == nil:
		return nil, fmt.Errorf("--%s needs a twin pair; this box runs standalone (no cluster section)", mode)
	case mode == "" || mode == recordsVIP:
		vip, err := netip.ParsePrefix(cl.VIP)
		if err != nil {
			return nil, fmt.Errorf("cluster.vip %q: %w", cl.VIP, err)
		}
		sr.mode = recordsVIP
		hosts = []siteHost{{"pbx", vip.Addr()}}
		sr.notes = append(sr.notes,
			fmt.Sprintf("The name points at the pair's VIP %s, which the active box holds: phones follow a failover without noticing.", vip.Addr()))
	case mode == recordsBoth:
		local, err := netip.ParseAddr(cl.LAN.Local)
		if err != nil {
			return nil, fmt.Errorf("cluster.lan.local %q: %w", cl.LAN.Local, err)
		}
		peer, err := netip.ParseAddr(cl.LAN.Peer)
		if err != nil {
			return nil, fmt.Errorf("cluster.lan.peer %q: %w", cl.LAN.Peer, err)
		}
		a, b := hostLabel(cfg.Node.Name, "pbx-a"), hostLabel(cl.Peer, "pbx-b")
		if a == b {
			a, b = a+"-1", b+"-2"
		}
		sr.mode = recordsBoth
		hosts = []siteHost{{a, local}, {b, peer}}
		weight = 50
		sr.notes = append(sr.notes,
			"Both boxes have the same priority and weight: an SRV-capable phone picks one and moves to the other when it does not answer.",
			"Both boxes take requests on these addresses: the standby passes them to the active box, whose registrar records the",
			"phone's own address, so registrations are shared. While no box serves (a takeover) a box answers 503 with Retry-After.")
		// The boxes' own addresses take UDP and TCP (the forwarder); TLS
		// only on the VIP.
		if i := slices.Index(transports, "tls"); i >= 0 {
			transports = slices.Delete(transports, i, i+1)
			sr.notes = append(sr.notes, "TLS (SIPS) is left out: only the VIP takes it; use the VIP records for TLS phones.")
			if len(transports) == 0 {
				return nil, errors.New("--both: the PBX listens on TLS only, which only the VIP takes; use --vip")
			}
		}
	default:
		return nil, fmt.Errorf("unknown mode %q", mode)
	}

	fqdn := func(label string) string { return dns.Fqdn(label + "." + domain) }
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	for i, tr := range transports {
		sr.rrs = append(sr.rrs, &dns.NAPTR{
			Hdr: hdr(dns.Fqdn(domain), dns.TypeNAPTR), Order: 10, Preference: uint16(10 * (i + 1)),
			Flags: "s", Service: naptrService[tr], Replacement: dns.Fqdn(srvService[tr] + "." + domain),
		})
	}
	for _, tr := range transports {
		for _, h := range hosts {
			sr.rrs = append(sr.rrs, &dns.SRV{
				Hdr: hdr(dns.Fqdn(srvService[tr]+"."+domain), dns.TypeSRV), Priority: 10, Weight: weight,
				Port: ports[tr], Target: fqdn(h.label),
			})
		}
	}
	for _, h := range hosts {
		if h.addr.Is4() {
			sr.rrs = append(sr.rrs, &dns.A{Hdr: hdr(fqdn(h.label), dns.TypeA), A: h.addr.AsSlice()})
		} else {
			sr.rrs = append(sr.rrs, &dns.AAAA{Hdr: hdr(fqdn(h.label), dns.TypeAAAA), AAAA: h.addr.AsSlice()})
		}
	}
	return sr, nil
}

// naptrService and srvService name each listener transport's records
// (RFC 3263 §4.1, RFC 5630: SIP over TLS is the sips service over TCP).
var (
	naptrService = map[string]string{"udp": "SIP+D2U", "tcp": "SIP+D2T", "tls": "SIPS+D2T"}
	srvService   = map[string]string{"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
)

// standaloneAddr is the address phones reach a standalone box at: the
// advertised address, the box's static LAN address, or a listener bound
// to one address.
func standaloneAddr(cfg *config.Config) (netip.Addr, error) {
	if a, err := netip.ParseAddr(cfg.SIP.Advertise); err == nil {
		return a, nil
	}
	if n := cfg.Node.Network; n != nil && n.Address != "" {
		if p, err := netip.ParsePrefix(n.Address); err == nil {
			return p.Addr(), nil
		}
		if a, err := netip.ParseAddr(n.Address); err == nil {
			return a, nil
		}
	}
	for _, l := range cfg.SIP.Listen {
		if ln, err := config.ParseListen(l); err == nil {
			if a, err := netip.ParseAddr(ln.Host); err == nil && !a.IsUnspecified() && !a.IsLoopback() {
				return a, nil
			}
		}
	}
	return netip.Addr{}, errors.New("no address of this box is known: set sip.advertise or node.network.address to the LAN address phones use")
}

// hostLabel makes a node name a DNS label: lower case, anything but
// letters, digits and '-' becomes '-'.
func hostLabel(name, fallback string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(name) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if s == "" {
		return fallback
	}
	return s[:min(len(s), 63)]
}

// writeZone prints the records as zone-file lines (BIND, Knot, NSD, any
// DNS provider's import).
func (sr *siteRecords) writeZone(w io.Writer, version uint64) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "; SIP service of %s for SRV-capable phones (twinpbx dns-records, %s, config version %d).\n", sr.domain, sr.mode, version)
	fmt.Fprintf(&b, "; Add these lines to the zone of %s.\n", sr.domain)
	for _, n := range sr.notes {
		fmt.Fprintf(&b, "; %s\n", n)
	}
	for _, rr := range sr.rrs {
		fmt.Fprintln(&b, rr.String())
	}
	_, err := w.Write(b.Bytes())
	return err
}

// writeDNSMasq prints the records as dnsmasq options (a file in
// /etc/dnsmasq.d/, or the custom options of a router built on dnsmasq).
func (sr *siteRecords) writeDNSMasq(w io.Writer, version uint64) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# SIP service of %s for SRV-capable phones (twinpbx dns-records, %s, config version %d).\n", sr.domain, sr.mode, version)
	fmt.Fprintf(&b, "# Put these lines into /etc/dnsmasq.d/twinpbx.conf. dnsmasq gives NAPTR and SRV records its\n")
	fmt.Fprintf(&b, "# local-ttl (default 0: never cached); local-ttl=%d suits them.\n", sr.rrs[0].Header().Ttl)
	for _, n := range sr.notes {
		fmt.Fprintf(&b, "# %s\n", n)
	}
	name := func(s string) string { return strings.TrimSuffix(s, ".") }
	for _, rr := range sr.rrs {
		switch v := rr.(type) {
		case *dns.NAPTR:
			fmt.Fprintf(&b, "naptr-record=%s,%d,%d,%s,%s,%s,%s\n", name(v.Hdr.Name), v.Order, v.Preference, v.Flags, v.Service, v.Regexp, name(v.Replacement))
		case *dns.SRV:
			fmt.Fprintf(&b, "srv-host=%s,%s,%d,%d,%d\n", name(v.Hdr.Name), name(v.Target), v.Port, v.Priority, v.Weight)
		case *dns.A:
			fmt.Fprintf(&b, "host-record=%s,%s,%d\n", name(v.Hdr.Name), v.A, v.Hdr.Ttl)
		case *dns.AAAA:
			fmt.Fprintf(&b, "host-record=%s,%s,%d\n", name(v.Hdr.Name), v.AAAA, v.Hdr.Ttl)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

func cmdDNSRecords(args []string, stdout io.Writer) error {
	fs, data := newFlags("dns-records")
	domain := fs.String("domain", "", "the site's DNS domain (default: the SIP realm when it is a domain)")
	vip := fs.Bool("vip", false, "point at the twin pair's VIP (the default on a pair)")
	both := fs.Bool("both", false, "point at both boxes' own LAN addresses with equal priority")
	format := fs.String("format", "zone", "zone (zone-file lines) or dnsmasq (dnsmasq options)")
	ttl := fs.Uint("ttl", 300, "TTL of the records in seconds")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("dns-records: unexpected argument %q", fs.Arg(0))}
	}
	mode := ""
	switch {
	case *vip && *both:
		return usageError{"dns-records: --vip and --both exclude each other"}
	case *vip:
		mode = recordsVIP
	case *both:
		mode = recordsBoth
	}
	if *format != "zone" && *format != "dnsmasq" {
		return usageError{fmt.Sprintf("dns-records: --format %q: want zone or dnsmasq", *format)}
	}
	if *ttl == 0 || *ttl > 7*24*3600 {
		return usageError{fmt.Sprintf("dns-records: --ttl %d: want 1 to 604800 seconds", *ttl)}
	}
	var text []byte
	err := withData(*data, func(c *control.Client) error {
		var b bytes.Buffer
		if err := c.Config(&b); err != nil {
			return err
		}
		text = b.Bytes()
		return nil
	}, func(st *store.Store) error {
		var err error
		text, err = boxconfig.Export(st)
		return err
	})
	if err != nil {
		return fmt.Errorf("reading the config: %w", err)
	}
	cfg, err := config.Parse("stored config", text)
	if err != nil {
		return fmt.Errorf("reading the config: %w", err)
	}
	cfg = cfg.WithDefaults()
	if *domain == "" {
		if !strings.Contains(cfg.SIP.Realm, ".") {
			return usageError{fmt.Sprintf("dns-records: the SIP realm %q is not a domain; give the site's domain with --domain", cfg.SIP.Realm)}
		}
		*domain = cfg.SIP.Realm
	}
	sr, err := buildSiteRecords(cfg, *domain, mode, uint32(*ttl))
	if err != nil {
		return fmt.Errorf("dns-records: %w", err)
	}
	if *format == "dnsmasq" {
		return sr.writeDNSMasq(stdout, cfg.Version)
	}
	return sr.writeZone(stdout, cfg.Version)
}
