package site

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// SIPAddress is the address the other boxes forward calls to, from the
// box's SIP listen entries ("udp:0.0.0.0:5060"): the first UDP entry, its
// host replaced by bind when it is a wildcard. Empty when the box has no
// UDP listener.
func SIPAddress(listen []string, bind string) string {
	for _, s := range listen {
		l, err := config.ParseListen(s)
		if err != nil || l.Transport != "udp" {
			continue
		}
		host := l.Host
		if a, err := netip.ParseAddr(host); err != nil || a.IsUnspecified() {
			host = bind
		}
		return fmt.Sprintf("udp:%s", net.JoinHostPort(host, fmt.Sprint(l.Port)))
	}
	return ""
}

// Route says where a call to a binding of another box goes: to the SIP
// address of the box that holds it (as "transport:ip:port"), when
// site.forward is "always" and gossip shows that box alive. Otherwise ok
// is false and the call goes straight to the phone, which also reaches a
// phone whose box died while its registration lasts.
func (s *Site) Route(b location.Binding) (source string, ok bool) {
	if s.cfg.Forward == config.SiteForwardNever || b.Holder == "" || b.Holder == s.name {
		return "", false
	}
	s.viewMu.Lock()
	m, found := s.view[b.Holder]
	s.viewMu.Unlock()
	if !found || !m.alive || m.meta.SIP == "" {
		return "", false
	}
	return m.meta.SIP, true
}

// Sign marks req as forwarded by this box (TrustHeader).
func (s *Site) Sign(req *sip.Request) { s.trust.sign(req, s.name) }

// Verify checks that req was forwarded by an alive member of the site,
// from that member's address, signed with the site key, recently and not
// before; it returns the member. forwarded is false when req carries no
// TrustHeader.
func (s *Site) Verify(req *sip.Request) (member string, forwarded bool, err error) {
	member, err = s.trust.verify(req)
	if errors.Is(err, ErrNotForwarded) {
		return "", false, nil
	}
	return member, true, err
}

// memberIPs returns the addresses an alive member sends from: its gossip
// address and the host of its SIP address.
func (s *Site) memberIPs(name string) []net.IP {
	s.viewMu.Lock()
	m, ok := s.view[name]
	s.viewMu.Unlock()
	if !ok || !m.alive || name == s.name {
		return nil
	}
	out := []net.IP{m.node.Addr}
	if _, hp, ok := strings.Cut(m.meta.SIP, ":"); ok {
		if host, _, err := net.SplitHostPort(hp); err == nil {
			if ip := net.ParseIP(host); ip != nil {
				out = append(out, ip)
			}
		}
	}
	return out
}
